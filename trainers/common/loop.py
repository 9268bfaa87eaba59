"""The distributed train/eval loop (Model Garden style, not `model.fit`).

One host call runs `steps_per_loop` steps inside a `tf.function`; each step
is `strategy.run(replica_step)`. The replica's forward/backward pass is a
`tf.function(jit_compile=...)` (XLA per replica). The all-reduce and the
optimizer update happen after it, outside XLA, because the optimizer's
`apply` all-reduces through a merge call, which XLA cannot contain.
"""

import numpy as np
import tensorflow as tf
import keras


def scale_gradient(gradient, factor, variable=None):
    """`gradient * factor`, with the variable's static shape.

    Some gradients lose a static dimension (KerasHub's MLM head's dense
    kernel comes out as [None, hidden]) and an embedding's `tf.IndexedSlices`
    carries a dynamic dense_shape; acclip_tf's clip-fraction diagnostic needs
    static shapes, so both get the variable's. IndexedSlices stay sparse.
    """
    if gradient is None:
        return None
    static = variable is not None and variable.shape.is_fully_defined()
    if isinstance(gradient, tf.IndexedSlices):
        dense_shape = gradient.dense_shape
        if static:
            dense_shape = tf.constant(variable.shape.as_list(), dense_shape.dtype)
        return tf.IndexedSlices(gradient.values * tf.cast(factor, gradient.values.dtype),
                                gradient.indices, dense_shape)
    if static:
        gradient = tf.ensure_shape(gradient, variable.shape)
    return gradient * tf.cast(factor, gradient.dtype)


def _add(a, b):
    return tf.nest.map_structure(tf.add, a, b)


def ratios(sums):
    """{"loss": (sum, weight), ...} (numpy) -> {"loss": sum / weight, ...}."""
    return {k: float(s) / float(w) if float(w) > 0 else float("nan") for k, (s, w) in sums.items()}


class StepLoop:
    """Compiled train and eval loops for one model/optimizer under a strategy."""

    def __init__(self, strategy, model, optimizer, forward, jit_compile=True):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.forward = forward
        self._scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        # Without XLA the replica's forward/backward is traced straight into the loop's
        # function: a nested tf.function cannot hold a cross-replica synchronisation
        # (synchronized batch norm all-reduces its batch statistics, and
        # MirroredStrategy's merge_call fails inside a nested function). Under XLA,
        # Mirrored/MultiWorker strategies on GPUs and TPUStrategy all-reduce without
        # a merge_call, so the compiled forward may hold one there.
        self._grads = (tf.function(self._loss_and_grads, jit_compile=True) if jit_compile
                       else self._loss_and_grads)
        self._eval_forward = (tf.function(self._eval_step, jit_compile=True) if jit_compile
                              else self._eval_step)
        self._train_loop = tf.function(
            lambda iterator, n: self._loop_fn(self._replica_train_step, iterator, n))
        self._eval_loop = tf.function(
            lambda iterator, n: self._loop_fn(self._eval_forward, iterator, n))
        self._jit_compile = jit_compile
        self._predict_step = None

    def build_optimizer(self):
        """Create the optimizer's slots now (inside the scope), not in the first step."""
        with self.strategy.scope():
            self.optimizer.build(self.model.trainable_variables)

    # ------------------------------------------------------------ replica
    def _loss_and_grads(self, batch):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.forward(self.model, batch, training=True)
            loss_sum = outputs["loss"][0]
            target = self.optimizer.scale_loss(loss_sum) if self._scale_loss else loss_sum
        grads = tape.gradient(target, variables)
        return outputs, grads

    def _replica_train_step(self, batch):
        outputs, grads = self._grads(batch)
        context = tf.distribute.get_replica_context()
        weight = tf.cast(outputs["loss"][1], tf.float32)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, weight)
        factor = 1.0 / tf.maximum(total, 1e-12)
        variables = self.model.trainable_variables
        grads = [scale_gradient(g, factor, v) for g, v in zip(grads, variables)]
        # Variables without a gradient (BERT's unused pooler) are left out.
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.optimizer.apply_gradients(pairs)
        return _as_float(outputs)

    def _eval_step(self, batch):
        return _as_float(self.forward(self.model, batch, training=False))

    # ------------------------------------------------------------ predictions
    def predict(self, iterator, num_steps, predict_fn):
        """numpy ``{name: [num_steps * global_batch, ...]}`` of `predict_fn(model, batch)`
        over `num_steps` global batches, gathered from all replicas (replica order)."""
        if self._predict_step is None:
            predict = tf.function(lambda batch: predict_fn(self.model, batch),
                                  jit_compile=self._jit_compile)

            def step(it):
                out = self.strategy.run(predict, args=(next(it),))
                return tf.nest.map_structure(lambda t: self.strategy.gather(t, axis=0), out)

            self._predict_step = tf.function(step)
        parts = [tf.nest.map_structure(lambda t: t.numpy(), self._predict_step(iterator))
                 for _ in range(num_steps)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # ------------------------------------------------------------ loops
    def _reduce(self, per_replica):
        # Leaf by leaf: MultiWorkerMirroredStrategy.reduce rejects nested structures.
        return tf.nest.map_structure(
            lambda v: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None),
            per_replica)

    def _loop_fn(self, replica_fn, iterator, num_steps):
        """The summed outputs of `num_steps` >= 1 calls of `replica_fn` on every replica."""
        sums = self._reduce(self.strategy.run(replica_fn, args=(next(iterator),)))
        for _ in tf.range(num_steps - 1):
            sums = _add(sums, self._reduce(self.strategy.run(replica_fn, args=(next(iterator),))))
        return sums

    def train(self, iterator, num_steps):
        """Run `num_steps` >= 1 steps; returns {"loss": value, metric: value} over them."""
        sums = self._train_loop(iterator, tf.constant(num_steps, tf.int32))
        return ratios(tf.nest.map_structure(lambda t: t.numpy(), sums))

    def evaluate(self, iterator, num_steps):
        sums = self._eval_loop(iterator, tf.constant(num_steps, tf.int32))
        return ratios(tf.nest.map_structure(lambda t: t.numpy(), sums))


def _as_float(outputs):
    return {k: (tf.cast(s, tf.float32), tf.cast(w, tf.float32)) for k, (s, w) in outputs.items()}
