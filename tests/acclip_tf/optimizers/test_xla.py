"""XLA: `compile(jit_compile=True)` + fit, and jit-compiled `apply` == eager."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import acclip_tf

MAKERS = {
    "acclip_alpha1": lambda: acclip_tf.ACClip(learning_rate=0.01, weight_decay=1e-3),
    "acclip_alpha1.5": lambda: acclip_tf.ACClip(learning_rate=0.01, alpha=1.5),
    "acclip_alpha2": lambda: acclip_tf.ACClip(learning_rate=0.01, alpha=2.0,
                                              track_clip_fraction=True),
    "acclip_normalize": lambda: acclip_tf.ACClip(learning_rate=0.01, normalize=True,
                                                 skip_nonfinite=True),
    "cclip": lambda: acclip_tf.CClip(tau=0.1, momentum=0.9, skip_nonfinite=True),
    "gclip": lambda: acclip_tf.GClip(tau=0.1, momentum=0.9, track_clip_fraction=True),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_compile_jit_fit_trains(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=MAKERS[name](), loss="mse", jit_compile=True)
    assert model.jit_compile
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_jit_apply_equals_eager_without_retracing(name):
    rng = np.random.default_rng(1)
    shapes = [(5, 3), (3,), (2, 2, 2)]
    init = [rng.normal(size=s).astype("float32") for s in shapes]
    grads = [[(rng.standard_t(2.0, size=s) * 2).astype("float32") for s in shapes]
             for _ in range(5)]

    def run(use_jit):
        variables = [keras.Variable(x) for x in init]
        opt = MAKERS[name]()
        opt.build(variables)
        apply = opt.apply
        if use_jit:
            apply = tf.function(lambda g: opt.apply(g, variables), jit_compile=True)
        else:
            apply = lambda g: opt.apply(g, variables)
        for g in grads:
            apply([tf.constant(t) for t in g])
        return [v.numpy() for v in variables], apply

    eager, _ = run(False)
    jitted, fn = run(True)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert fn.experimental_get_tracing_count() == 1
