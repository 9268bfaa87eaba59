"""gradient_noise_norms on linear regression against the analytic noise norms.

Model ``y_hat = X w`` (Dense(3 -> 1), no bias) at fixed ``w``; data
``y = X w* + eps``. With the mean-squared-error loss over a batch B the
minibatch gradient is ``g_B = (2/|B|) X_B^T (X_B w - y_B)``; the reference
below computes all ``g_B``, their mean and ``||g_B - mean||`` in numpy,
independently of TensorFlow. The MirroredStrategy check runs in a fresh
Python process, because the two logical CPU devices must be configured before
TensorFlow initialises.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import preloaded

NUM, DIM, BATCH = 96, 3, 8


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((NUM, DIM)).astype(np.float32)
    w_star = np.array([1.0, -2.0, 0.5], np.float32)
    eps = rng.standard_t(df=2.5, size=NUM).astype(np.float32)  # heavy-ish noise
    y = (x @ w_star + eps)[:, None]
    w = np.array([[0.3], [0.1], [-0.2]], np.float32)
    return x, y, w


def _reference(x, y, w):
    xb = x.reshape(-1, BATCH, DIM).astype(np.float64)
    yb = y.reshape(-1, BATCH).astype(np.float64)
    resid = xb @ w[:, 0].astype(np.float64) - yb
    grads = 2.0 / BATCH * np.einsum("bnd,bn->bd", xb, resid)
    gbar = grads.mean(axis=0)
    return np.linalg.norm(grads - gbar, axis=1), np.linalg.norm(grads, axis=1), gbar


def test_matches_analytic_noise_norms():
    import keras
    import tensorflow as tf

    from acclip_tf import noise

    x, y, w = _data()
    model = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(w)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True)
    out = noise.gradient_noise_norms(model, keras.losses.MeanSquaredError(), ds, return_full_gradient=True)
    ref_noise, ref_norms, gbar = _reference(x, y, w)
    assert out.num_batches == NUM // BATCH
    np.testing.assert_allclose(out.noise_norms, ref_noise, rtol=1e-5)
    np.testing.assert_allclose(out.gradient_norms, ref_norms, rtol=1e-5)
    np.testing.assert_allclose(out.full_gradient[0][:, 0], gbar, rtol=1e-5)
    assert out.full_gradient_norm == pytest.approx(np.linalg.norm(gbar), rel=1e-5)
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), w)  # weights untouched
    # A given full gradient (here 0) makes the noise norms the gradient norms.
    zero = noise.gradient_noise_norms(model, keras.losses.MeanSquaredError(), ds, full_gradient=[np.zeros((DIM, 1))])
    np.testing.assert_allclose(zero.noise_norms, ref_norms, rtol=1e-5)
    # num_batches limits both passes; the mean is over those batches only.
    part = noise.gradient_noise_norms(model, keras.losses.MeanSquaredError(), ds, num_batches=4)
    xb, yb = x[: 4 * BATCH], y[: 4 * BATCH]
    np.testing.assert_allclose(part.noise_norms, _reference(xb, yb, w)[0], rtol=1e-5)
    assert set(out.statistics()) >= {"stable_alpha", "hill_alpha", "kurtosis", "full_gradient_norm"}


def test_bad_input_raises():
    import keras
    import tensorflow as tf

    from acclip_tf import noise

    x, y, w = _data()
    model = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(1, use_bias=False)])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    mse = keras.losses.MeanSquaredError()
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        noise.gradient_noise_norms(model, mse, (x, y))
    with pytest.raises(ValueError, match="num_batches"):
        noise.gradient_noise_norms(model, mse, ds, num_batches=0)
    with pytest.raises(ValueError, match="does not match variable"):
        noise.gradient_noise_norms(model, mse, ds, full_gradient=[np.zeros(3)])
    with pytest.raises(ValueError, match="yielded no minibatches"):
        noise.gradient_noise_norms(model, mse, ds.take(0))
    with pytest.raises(ValueError, match="cross_replica"):
        noise.gradient_noise_norms(model, mse, ds, cross_replica="max")
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        noise.gradient_noise_norms(model, mse, tf.data.Dataset.from_tensor_slices(x).batch(BATCH))


_MIRRORED = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from acclip_tf import noise
    x = np.array(json.loads(sys.argv[1]), np.float32)
    y = np.array(json.loads(sys.argv[2]), np.float32)
    w = np.array(json.loads(sys.argv[3]), np.float32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1, use_bias=False)])
        model.layers[0].kernel.assign(w)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(int(sys.argv[4]), drop_remainder=True)
    # A Keras loss object (pre-scaled by 1/replicas, summed) and a plain
    # function returning the local mean (averaged) must agree.
    out = noise.gradient_noise_norms(
        model, keras.losses.MeanSquaredError(), ds, strategy=strategy)
    plain = noise.gradient_noise_norms(
        model, lambda t, p: tf.reduce_mean(tf.square(t - p)), ds, strategy=strategy)
    print("RESULT", json.dumps({"replicas": strategy.num_replicas_in_sync,
                                "noise": out.noise_norms.tolist(), "norms": out.gradient_norms.tolist(),
                                "plain_noise": plain.noise_norms.tolist()}))
    """
)


def test_mirrored_strategy_uses_the_aggregated_gradient():
    x, y, w = _data()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = preloaded.run(
        [sys.executable, "-c", _MIRRORED, json.dumps(x.tolist()), json.dumps(y.tolist()),
         json.dumps(w.tolist()), str(BATCH)],
        capture_output=True, text=True, timeout=240, env=env,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2
    ref_noise, ref_norms, _ = _reference(x, y, w)
    # Each replica sees BATCH/2 examples; the mean of the two replica
    # gradients is the global-batch gradient.
    np.testing.assert_allclose(result["noise"], ref_noise, rtol=1e-5)
    np.testing.assert_allclose(result["norms"], ref_norms, rtol=1e-5)
    np.testing.assert_allclose(result["plain_noise"], ref_noise, rtol=1e-5)
