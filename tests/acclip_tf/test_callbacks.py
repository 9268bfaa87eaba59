"""acclip_tf.callbacks.OptimizerDiagnostics in model.fit.

The logged values are checked against the float64 numpy references of
tests/numpy_reference.py run on the same full-batch least-squares problem
(gradient 2/n X^T (Xw - y) computed in numpy), and against the optimizer's
variables read directly after each batch.
"""

import csv
import math

import keras
import numpy as np
import pytest
from numpy_reference import ACClipRef, GClipRef

import acclip_tf
from acclip_tf.callbacks import OptimizerDiagnostics, unwrap

N, D = 32, 8


def _problem():
    rng = np.random.default_rng(0)
    # Column scales from 0.03 to 30: some coordinates' gradients clip, some do not.
    x = rng.normal(size=(N, D)) * np.geomspace(0.03, 30.0, D)
    w_true = rng.normal(size=(D, 1))
    y = x @ w_true + 0.1 * rng.normal(size=(N, 1))
    return x.astype("float32"), y.astype("float32")


def _model(optimizer, seed=1):
    w0 = np.random.default_rng(seed).normal(size=(D, 1)).astype("float32") * 0.1
    model = keras.Sequential([keras.Input((D,)),
                              keras.layers.Dense(1, use_bias=False,
                                                 kernel_initializer=keras.initializers.Constant(w0))])
    model.compile(optimizer=optimizer, loss="mse")
    return model, w0.astype(np.float64)


class Recorder(keras.callbacks.Callback):
    """Copies of the logs each callback after OptimizerDiagnostics sees, and the
    optimizer's variables read directly after each batch."""

    def __init__(self):
        super().__init__()
        self.batches, self.epochs, self.direct = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs))
        opt = unwrap(self.model.optimizer)
        self.direct.append(float(keras.ops.convert_to_numpy(opt.clip_fraction)))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


def _gradient(x, y, w):
    x, y = x.astype(np.float64), y.astype(np.float64)
    return 2.0 / len(x) * x.T @ (x @ w - y)


def test_acclip_clip_fraction_and_thresholds_match_numpy():
    x, y = _problem()
    model, w = _model(acclip_tf.ACClip(learning_rate=0.1, track_clip_fraction=True))
    recorder = Recorder()
    model.fit(x, y, batch_size=N, epochs=6, shuffle=False, verbose=0,
              callbacks=[OptimizerDiagnostics(), recorder])

    ref = ACClipRef([w.shape], lr=0.1)
    fractions, taus = [], []
    for _ in range(6):
        g = _gradient(x, y, w)
        m_next = 0.9 * ref.m[0] + 0.1 * g
        t_next = 0.99 * ref.t[0] + 0.01 * np.abs(g)
        fractions.append(np.mean(np.abs(m_next) + 1e-5 > t_next))
        (w,) = ref.step([w], [g])
        taus.append(ref.t[0].ravel())
    assert 0 < np.mean(fractions) < 1, fractions

    logged = [b["clip_fraction"] for b in recorder.batches]
    np.testing.assert_allclose(logged, fractions, atol=1e-7)
    assert logged == recorder.direct
    # One batch per epoch: the epoch's mean is that batch's value.
    np.testing.assert_allclose([e["clip_fraction"] for e in recorder.epochs], fractions,
                               atol=1e-7)
    np.testing.assert_allclose([e["tau_mean"] for e in recorder.epochs],
                               [t.mean() for t in taus], rtol=1e-5)
    np.testing.assert_allclose([e["tau_median"] for e in recorder.epochs],
                               [np.median(t) for t in taus], rtol=1e-5)
    assert "tau_mean" not in recorder.batches[0]  # per epoch unless batch_thresholds
    assert "global_norm" not in recorder.epochs[0] and "skipped_steps" not in recorder.epochs[0]


