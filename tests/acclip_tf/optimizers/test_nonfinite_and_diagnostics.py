"""Non-finite gradients (skip or propagate) and the clip-fraction diagnostics."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import acclip_tf
from numpy_reference import ACClipRef

MAKERS = {
    "acclip": lambda **kw: acclip_tf.ACClip(learning_rate=0.1, **kw),
    "acclip_normalize": lambda **kw: acclip_tf.ACClip(learning_rate=0.1, normalize=True, **kw),
    "cclip": lambda **kw: acclip_tf.CClip(momentum=0.9, **kw),
    "gclip": lambda **kw: acclip_tf.GClip(momentum=0.9, **kw),
}


SLOTS = ("momentum", "tau_alpha", "second_moment")


def _two_variables():
    return [keras.Variable(np.ones((2, 3), "float32")), keras.Variable(np.ones(4, "float32"))]


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_skip_nonfinite_skips_the_whole_update(name, bad):
    opt = MAKERS[name](skip_nonfinite=True, weight_decay=0.1)
    variables = _two_variables()
    good = [np.full((2, 3), 0.5, "float32"), np.full(4, -0.5, "float32")]
    opt.apply(good, variables)
    weights = [v.numpy() for v in variables]
    slots = [s.numpy() for s in opt.variables if s.path.endswith(SLOTS)]
    broken = [good[0].copy(), good[1].copy()]
    broken[1][2] = bad  # one entry of one variable
    opt.apply(broken, variables)
    for v, w in zip(variables, weights):
        np.testing.assert_array_equal(v.numpy(), w)  # weight decay skipped too
    after = [s.numpy() for s in opt.variables if s.path.endswith(SLOTS)]
    for a, b in zip(slots, after):
        np.testing.assert_array_equal(a, b)
    assert int(opt.skipped_steps.numpy()) == 1
    opt.apply(good, variables)  # finite steps go on as usual
    assert int(opt.skipped_steps.numpy()) == 1
    assert not np.allclose(variables[0].numpy(), weights[0])


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_without_skip_nonfinite_values_propagate(name):
    # Documented behaviour: like Keras' optimizers, a NaN gradient is not hidden.
    opt = MAKERS[name]()
    variables = _two_variables()
    grads = [np.full((2, 3), 0.5, "float32"), np.full(4, np.nan, "float32")]
    opt.apply(grads, variables)
    assert np.isnan(variables[1].numpy()).all()
    assert int(opt.skipped_steps.numpy()) == 0


def test_skip_is_all_reduced_across_replicas(two_replicas):
    strategy = two_replicas
    with strategy.scope():
        var = keras.Variable(np.ones(3, "float32"))
        opt = acclip_tf.ACClip(learning_rate=0.1, skip_nonfinite=True)
        opt.build([var])

    def replica_fn():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        # Only replica 1 sees an inf.
        g = tf.where(tf.equal(replica, 1), tf.constant([np.inf, 0, 0], tf.float32),
                     tf.constant([1.0, 1.0, 1.0]))
        opt.apply([g], [var])

    tf.function(lambda: strategy.run(replica_fn))()
    for local in strategy.experimental_local_results(var.value):
        np.testing.assert_array_equal(local.numpy(), np.ones(3))
    assert int(opt.skipped_steps.numpy()) == 1


@pytest.mark.parametrize("normalize", [False, True])
def test_acclip_clip_fraction_matches_numpy(normalize):
    rng = np.random.default_rng(0)
    shapes = [(20,), (4, 5)]
    opt = acclip_tf.ACClip(learning_rate=0.1, beta_1=0.5, beta_2=0.9, track_clip_fraction=True,
                           normalize=normalize)
    ref = ACClipRef(shapes, 0.1, beta_1=0.5, beta_2=0.9, normalize=normalize)
    variables = [keras.Variable(np.zeros(s, "float32")) for s in shapes]
    xs = [np.zeros(s) for s in shapes]
    for _ in range(3):
        gs = [(rng.standard_cauchy(size=s) * 2).astype("float32") for s in shapes]
        opt.apply(gs, variables)
        xs = ref.step(xs, [g.astype("float64") for g in gs])
        clipped = sum(np.sum(np.abs(m) + ref.eps > t) for m, t in zip(ref.m, ref.t))
        expected = clipped / 40.0
        assert 0 < expected < 1
        np.testing.assert_allclose(float(opt.clip_fraction.numpy()), expected, rtol=1e-6)
        for v, x in zip(variables, xs):  # the counting pass is the update's pass
            np.testing.assert_allclose(v.numpy(), x, rtol=1e-5, atol=1e-6)


def test_cclip_and_gclip_clip_fraction():
    g = np.array([0.1, -3.0, 0.5, 2.0], "float32")
    cclip = acclip_tf.CClip(tau=1.0, track_clip_fraction=True)
    cclip.apply([g], [keras.Variable(np.zeros(4, "float32"))])
    assert float(cclip.clip_fraction.numpy()) == 0.5
    gclip = acclip_tf.GClip(tau=1.0, track_clip_fraction=True)
    variable = keras.Variable(np.zeros(4, "float32"))
    gclip.apply([g], [variable])
    assert float(gclip.clip_fraction.numpy()) == 1.0
    np.testing.assert_allclose(float(gclip.global_norm.numpy()), np.linalg.norm(g), rtol=1e-6)
    gclip.apply([g / 100], [variable])
    assert float(gclip.clip_fraction.numpy()) == 0.0


def test_clip_fraction_with_unknown_static_gradient_shape():
    # KerasHub's MLM head gives a kernel gradient of static shape [None, hidden].
    variable = keras.Variable(np.zeros((3, 4), "float32"))
    opt = acclip_tf.ACClip(track_clip_fraction=True)
    opt.build([variable])
    apply = tf.function(lambda g: opt.apply([g], [variable]),
                        input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    gradient = np.full((3, 4), 100.0, "float32")
    gradient[0] = 0.5  # m = 0.05 < tau: not clipped; the other rows are
    apply(tf.constant(gradient))
    assert opt.clip_fraction.numpy() == np.float32(8 / 12)
