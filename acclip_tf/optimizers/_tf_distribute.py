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

So this module replaces that one hook. It uses three private pieces of Keras /
TF, which `tests/test_keras_hooks.py` pins: `TFOptimizer._all_reduce_sum_gradients`,
`TFOptimizer._distribution_strategy` and
`tf.__internal__.distribute.interim.maybe_merge_call`.
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


def backend_update_step(optimizer, grads, trainable_variables, learning_rate):
    """All-reduce, prepare the step in replica context, update in a merge call."""
    tf_variables = [to_tf_variable(v) for v in trainable_variables]
    reduced = optimizer._all_reduce_sum_gradients(list(zip(grads, tf_variables)))
    grads = [densify(g) for g, _ in reduced]
    grads = optimizer._clip_aggregated_gradients(grads)
    context = optimizer._prepare_step(grads, trainable_variables)

    def update_all(distribution, grads, tf_variables, learning_rate, context):
        for gradient, variable in zip(grads, tf_variables):
            distribution.extended.update(
                variable,
                optimizer._update_variable,
                args=(gradient, learning_rate, context),
                group=False,
            )
        for variable, value, mode in optimizer._diagnostic_updates(context):
            distribution.extended.update(
                to_tf_variable(variable),
                _assign_fn(mode),
                args=(value,),
                group=False,
            )

    tf.__internal__.distribute.interim.maybe_merge_call(
        update_all,
        optimizer._distribution_strategy,
        grads,
        tf_variables,
        learning_rate,
        context,
    )


def _assign_fn(mode):
    if mode == "add":
        return lambda variable, value: variable.assign_add(
            tf.cast(value, variable.dtype)
        )
    return lambda variable, value: variable.assign(tf.cast(value, variable.dtype))


def colocation_scope(optimizer, reference_variable):
    """Slots created here live on the devices of `reference_variable`."""
    return optimizer._distribution_strategy.extended.colocate_vars_with(
        to_tf_variable(reference_variable)
    )