def test_gclip_global_norm_and_epoch_means_match_numpy():
    x, y = _problem()
    tau = 1100.0  # the batches' norms are 1000-1400: some steps clip, some do not
    model, w = _model(acclip_tf.GClip(learning_rate=1e-5, tau=tau, track_clip_fraction=True))
    recorder = Recorder()
    batch = 8  # four batches per epoch: the epoch logs hold their means
    model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0,
              callbacks=[OptimizerDiagnostics(prefix="opt/"), recorder])

    ref = GClipRef([w.shape], lr=1e-5, tau=tau)
    norms = []
    for _ in range(2):
        for i in range(0, N, batch):
            (w,) = ref.step([w], [_gradient(x[i:i + batch], y[i:i + batch], w)])
            norms.append(ref.last_norm)
    norms = np.array(norms)
    clipped = (norms > tau).astype(float)
    assert 0 < clipped.mean() < 1, norms

    np.testing.assert_allclose([b["opt/global_norm"] for b in recorder.batches], norms,
                               rtol=1e-4)
    assert [b["opt/clip_fraction"] for b in recorder.batches] == list(clipped)
    for epoch, logs in enumerate(recorder.epochs):
        part = slice(4 * epoch, 4 * epoch + 4)
        assert logs["opt/clip_fraction"] == pytest.approx(clipped[part].mean())
        assert logs["opt/global_norm"] == pytest.approx(norms[part].mean(), rel=1e-4)
        assert "clip_fraction" not in logs  # everything carries the prefix


def test_csv_logger_after_it_records_the_columns(tmp_path):
    x, y = _problem()
    model, _ = _model(acclip_tf.ACClip(learning_rate=0.1, track_clip_fraction=True))
    path = tmp_path / "log.csv"
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0,
                        callbacks=[OptimizerDiagnostics(), keras.callbacks.CSVLogger(str(path))])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for key in ("clip_fraction", "tau_mean", "tau_median"):
        assert key in rows[0], rows[0].keys()
        np.testing.assert_allclose([float(r[key]) for r in rows], history.history[key],
                                   rtol=1e-6)

    # Listed before it, CSVLogger never sees the keys (hence the docstring's rule).
    model, _ = _model(acclip_tf.ACClip(learning_rate=0.1, track_clip_fraction=True))
    late = tmp_path / "late.csv"
    model.fit(x, y, batch_size=16, epochs=1, verbose=0,
              callbacks=[keras.callbacks.CSVLogger(str(late)), OptimizerDiagnostics()])
    with open(late) as f:
        assert "clip_fraction" not in next(csv.DictReader(f))


def test_untracked_clip_fraction_is_an_error_not_a_silent_zero():
    x, y = _problem()
    model, _ = _model(acclip_tf.ACClip(learning_rate=0.1))
    with pytest.raises(ValueError, match="track_clip_fraction=False"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[OptimizerDiagnostics()])
    history = model.fit(x, y, batch_size=N, epochs=1, verbose=0,
                        callbacks=[OptimizerDiagnostics(clip_fraction=False,
                                                        batch_thresholds=True)])
    assert "clip_fraction" not in history.history
    assert history.history["tau_mean"][0] > 0


def test_other_optimizers_are_refused():
    x, y = _problem()
    model, _ = _model(keras.optimizers.Adam())
    with pytest.raises(ValueError, match="Adam"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[OptimizerDiagnostics()])


def test_skipped_steps_count_the_nonfinite_batches():
    x, y = _problem()
    y = y.copy()
    y[10] = np.nan  # in the second of four batches
    model, _ = _model(acclip_tf.CClip(learning_rate=1e-3, skip_nonfinite=True,
                                      track_clip_fraction=True))
    recorder = Recorder()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[OptimizerDiagnostics(), recorder])
    assert [b["skipped_steps"] for b in recorder.batches] == [0, 1, 1, 1]
    assert recorder.epochs[0]["skipped_steps"] == 1
    assert [b["clip_fraction"] for b in recorder.batches] == recorder.direct


def test_mixed_float16_loss_scale_optimizer_is_unwrapped():
    x, y = _problem()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, _ = _model(acclip_tf.ACClip(learning_rate=0.01, track_clip_fraction=True))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        recorder = Recorder()
        model.fit(x / 10, y / 10, batch_size=16, epochs=2, verbose=0,
                  callbacks=[OptimizerDiagnostics(batch_thresholds=True), recorder])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert [b["clip_fraction"] for b in recorder.batches] == recorder.direct
    assert all(math.isfinite(b["tau_median"]) and b["tau_median"] > 0
               for b in recorder.batches)
    assert "tau_mean" in recorder.epochs[-1]


def test_tensorboard_after_it_writes_the_scalars(tmp_path):
    import tensorflow as tf

    x, y = _problem()
    model, _ = _model(acclip_tf.GClip(learning_rate=1e-5, tau=1100.0, track_clip_fraction=True))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[OptimizerDiagnostics(),
                         keras.callbacks.TensorBoard(str(tmp_path), update_freq="batch")])
    tags = set()
    for path in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    for key in ("clip_fraction", "global_norm"):
        assert f"epoch_{key}" in tags and f"batch_{key}" in tags, sorted(tags)
