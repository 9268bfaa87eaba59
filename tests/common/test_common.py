"""trainers/common: schedule, loop boundaries, optimizer factory, strategy choice."""

import inspect
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
    assert s["learning_rate"] == 1e-4 and s["beta_2"] == 0.9 and s["acclip_initial_tau"] == 1.0
    assert "tau" not in s  # --tau is the gclip/cclip threshold only
    with pytest.raises(TrainerError, match="unknown optimizer 'adagrad'"):
        opt_lib.resolve_settings("adagrad")


def test_family_settings_sit_between_the_table_and_the_flags():
    family = {"gclip": {"learning_rate": 1.0, "tau": 0.3}, "adam": {"learning_rate": 3e-4}}
    s = opt_lib.resolve_settings("gclip", family, learning_rate=None, momentum=None)
    assert (s["learning_rate"], s["tau"]) == (1.0, 0.3)
    assert s["momentum"] == opt_lib.DEFAULTS["gclip"]["momentum"]  # not in the family's entry
    assert opt_lib.resolve_settings("gclip", family, learning_rate=0.05)["learning_rate"] == 0.05
    # an optimizer the family did not measure keeps the table's defaults
    assert opt_lib.resolve_settings("sgd", family) == opt_lib.DEFAULTS["sgd"]
    assert family == {"gclip": {"learning_rate": 1.0, "tau": 0.3},
                      "adam": {"learning_rate": 3e-4}}  # not modified


@pytest.mark.parametrize("name", list(opt_lib.DEFAULTS))
def test_every_optimizer_builds_and_steps(name):
    if name == "acclip_norm" and "normalize" not in inspect.signature(acclip_tf.ACClip).parameters:
        pytest.skip("this acclip_tf has no ACClip(normalize=...) yet")
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


def test_optimizer_flag_choices_and_sweep_grids_come_from_the_registry():
    from absl import flags as absl_flags

    from trainers.common import flags as common_flags
    from trainers.common import optimizer_registry as registry
    from trainers.common import sweep as sweep_lib

    fv = absl_flags.FlagValues()
    # The --optimizer enum as a trainer defines it: the registry's names, in its order.
    absl_flags.DEFINE_enum("optimizer", registry.DEFAULT, common_flags.OPTIMIZERS, "",
                           flag_values=fv)
    assert fv["optimizer"].parser.enum_values == list(registry.OPTIMIZERS)
    assert set(sweep_lib.TAU_GRIDS) == {n for n, s in registry.OPTIMIZERS.items() if s.tau_grid}
    assert sweep_lib.LR_CENTRES == {n: s.lr_centre for n, s in registry.OPTIMIZERS.items()}
    assert set(registry.COMPARED) < set(registry.NAMES)


@pytest.mark.parametrize("name", list(opt_lib.DEFAULTS))
def test_registry_learning_rate_scale_is_the_first_steps_scale(name):
    """An optimizer filed as GRADIENT_SCALE moves a weight by ~lr x gradient on its first
    step, a NORMALISED one by ~lr whatever the gradient: with gradients of 1e-3 the two
    differ by 1000x, so each entry's lr_scale (which sizes its sweep grid) is measured."""
    from trainers.common import optimizer_registry as registry

    if name == "acclip_norm" and "normalize" not in inspect.signature(acclip_tf.ACClip).parameters:
        pytest.skip("this acclip_tf has no ACClip(normalize=...) yet")
    spec = registry.OPTIMIZERS[name]
    var = keras.Variable(np.zeros(64, "float32"))
    settings = opt_lib.resolve_settings(name, weight_decay=0.0)
    opt = opt_lib.make_optimizer(name, 0.01, settings)
    opt.apply_gradients([(keras.ops.full((64,), 1e-3), var)])
    step = float(np.abs(var.numpy()).mean()) / 0.01  # |update| / lr
    if spec.lr_scale == registry.GRADIENT_SCALE:
        assert 1e-5 <= step <= 1e-2, step  # ~ the gradient (1e-3) times O(0.1 .. 10)
    else:
        assert spec.lr_scale == registry.NORMALISED
        assert 0.1 <= step <= 10, step  # ~ 1 whatever the gradient


