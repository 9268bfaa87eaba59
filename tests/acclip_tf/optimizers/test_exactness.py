"""Multi-step updates equal an independent float64 numpy implementation."""

import numpy as np
import pytest
import keras

import acclip_tf
from numpy_reference import ACClipRef, CClipRef, GClipRef

SHAPES = [(7,), (3, 5), (2, 3, 4), ()]
STEPS = 6


def _gradients(rng, step):
    # Heavy-ish gradients of mixed scale: some coordinates get clipped, some not.
    scale = 0.1 + 3.0 * (step % 3)
    return [rng.standard_t(df=1.5, size=s) * scale for s in SHAPES]


def _run(optimizer, reference, seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s) for s in SHAPES]
    variables = [keras.Variable(x.astype("float32")) for x in init]
    xs = [x.copy() for x in init]
    for step in range(STEPS):
        gs = _gradients(rng, step)
        optimizer.apply([g.astype("float32") for g in gs], variables)
        xs = reference.step(xs, [g.astype("float32").astype("float64") for g in gs])
        for v, x in zip(variables, xs):
            np.testing.assert_allclose(v.numpy(), x, rtol=1e-5, atol=1e-6)
    return optimizer


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("weight_decay", [None, 0.1])
def test_acclip_matches_numpy(alpha, weight_decay, normalize):
    kw = dict(beta_1=0.8, beta_2=0.95, epsilon=1e-3, alpha=alpha, initial_tau=0.7,
              normalize=normalize)
    opt = acclip_tf.ACClip(learning_rate=0.05, weight_decay=weight_decay, **kw)
    ref = ACClipRef(SHAPES, 0.05, weight_decay=weight_decay or 0.0, **kw)
    _run(opt, ref)


@pytest.mark.parametrize("normalize", [False, True])
def test_acclip_paper_defaults_match_numpy(normalize):
    opt = acclip_tf.ACClip(weight_decay=1e-5, normalize=normalize)
    ref = ACClipRef(SHAPES, 1e-4, weight_decay=1e-5, normalize=normalize)
    _run(opt, ref)
    assert (opt.beta_1, opt.beta_2, opt.epsilon, opt.alpha, opt.initial_tau) == (
        0.9, 0.99, 1e-5, 1.0, 1.0)
    assert acclip_tf.ACClip().normalize is False  # default: Algorithm 1


def test_normalized_acclip_is_an_adam_scale_step():
    # Unclipped (huge tau), after one step from v = 0 the normalised update is
    # m / (sqrt(b2 * v) + eps) = (1-b1) g / (sqrt(b2 (1-b2)) |g| + eps): about
    # 0.1 / sqrt(0.0099) ~ 1.0 per coordinate whatever the gradient's scale.
    for scale in [1e-3, 1.0, 1e3]:
        opt = acclip_tf.ACClip(learning_rate=1.0, initial_tau=1e10, normalize=True,
                               epsilon=0.0)
        v = keras.Variable(np.zeros(3, "float32"))
        opt.apply([np.array([1.0, -2.0, 0.5], "float32") * scale], [v])
        np.testing.assert_allclose(-v.numpy(), np.sign([1.0, -2.0, 0.5]) * 0.1 / np.sqrt(0.0099),
                                   rtol=1e-5)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("epsilon", [0.0, 0.5])
@pytest.mark.parametrize("weight_decay", [None, 0.1])
def test_cclip_matches_numpy(momentum, epsilon, weight_decay):
    opt = acclip_tf.CClip(learning_rate=0.1, tau=0.8, momentum=momentum,
                          epsilon=epsilon, weight_decay=weight_decay)
    ref = CClipRef(SHAPES, 0.1, tau=0.8, momentum=momentum, epsilon=epsilon,
                   weight_decay=weight_decay or 0.0)
    _run(opt, ref)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weight_decay", [None, 0.1])
def test_gclip_matches_numpy(momentum, weight_decay):
    opt = acclip_tf.GClip(learning_rate=0.1, tau=2.0, momentum=momentum,
                          weight_decay=weight_decay)
    ref = GClipRef(SHAPES, 0.1, tau=2.0, momentum=momentum, weight_decay=weight_decay or 0.0)
    _run(opt, ref)
    np.testing.assert_allclose(float(opt.global_norm.numpy()), ref.last_norm, rtol=1e-5)


@pytest.mark.parametrize("cls,ref_cls", [(acclip_tf.GClip, GClipRef), (acclip_tf.CClip, CClipRef)])
def test_threshold_schedule_theorem_4(cls, ref_cls):
    # tau_k = G * k**(alpha - 1) with k = 1 on the first step (Theorem 4 / 8).
    G, alpha = 0.5, 1.5
    opt = cls(learning_rate=0.1, tau=acclip_tf.PolynomialThreshold(G, alpha - 1))
    ref = ref_cls(SHAPES, 0.1, tau=lambda k: G * (k + 1) ** (alpha - 1))
    _run(opt, ref)


def test_learning_rate_schedule_is_followed():
    schedule = keras.optimizers.schedules.PolynomialDecay(0.1, STEPS, 0.01)
    opt = acclip_tf.CClip(learning_rate=schedule, tau=0.5)
    rng = np.random.default_rng(3)
    x0 = rng.normal(size=(4,))
    v = keras.Variable(x0.astype("float32"))
    x = x0.copy()
    for k in range(STEPS):
        g = rng.normal(size=(4,)) * 3
        opt.apply([g.astype("float32")], [v])
        lr = float(schedule(k))
        x = x - lr * np.clip(g.astype("float32"), -0.5, 0.5)
    np.testing.assert_allclose(v.numpy(), x, rtol=1e-5)
