"""The optimisation-speed metric of the causal LM (docs/evidence.md): the fixed training
windows (`--fixed_train_examples`) and the loss per token-frequency bucket
(`--frequency_buckets`), checked in-process against independent recomputations: Keras'
own cross-entropy of the model on those windows, and numpy per bucket."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainers.common import config
from trainers.common.inputs import fixed_indices
from trainers.common.loop import StepLoop
from trainers.lm import data as lm_data
from trainers.lm.config import LMConfig
from trainers.lm.task import CausalLMTask
from shards_helpers import write_corpus


def task(corpus, model_dir, seed=0, **overrides):
    model_dir.mkdir(parents=True, exist_ok=True)  # the runner makes it before the task
    values = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                  corpus=corpus, eval_fraction=0.4, vocab_size=100, seq_length=8, dropout=0.5,
                  frequency_buckets=3)
    values.update(overrides)
    experiment = config.ExperimentConfig(
        "test", config.RunConfig(model_dir=str(model_dir), seed=seed),
        config.OptimizerConfig(), LMConfig(**values))
    return CausalLMTask(experiment, str(model_dir), True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("fixed_corpus")))


def test_fixed_indices_are_evenly_spaced_distinct_and_seed_free():
    assert list(fixed_indices(10, 4)) == [0, 2, 5, 7]
    assert list(fixed_indices(3, 8)) == [0, 1, 2]
    idx = fixed_indices(1000, 37)
    assert len(idx) == 37 and len(set(idx)) == 37 and idx[-1] < 1000


def test_frequency_buckets_have_equal_mass_rarest_first():
    # counts: token 0: 0, 1: 1, 2: 1, 3: 2, 4: 6 (total 10) -> order 0, 1, 2, 3, 4;
    # mass before each: 0, 0, 1, 2, 4 -> buckets of 2 (floor(2 * before / 10)): 0 0 0 0 0;
    # with 5 buckets: floor(5 * before / 10) = 0, 0, 0, 1, 2.
    targets = np.array([1, 2, 3, 3, 4, 4, 4, 4, 4, 4])
    assert list(lm_data.frequency_buckets(targets, 5, 2)) == [0, 0, 0, 0, 0]
    assert list(lm_data.frequency_buckets(targets, 5, 5)) == [0, 0, 0, 1, 2]
    # Equal counts: ties by id; each bucket gets one token's mass.
    assert list(lm_data.frequency_buckets(np.arange(4).repeat(3), 4, 4)) == [0, 1, 2, 3]


def test_the_same_windows_for_every_seed(corpus, tmp_path):
    a = task(corpus, tmp_path / "a", seed=0)
    b = task(corpus, tmp_path / "b", seed=7)
    np.testing.assert_array_equal(a.data.fixed_train_windows(10), b.data.fixed_train_windows(10))
    train = a.data.train_windows
    assert len(train) > 10
    np.testing.assert_array_equal(a.data.fixed_train_windows(10),
                                  train[fixed_indices(len(train), 10)])


def test_fixed_train_loss_equals_keras_cross_entropy_with_dropout_off(corpus, tmp_path):
    lm = task(corpus, tmp_path / "run")
    keras.utils.set_random_seed(3)
    model = lm.build_model()
    strategy = tf.distribute.get_strategy()
    loop = StepLoop(strategy, model, keras.optimizers.SGD(0.1), lm.forward, jit_compile=False)
    count, batch = 11, 4  # 11 windows: the last batch holds 3 and a weight-0 filler
    data = strategy.distribute_datasets_from_function(
        lambda ctx: lm.fixed_train_dataset(ctx, batch, count))
    steps = lm.fixed_train_steps(batch, count)
    assert steps == 3
    got = loop.evaluate(iter(data), steps)
    again = loop.evaluate(iter(data), steps)
    assert got == again  # no dropout: the same numbers every time

    windows = lm.data.fixed_train_windows(count)
    inputs, targets = windows[:, :-1], windows[:, 1:]
    logits = model({"token_ids": inputs, "padding_mask": np.ones_like(inputs)}, training=False)
    reference = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(targets, logits)
    assert got["loss"] == pytest.approx(float(reference), rel=1e-5)
    noisy = model({"token_ids": inputs, "padding_mask": np.ones_like(inputs)}, training=True)
    assert float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        targets, noisy)) != pytest.approx(got["loss"], rel=1e-4)  # dropout 0.5 would differ

    # Per frequency bucket, against numpy: log-softmax, then the mean per bucket, with
    # buckets recomputed from the training targets' counts.
    z = np.asarray(logits, np.float64)
    log_p = z - z.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    counts = np.bincount(lm.data.train_windows[:, 1:].ravel(), minlength=len(lm.vocab))
    order = sorted(range(len(counts)), key=lambda t: (counts[t], t))
    bucket, mass = np.zeros(len(counts), int), 0
    for t in order:
        bucket[t] = min(3 * mass // counts.sum(), 2)
        mass += counts[t]
    of_target = bucket[targets]
    for k in range(3):
        if (of_target == k).any():
            assert got[f"loss_bucket{k}"] == pytest.approx(ce[of_target == k].mean(), rel=1e-5)


def test_train_windows_keeps_an_evenly_spaced_subset(corpus, tmp_path):
    full = task(corpus, tmp_path / "full")
    sub = task(corpus, tmp_path / "sub", train_windows=8)
    assert len(sub.data.train_windows) == 8
    np.testing.assert_array_equal(
        sub.data.train_windows, full.data.train_windows[fixed_indices(len(full.data.train_windows), 8)])
    # All of the subset is the fixed set: the noise-free cell trains on what it measures.
    np.testing.assert_array_equal(sub.data.fixed_train_windows(8), sub.data.train_windows)