@pytest.mark.parametrize("name", ["gclip", "cclip"])
def test_epsilon_reaches_the_clipped_sgds(name):
    settings = opt_lib.resolve_settings(name, epsilon=0.25, tau=0.5)
    opt = opt_lib.make_optimizer(name, 0.01, settings)
    assert opt.get_config()["epsilon"] == 0.25 and opt.get_config()["tau"] == 0.5


def test_acclip_initial_tau_has_its_own_flag():
    opt = opt_lib.make_optimizer("acclip", 0.01, opt_lib.resolve_settings(
        "acclip", acclip_initial_tau=0.3, tau=7.0))
    assert opt.get_config()["initial_tau"] == pytest.approx(0.3)


def test_sgd_refuses_epsilon_in_one_line():
    with pytest.raises(TrainerError, match=r"--epsilon does not apply to --optimizer=sgd"):
        opt_lib.check_applicable("sgd", epsilon=1e-8)
    opt_lib.check_applicable("sgd", epsilon=None)
    opt_lib.check_applicable("gclip", epsilon=1e-8)


def test_weight_decay_is_read_one_way():
    """Same flag, same meaning: Keras' decoupled decay on every optimizer (0: none)."""
    for name in opt_lib.OPTIMIZERS:
        if name == "acclip_norm":
            continue
        opt = opt_lib.make_optimizer(name, 0.01, opt_lib.resolve_settings(name, weight_decay=0.0))
        assert not opt.weight_decay, name
        opt = opt_lib.make_optimizer(name, 0.01, opt_lib.resolve_settings(name, weight_decay=0.02))
        assert opt.weight_decay == pytest.approx(0.02), name


def _parse(argv):
    """Parse `argv` with the shared flags; returns the FlagValues (unparsed by the caller)."""
    from absl import flags

    from trainers.common import flags as common_flags

    common_flags.define_common_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["prog", *argv])
    return flags.FLAGS


@pytest.mark.parametrize("argv, message", [
    (["--optimizer=sgd", "--epsilon=1e-8", "--model_dir=x"], "--epsilon does not apply"),
    (["--optimizer=adam", "--learning_rate=0.5", "--model_dir=x"], None),
])
def test_bad_optimizer_flags_fail_in_one_line(argv, message):
    from absl import flags

    from trainers.common import config
    from trainers.common import run_plan

    try:
        f = _parse(argv)
        run = config.from_flags(config.RunConfig, f)
        opt = config.from_flags(config.OptimizerConfig, f)
        plan = run_plan.resolve(run, opt)
        if message is None:
            assert opt_lib.build(opt, plan, 32)[2]["learning_rate"] == 0.5
            return
        with pytest.raises(TrainerError, match=message):
            opt_lib.build(opt, plan, 32)
    finally:
        flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("argv, message", [
    (["--train_steps=0"], "flag --train_steps=0: must be >= 1"),
    (["--global_batch_size=0"], "flag --global_batch_size=0: must be >= 1"),
    (["--eval_every=-1"], "flag --eval_every=-1: must be >= 0"),
    (["--learning_rate=0"], "flag --learning_rate=0.0: must be > 0"),
    (["--warmup_steps=-1"], "flag --warmup_steps=-1: must be >= 0"),
    (["--optimizer=nadam"], "flag --optimizer=nadam: value should be one of"),
])
def test_bad_common_flags_fail_while_parsing(argv, message):
    """The configs' ranges are absl validators of the generated flags."""
    from absl import flags

    try:
        with pytest.raises(flags.IllegalFlagValueError, match=message):
            _parse(argv)
    finally:
        flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("changes, message", [
    (dict(model_dir=None), "--model_dir is required"),
    (dict(train_steps=0), "--train_steps must be >= 1, got 0"),
    (dict(eval_every=-1), "--eval_every must be >= 0, got -1"),
    (dict(strategy="cluster"), "--strategy must be one of auto, one_device"),
])
def test_a_config_built_in_python_checks_the_same_ranges(changes, message):
    from trainers.common import config

    with pytest.raises(TrainerError, match=message):
        config.RunConfig(**dict(dict(model_dir="x"), **changes))
    with pytest.raises(TrainerError, match="--learning_rate must be > 0"):
        config.OptimizerConfig(learning_rate=0.0)


