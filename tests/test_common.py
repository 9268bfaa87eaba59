"""trainers/common: schedule, loop boundaries, optimizer factory, strategy choice."""

import math

import keras
import numpy as np
import pytest

import acclip_tf
from trainers.common import optimizers as opt_lib
from trainers.common import strategy as strategy_lib
from trainers.common.errors import TrainerError
from trainers.common.loop import ratios, scale_gradient
from trainers.common.reporting import Throughput, format_duration
from trainers.common.runner import next_stop


def bert_lr(step, peak, warmup, total):
    """BERT's warm-up + polynomial(power 1) decay, written out independently."""
    k = step + 1
    if k <= warmup:
        return peak * k / warmup
    return peak * (1 - (step - warmup) / (total - warmup))


@pytest.mark.parametrize("step", [0, 4, 9, 10, 50, 99])
def test_linear_decay_matches_bert(step):
    s = opt_lib.WarmupSchedule(1e-3, total_steps=100, warmup_steps=10, kind="linear_decay")
    np.testing.assert_allclose(float(s(step)), bert_lr(step, 1e-3, 10, 100), rtol=1e-5)


def test_cosine_and_constant():
    cos = opt_lib.WarmupSchedule(2.0, total_steps=110, warmup_steps=10, kind="cosine")
    for step, expected in [(10, 2.0), (60, 1.0), (110, 0.0), (35, 1 + math.cos(math.pi / 4))]:
        np.testing.assert_allclose(float(cos(step)), expected, atol=1e-6)
    const = opt_lib.WarmupSchedule(0.5, total_steps=10, kind="constant")
    assert [float(const(s)) for s in (0, 5, 20)] == [0.5, 0.5, 0.5]


def test_next_stop_respects_every_boundary():
    assert next_stop(0, 100, 30, 25, 40) == 25
    assert next_stop(25, 100, 30, 25, 40) == 40
    assert next_stop(40, 100, 30, 25, 40) == 50
    assert next_stop(90, 95, 30, 0, 0) == 95


def test_defaults_and_overrides():
    s = opt_lib.resolve_settings("acclip", learning_rate=None, beta_2=0.9)
    assert s["learning_rate"] == 1e-4 and s["beta_2"] == 0.9 and s["tau"] == 1.0
    with pytest.raises(TrainerError, match="unknown optimizer 'adagrad'"):
        opt_lib.resolve_settings("adagrad")


@pytest.mark.parametrize("name", list(opt_lib.DEFAULTS))
def test_every_optimizer_builds_and_steps(name):
    layer = keras.layers.LayerNormalization(name="layer_norm")
    dense = keras.layers.Dense(3, name="dense")
    model = keras.Sequential([keras.Input((4,)), dense, layer])
    settings = opt_lib.resolve_settings(name, weight_decay=0.1)
    opt = opt_lib.make_optimizer(name, 0.01, settings, model.trainable_variables,
                                 acclip_tf.BERT_WEIGHT_DECAY_EXCLUDE)
    before = [v.numpy().copy() for v in model.trainable_variables]
    opt.apply_gradients(zip([keras.ops.ones_like(v) for v in model.trainable_variables],
                            model.trainable_variables))
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
    # Only the dense kernel is decayed: the bias and the LayerNorm's gamma/beta are excluded.
    decayed = [v.path for v in model.trainable_variables if opt._use_weight_decay(v)]
    assert [p.split("/", 1)[1] for p in decayed] == ["dense/kernel"]


def test_clip_fraction_only_for_ours():
    assert opt_lib.clip_fraction(keras.optimizers.Adam()) is None
    acclip = opt_lib.make_optimizer("acclip", 1e-3, opt_lib.resolve_settings("acclip"))
    acclip.build([keras.Variable(np.zeros(3, "float32"))])
    assert opt_lib.clip_fraction(acclip) is acclip.clip_fraction


def test_bad_optimizer_setting_is_one_line():
    with pytest.raises(TrainerError, match="alpha"):
        opt_lib.make_optimizer("acclip", 1e-3, opt_lib.resolve_settings("acclip", alpha=3.0))


def test_auto_strategy_choice():
    cluster = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    assert strategy_lib.resolve_name("auto", cluster, num_gpus=0) == "multi_worker_mirrored"
    assert strategy_lib.resolve_name("auto", {}, num_gpus=4) == "mirrored"
    assert strategy_lib.resolve_name("auto", {}, num_gpus=1) == "one_device"
    assert strategy_lib.resolve_name("tpu", {}, num_gpus=8) == "tpu"


def test_scale_gradient_dense_and_sparse():
    import tensorflow as tf

    v = tf.Variable(tf.zeros([4, 2]))
    sparse = tf.IndexedSlices(tf.ones([2, 2]), tf.constant([1, 1]), tf.constant([4, 2]))
    out = scale_gradient(sparse, 0.5, v)
    np.testing.assert_allclose(tf.convert_to_tensor(out), [[0, 0], [1, 1], [0, 0], [0, 0]])
    np.testing.assert_allclose(scale_gradient(tf.ones([4, 2]), 0.25, v), np.full([4, 2], 0.25))


def test_ratios_and_throughput():
    assert ratios({"loss": (6.0, 3.0), "accuracy": (1.0, 4.0)}) == {"loss": 2.0, "accuracy": 0.25}
    t = Throughput()
    t.add(100, 50.0)  # the compiling loop: ignored
    assert t.per_second is None
    t.add(100, 1.0)
    t.add(300, 2.0)
    assert t.per_second == pytest.approx(400 / 3)
    assert t.eta(10, 40) == pytest.approx(3.0)
    assert format_duration(3725) == "1h02m05s" and format_duration(None) == "?"


def test_flags_txt_is_a_valid_flagfile(tmp_path):
    from absl import flags

    from trainers.common import flags as common_flags

    common_flags.define_common_flags()
    values = flags.FLAGS
    try:
        values(["prog", "--optimizer=gclip", "--tau=0.5", "--train_steps=7", "--nojit_compile"])
        path = common_flags.write_flags(str(tmp_path), values)
        values.unparse_flags()
        values(["prog", f"--flagfile={path}"])
        assert (values.optimizer, values.tau, values.train_steps, values.jit_compile) == (
            "gclip", 0.5, 7, False)
    finally:
        values.unparse_flags()
