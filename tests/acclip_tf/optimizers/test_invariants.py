"""Invariants of the clipping rules, reductions to SGD, and input validation."""

import numpy as np
import pytest
import keras

import acclip_tf
from acclip_tf import clipping


def _one_step(optimizer, x, g):
    v = keras.Variable(np.asarray(x, "float32"))
    optimizer.apply([np.asarray(g, "float32")], [v])
    return (np.asarray(x, "float32") - v.numpy()) / float(optimizer.learning_rate.numpy())


@pytest.mark.parametrize("seed", range(5))
def test_acclip_update_never_exceeds_tau(seed):
    rng = np.random.default_rng(seed)
    g1, g2 = rng.standard_cauchy(size=(2, 50)) * 10
    opt = acclip_tf.ACClip(learning_rate=1.0, beta_1=0.3, beta_2=0.9, alpha=1.5,
                           initial_tau=0.3, epsilon=0.0)
    v = keras.Variable(np.zeros(50, "float32"))
    opt.apply([g1.astype("float32")], [v])
    before = v.numpy()
    opt.apply([g2.astype("float32")], [v])
    update = before - v.numpy()
    tau = opt.variables[3].numpy() ** (1 / 1.5)  # slots: iteration, lr, momentum, tau_alpha
    assert np.all(np.abs(update) <= tau * (1 + 1e-6))
    assert np.any(np.abs(update) >= tau * (1 - 1e-4)), "no coordinate was clipped"


@pytest.mark.parametrize("seed", range(5))
def test_cclip_update_within_tau(seed):
    g = np.random.default_rng(seed).standard_cauchy(size=100) * 5
    update = _one_step(acclip_tf.CClip(learning_rate=1.0, tau=0.7), np.zeros(100), g)
    assert np.all(np.abs(update) <= 0.7 + 1e-6)
    np.testing.assert_allclose(update, np.clip(g, -0.7, 0.7).astype("float32"), rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_gclip_update_norm_within_tau_over_all_variables(seed):
    rng = np.random.default_rng(seed)
    gs = [rng.standard_cauchy(size=s) * 5 for s in [(10,), (3, 4)]]
    opt = acclip_tf.GClip(learning_rate=1.0, tau=0.9)
    vs = [keras.Variable(np.zeros(g.shape, "float32")) for g in gs]
    opt.apply([g.astype("float32") for g in gs], vs)
    norm = np.sqrt(sum(np.sum(v.numpy() ** 2) for v in vs))
    assert norm <= 0.9 * (1 + 1e-6)
    np.testing.assert_allclose(norm, 0.9, rtol=1e-5)  # these gradients are large: clipped
    # Direction is preserved: the update is a positive multiple of -g.
    flat_u = np.concatenate([-v.numpy().ravel() for v in vs])
    flat_g = np.concatenate([g.ravel() for g in gs])
    np.testing.assert_allclose(flat_u / np.linalg.norm(flat_u), flat_g / np.linalg.norm(flat_g),
                               rtol=1e-4, atol=1e-6)


def test_huge_tau_reduces_to_sgd_and_ema_momentum():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(4, 6)).astype("float32")
    for make, mu in [(acclip_tf.CClip, 0.0), (acclip_tf.GClip, 0.0),
                     (acclip_tf.CClip, 0.8), (acclip_tf.GClip, 0.8)]:
        opt = make(learning_rate=0.1, tau=1e30, momentum=mu)
        v = keras.Variable(np.zeros(6, "float32"))
        x, m = np.zeros(6), np.zeros(6)
        for g in grads:
            opt.apply([g], [v])
            m = mu * m + (1 - mu) * g if mu else g
            x = x - 0.1 * m
        np.testing.assert_allclose(v.numpy(), x, rtol=1e-5, atol=1e-7)
    # ACClip with a huge threshold is SGD with EMA momentum (no bias correction).
    opt = acclip_tf.ACClip(learning_rate=0.1, beta_1=0.8, initial_tau=1e20, beta_2=0.999999)
    v = keras.Variable(np.zeros(6, "float32"))
    x, m = np.zeros(6), np.zeros(6)
    for g in grads:
        opt.apply([g], [v])
        m = 0.8 * m + 0.2 * g
        x = x - 0.1 * m
    np.testing.assert_allclose(v.numpy(), x, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda: acclip_tf.ACClip(epsilon=0.0),
    lambda: acclip_tf.ACClip(epsilon=0.0, initial_tau=1e-30, beta_2=0.5),
    lambda: acclip_tf.CClip(momentum=0.9),
    lambda: acclip_tf.GClip(momentum=0.9),
    lambda: acclip_tf.GClip(),
])
def test_zero_gradients_give_no_nan(make):
    opt = make()
    opt.track_clip_fraction = True
    v = keras.Variable(np.ones((3, 3), "float32"))
    for _ in range(200):
        opt.apply([np.zeros((3, 3), "float32")], [v])
    assert np.all(np.isfinite(v.numpy()))
    assert all(np.all(np.isfinite(s.numpy())) for s in opt.variables)
    np.testing.assert_array_equal(v.numpy(), np.ones((3, 3)))


