"""Run under KERAS_BACKEND=jax by test_jax_backend.py (a separate process).

Checks the optimizers against the numpy reference on Keras' JAX backend,
through `optimizer.apply` and through `model.fit(jit_compile=True)`.
"""

import os
import sys

assert os.environ.get("KERAS_BACKEND") == "jax"
# The shared helpers (numpy_reference, multi_worker_problem) live in tests/; the
# repository root goes before it, so that `import acclip_tf` finds the package and
# not the folder tests/acclip_tf (a namespace package that would shadow it).
_TESTS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path[:0] = [os.path.dirname(_TESTS), _TESTS]

import numpy as np  # noqa: E402
import keras  # noqa: E402

import acclip_tf  # noqa: E402
from numpy_reference import ACClipRef, CClipRef, GClipRef  # noqa: E402

assert keras.backend.backend() == "jax"
SHAPES = [(4,), (2, 3)]
CASES = [
    (lambda: acclip_tf.ACClip(0.05, alpha=1.5, initial_tau=0.5, weight_decay=0.1),
     lambda: ACClipRef(SHAPES, 0.05, alpha=1.5, initial_tau=0.5, weight_decay=0.1)),
    (lambda: acclip_tf.ACClip(0.01, initial_tau=0.5, normalize=True),
     lambda: ACClipRef(SHAPES, 0.01, initial_tau=0.5, normalize=True)),
    (lambda: acclip_tf.CClip(0.1, tau=0.5, momentum=0.9),
     lambda: CClipRef(SHAPES, 0.1, tau=0.5, momentum=0.9)),
    (lambda: acclip_tf.GClip(0.1, tau=1.0, momentum=0.5, weight_decay=0.1),
     lambda: GClipRef(SHAPES, 0.1, tau=1.0, momentum=0.5, weight_decay=0.1)),
]
rng = np.random.default_rng(0)
for make, make_ref in CASES:
    opt, ref = make(), make_ref()
    xs = [rng.normal(size=s) for s in SHAPES]
    variables = [keras.Variable(x.astype("float32")) for x in xs]
    for _ in range(5):
        gs = [(rng.standard_t(1.5, size=s) * 3).astype("float32") for s in SHAPES]
        opt.apply(gs, variables)
        xs = ref.step(xs, [g.astype("float64") for g in gs])
    for v, x in zip(variables, xs):
        np.testing.assert_allclose(np.asarray(v.value), x, rtol=1e-5, atol=1e-6)

x = rng.normal(size=(128, 4)).astype("float32")
y = x.sum(1, keepdims=True)
for make, _ in CASES:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.LayerNormalization(), keras.layers.Dense(1)])
    opt = make()
    opt.exclude_from_weight_decay(var_names=["layer_normalization"])
    model.compile(optimizer=opt, loss="mse", jit_compile=True)
    losses = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    gamma = next(v for v in model.trainable_variables if v.name == "gamma")
    assert not opt._use_weight_decay(gamma)
print("JAX BACKEND OK")
