"""The training problem shared by the multi-worker test and its one-process reference."""

import numpy as np
import tensorflow as tf
import keras

import acclip_tf

GLOBAL_BATCH, STEPS = 16, 4
OPTIMIZERS = {
    "acclip": lambda: acclip_tf.ACClip(learning_rate=0.05, beta_2=0.9, initial_tau=0.05,
                                       weight_decay=0.01, skip_nonfinite=True),
    "gclip": lambda: acclip_tf.GClip(learning_rate=0.1, tau=0.05, momentum=0.5,
                                     track_clip_fraction=True),
    "cclip": lambda: acclip_tf.CClip(learning_rate=0.1, tau=0.02, momentum=0.9),
}


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 5)).astype("float32")
    y = (np.sin(x).sum(1, keepdims=True)
         + rng.standard_t(1.5, size=(len(x), 1))).astype("float32")
    return x, y


def train(strategy, optimizer_name, shard=(0, 1)):
    """Trains on rows shard[0]::shard[1] of every global batch; returns weights, GClip norm."""
    index, count = shard
    x, y = data()
    with strategy.scope():
        keras.utils.set_random_seed(7)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                                  keras.layers.Dense(1)])
        optimizer = OPTIMIZERS[optimizer_name]()
        optimizer.build(model.trainable_variables)

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(xb) - yb)) / GLOBAL_BATCH
        optimizer.apply(tape.gradient(loss, model.trainable_variables),
                        model.trainable_variables)

    step = tf.function(lambda xb, yb: strategy.run(replica_step, args=(xb, yb)))
    for k in range(STEPS):
        rows = slice(k * GLOBAL_BATCH, (k + 1) * GLOBAL_BATCH)
        step(tf.constant(x[rows][index::count]), tf.constant(y[rows][index::count]))
    norm = float(optimizer.global_norm.numpy()) if hasattr(optimizer, "global_norm") else 0.0
    return [v.numpy() for v in model.trainable_variables], norm