def test_pure_functions_agree_with_their_definitions():
    rng = np.random.default_rng(1)
    d = rng.normal(size=50).astype("float32") * 3
    np.testing.assert_allclose(
        clipping.coordinate_clip(d, 1.0, 0.1),
        np.minimum(1.0 / (np.abs(d) + 0.1), 1.0) * d, rtol=1e-6)
    np.testing.assert_array_equal(clipping.coordinate_clip(d, 1.0), np.clip(d, -1, 1))
    np.testing.assert_allclose(clipping.global_norm([d[:20], d[20:].reshape(5, 6)]),
                               np.linalg.norm(d), rtol=1e-6)
    assert float(clipping.global_clip_scale(0.0, 1.0)) == 1.0
    assert float(clipping.global_clip_scale(4.0, 1.0)) == 0.25
    assert np.isnan(float(clipping.global_clip_scale(float("nan"), 1.0)))
    for alpha in [1.0, 1.5, 2.0]:
        np.testing.assert_allclose(clipping.abs_pow(d, alpha), np.abs(d) ** alpha, rtol=1e-6)
        np.testing.assert_allclose(clipping.alpha_root(np.abs(d), alpha),
                                   np.abs(d) ** (1 / alpha), rtol=1e-6)


@pytest.mark.parametrize("shape", [(1024,), (64, 24), (7, 9, 11), (513,)])
def test_norm_and_finiteness_of_heavy_tailed_tensors(shape):
    # Cauchy entries (a few huge ones): the float32 norm must still match float64
    # numpy, and one inf/NaN anywhere in any tensor must be seen.
    rng = np.random.default_rng(2)
    d = rng.standard_cauchy(size=shape).astype("float32")
    np.testing.assert_allclose(clipping.global_norm([d]), np.linalg.norm(d.astype("float64")),
                               rtol=1e-5)
    assert bool(clipping.all_finite([d]))
    for position in [0, d.size // 2, d.size - 1]:
        bad = d.copy().reshape(-1)
        bad[position] = np.inf if position % 2 else np.nan
        assert not bool(clipping.all_finite([d, bad.reshape(shape)]))


@pytest.mark.parametrize("make,argument", [
    (lambda: acclip_tf.ACClip(learning_rate=-1.0), "learning_rate"),
    (lambda: acclip_tf.ACClip(beta_1=1.0), "beta_1"),
    (lambda: acclip_tf.ACClip(beta_2=-0.1), "beta_2"),
    (lambda: acclip_tf.ACClip(epsilon=-1e-8), "epsilon"),
    (lambda: acclip_tf.ACClip(alpha=2.5), "alpha"),
    (lambda: acclip_tf.ACClip(alpha=0.9), "alpha"),
    (lambda: acclip_tf.ACClip(initial_tau=0.0), "initial_tau"),
    (lambda: acclip_tf.ACClip(weight_decay=-1.0), "weight_decay"),
    (lambda: acclip_tf.ACClip(state_dtype="int32"), "state_dtype"),
    (lambda: acclip_tf.CClip(tau=0.0), "tau"),
    (lambda: acclip_tf.CClip(tau="big"), "tau"),
    (lambda: acclip_tf.CClip(momentum=1.0), "momentum"),
    (lambda: acclip_tf.GClip(tau=-2.0), "tau"),
    (lambda: acclip_tf.GClip(momentum=-0.5), "momentum"),
    (lambda: acclip_tf.GClip(epsilon=float("nan")), "epsilon"),
    (lambda: acclip_tf.PolynomialThreshold(0.0, 0.5), "scale"),
])
def test_invalid_hyperparameters_raise_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_gclip_refuses_per_variable_update_step():
    opt = acclip_tf.GClip()
    v = keras.Variable(np.zeros(3, "float32"))
    opt.build([v])
    with pytest.raises(NotImplementedError, match="all variables"):
        opt.update_step(np.ones(3, "float32"), v, 0.1)