def test_flags_are_the_config_fields_with_their_defaults_and_help():
    import dataclasses

    from absl import flags

    from trainers.common import config

    _parse([])
    try:
        for cls in (config.RunConfig, config.OptimizerConfig):
            for field in dataclasses.fields(cls):
                flag = flags.FLAGS[field.name]
                assert flag.help.endswith(field.metadata["help"]), field.name
        f = _parse(["--model_dir=x", "--optimizer=adam", "--learning_rate=3e-4",
                    "--train_steps=7", "--lr_decay_steps=3,5"])
        run = config.from_flags(config.RunConfig, f)
        opt = config.from_flags(config.OptimizerConfig, f)
        assert (run.model_dir, run.train_steps, run.global_batch_size) == ("x", 7, 32)
        assert (opt.optimizer, opt.learning_rate, opt.lr_decay_steps) == ("adam", 3e-4,
                                                                          ["3", "5"])
        assert config.RunConfig.from_dict(run.to_dict()) == run
        assert config.OptimizerConfig.from_dict(dict(opt.to_dict(), seed=3)) == opt
    finally:
        flags.FLAGS.unparse_flags()


def test_config_json_records_the_program_and_its_flags(tmp_path):
    import json

    from absl import flags

    from trainers.common import config as config_lib
    from trainers.common import flags as common_flags
    from trainers.common.text.config import TransformerSizeConfig

    try:
        f = _parse(["--model_dir=x", "--optimizer=gclip", "--tau=0.5", "--train_steps=7"])
        experiment = config_lib.ExperimentConfig(
            "trainers.example", config_lib.from_flags(config_lib.RunConfig, f),
            config_lib.from_flags(config_lib.OptimizerConfig, f),
            TransformerSizeConfig(num_layers=3))
        path = common_flags.write_config(str(tmp_path), experiment, f)
        config = json.load(open(path))
    finally:
        flags.FLAGS.unparse_flags()
    assert config_lib.ExperimentConfig.from_dict(config, TransformerSizeConfig) == experiment
    assert config["task"]["num_layers"] == 3 and config["flags"]["num_layers"] == 3
    assert config["program"] == "trainers.example"
    assert config["flags"]["optimizer"] == "gclip" and config["flags"]["tau"] == 0.5
    assert config["flags"]["train_steps"] == 7 and config["flags"]["learning_rate"] is None
    assert not [k for k in config["flags"] if k in ("logtostderr", "flagfile", "help")]


def test_reporter_records_a_diverging_runs_huge_finite_values(tmp_path):
    """A diverging run's perplexity (exp(710) ~ 2e308 > float32's range, still a finite
    Python float) goes to TensorBoard and metrics.jsonl instead of stopping the run
    (it did: "value out of range" from the float32 conversion, a raw traceback)."""
    import json

    from trainers.common.reporting import Reporter

    huge = math.exp(700.0)
    reporter = Reporter(str(tmp_path), is_chief=True)
    reporter.evaluation({"step": 10, "eval_loss": 700.0, "eval_perplexity": huge,
                         "eval_nan": float("nan")})
    reporter.close()
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record["eval_perplexity"] == huge
    assert list((tmp_path / "tensorboard").iterdir())
