"""The TensorFlow / tf.distribute half of `ClippingOptimizer.apply`.

Keras 3.15's `TFOptimizer._backend_update_step` all-reduces the gradients and
then updates each variable separately inside a merge call. Two things of ours
must happen *between* those two steps, in replica context, on the aggregated
gradient that is identical on every replica:

* quantities over all variables at once (GClip's global norm, the
  all-reduced non-finite check, the clip-fraction diagnostic), and
* Keras' own `clipnorm` / `clipvalue` / `global_clipnorm`, which Keras applies
  to each replica's gradient *before* the all-reduce (measured: with two
  replicas a `global_clipnorm=1` update had norm 1.84); we apply them after.

So the whole step (`ClippingOptimizer._step`, the same code as without
TensorFlow) runs in replica context on the all-reduced gradients, and only its
writes go through one merge call here. It uses three private pieces of Keras /
TF, which `tests/acclip_tf/optimizers/test_keras_hooks.py` pins:
`TFOptimizer._all_reduce_sum_gradients`, `TFOptimizer._distribution_strategy`
and `tf.__internal__.distribute.interim.maybe_merge_call`.
"""

import tensorflow as tf

from keras import Variable


def to_tf_variable(variable):
    return variable.value if isinstance(variable, Variable) else variable


def densify(gradient):
    """`tf.IndexedSlices` (an Embedding's gradient) -> dense, summing duplicates."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


def all_reduce(optimizer, grads, trainable_variables):
    """The gradients summed over replicas (dense), as Keras' own step does."""
    tf_variables = [to_tf_variable(v) for v in trainable_variables]
    reduced = optimizer._all_reduce_sum_gradients(list(zip(grads, tf_variables)))
    return [densify(g) for g, _ in reduced]


def write(optimizer, writes):
    """Apply `writes` (from `ClippingOptimizer._step`) in one merge call.

    The values cross into cross-replica context as per-replica values; the
    targets (mirrored variables, the same objects on every replica) and the
    operations stay in the closure.
    """
    targets = [to_tf_variable(w.target) for w in writes]
    operations = [w.op for w in writes]

    def update_all(distribution, values):
        for target, op, value in zip(targets, operations, values):
            distribution.extended.update(
                target, _UPDATES[op], args=(value,), group=False
            )

    tf.__internal__.distribute.interim.maybe_merge_call(
        update_all, optimizer._distribution_strategy, [w.value for w in writes]
    )


_UPDATES = {
    "assign": lambda v, value: v.assign(tf.cast(value, v.dtype)),
    "assign_add": lambda v, value: v.assign_add(tf.cast(value, v.dtype)),
    "assign_sub": lambda v, value: v.assign_sub(tf.cast(value, v.dtype)),
}


def colocation_scope(optimizer, reference_variable):
    """Slots created here live on the devices of `reference_variable`."""
    return optimizer._distribution_strategy.extended.colocate_vars_with(
        to_tf_variable(reference_variable)
    )
