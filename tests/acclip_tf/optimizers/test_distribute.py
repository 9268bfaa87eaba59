"""tf.distribute: 2 replicas (different data per replica) == 1 device on the global batch.

The two replicas are the two logical CPU devices configured in conftest.py.
"""

import numpy as np
import pytest
import tensorflow as tf
import keras

import acclip_tf

GLOBAL_BATCH = 16
STEPS = 4

OPTIMIZERS = {
    "acclip": lambda: acclip_tf.ACClip(learning_rate=0.05, beta_2=0.9, initial_tau=0.05,
                                       weight_decay=0.01),
    "acclip_normalize": lambda: acclip_tf.ACClip(learning_rate=0.01, beta_2=0.9,
                                                 initial_tau=0.05, normalize=True,
                                                 track_clip_fraction=True),
    "cclip": lambda: acclip_tf.CClip(learning_rate=0.1, tau=0.02, momentum=0.9),
    "gclip": lambda: acclip_tf.GClip(learning_rate=0.1, tau=0.05, momentum=0.5),
    "gclip_no_momentum": lambda: acclip_tf.GClip(learning_rate=0.1, tau=0.05),
    # mixed_float16's wrapper: scales the loss, unscales and checks the gradients.
    "gclip_loss_scaled": lambda: keras.optimizers.LossScaleOptimizer(
        acclip_tf.GClip(learning_rate=0.1, tau=0.05, momentum=0.5)),
}


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 5)).astype("float32")
    y = (np.sin(x).sum(1, keepdims=True) + rng.standard_t(1.5, size=(len(x), 1))).astype("float32")
    return x, y


def _model():
    keras.utils.set_random_seed(7)
    return keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(1),
    ])


def _fit(strategy, make_optimizer):
    x, y = _data()
    with strategy.scope():
        model = _model()
        optimizer = make_optimizer()
        model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    return [v.numpy() for v in model.trainable_variables], optimizer


def _custom_loop(strategy, make_optimizer, jit_gradients=False):
    x, y = _data()
    with strategy.scope():
        model = _model()
        optimizer = make_optimizer()
        optimizer.build(model.trainable_variables)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    dist_dataset = strategy.experimental_distribute_dataset(dataset)

    def gradients(xb, yb):
        with tf.GradientTape() as tape:
            per_example = tf.reduce_mean(tf.square(model(xb) - yb), axis=1)
            loss = optimizer.scale_loss(tf.reduce_sum(per_example) / GLOBAL_BATCH)
        return tape.gradient(loss, model.trainable_variables)

    if jit_gradients:
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(xb, yb):
        optimizer.apply(gradients(xb, yb), model.trainable_variables)

    @tf.function
    def train_step(xb, yb):
        strategy.run(replica_step, args=(xb, yb))

    for xb, yb in dist_dataset:
        train_step(xb, yb)
    return [v.numpy() for v in model.trainable_variables], optimizer


def _assert_same(a, b):
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fit_two_replicas_equals_one_device(name, two_replicas):
    one, _ = _fit(tf.distribute.get_strategy(), OPTIMIZERS[name])
    two, opt = _fit(two_replicas, OPTIMIZERS[name])
    _assert_same(one, two)
    assert int(opt.iterations.numpy()) == STEPS


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("jit_gradients", [False, True])
def test_custom_loop_two_replicas_equals_one_device(name, jit_gradients, two_replicas):
    one, opt_one = _custom_loop(tf.distribute.OneDeviceStrategy("/cpu:0"), OPTIMIZERS[name])
    two, opt_two = _custom_loop(two_replicas, OPTIMIZERS[name], jit_gradients=jit_gradients)
    _assert_same(one, two)
    if name.startswith("gclip"):
        opt_one = getattr(opt_one, "inner_optimizer", opt_one)
        opt_two = getattr(opt_two, "inner_optimizer", opt_two)
        # The norm is that of the all-reduced direction, identical on all replicas.
        np.testing.assert_allclose(opt_one.global_norm.numpy(), opt_two.global_norm.numpy(),
                                   rtol=1e-5)
        assert opt_two.global_norm.numpy() > 0.05  # the steps were really clipped


def test_keras_global_clipnorm_is_applied_after_the_all_reduce(two_replicas):
    make = lambda: acclip_tf.CClip(learning_rate=0.1, tau=1e9, global_clipnorm=0.01)
    one, _ = _custom_loop(tf.distribute.OneDeviceStrategy("/cpu:0"), make)
    two, _ = _custom_loop(two_replicas, make)
    _assert_same(one, two)
    # Keras' own SGD clips each replica's gradient before the all-reduce: the
    # same comparison fails for it, which is why GClip does not rely on it.
    keras_sgd = lambda: keras.optimizers.SGD(learning_rate=0.1, global_clipnorm=0.01)
    one_k, _ = _custom_loop(tf.distribute.OneDeviceStrategy("/cpu:0"), keras_sgd)
    two_k, _ = _custom_loop(two_replicas, keras_sgd)
    assert max(np.abs(a - b).max() for a, b in zip(one_k, two_k)) > 1e-4
    _assert_same(one, one_k)


def test_mirrored_slots_stay_identical_on_both_replicas(two_replicas):
    strategy = two_replicas
    _, opt = _custom_loop(strategy, OPTIMIZERS["acclip"])
    for slot in opt.variables:
        values = [v.numpy() for v in strategy.experimental_local_results(slot.value)]
        if len(values) == 2:
            np.testing.assert_array_equal(values[0], values[1])
