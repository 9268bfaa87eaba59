"""Gradient-noise measurement with TensorFlow (Section 2, Figures 1, 2, 4).

``gradient_noise_norms`` measures the noise norms ``||g_i - grad f(x)||`` of
minibatch gradients ``g_i`` at fixed parameters for any Keras model, loss and
`tf.data` dataset (optionally under a `tf.distribute` strategy), in two passes
over the data; `acclip_tf.noise.stats` summarises them.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from acclip_tf.noise.stats import tail_statistics

__all__ = ["GradientNoiseSample", "gradient_noise_norms"]


@dataclasses.dataclass
class GradientNoiseSample:
    """What ``gradient_noise_norms`` measured.

    Attributes:
        noise_norms: ``||g_i - gbar||`` per minibatch, shape ``(num_batches,)``.
        gradient_norms: ``||g_i||`` per minibatch.
        full_gradient_norm: ``||gbar||``.
        num_batches: how many minibatches were used (in each pass).
        full_gradient: ``gbar`` as a list of numpy arrays (one per trainable
            variable) when requested, else None.
    """

    noise_norms: np.ndarray
    gradient_norms: np.ndarray
    full_gradient_norm: float
    num_batches: int
    full_gradient: list = None

    def statistics(self):
        """``tail_statistics(self.noise_norms)`` plus the two gradient norms."""
        out = tail_statistics(self.noise_norms)
        out["full_gradient_norm"] = self.full_gradient_norm
        out["mean_minibatch_gradient_norm"] = float(np.mean(self.gradient_norms))
        return out


def _unpack(batch):
    """(x, y, sample_weight) from a dataset element, Keras-style."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch[0], batch[1], batch[2]
    raise ValueError(
        "Dataset elements must be (x, y) or (x, y, sample_weight) tuples; "
        f"received {type(batch).__name__}."
    )


_AVERAGING_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def _cross_replica_op(loss_fn, cross_replica):
    """The `tf.distribute.ReduceOp` that aggregates per-replica gradients."""
    if cross_replica == "auto":
        keras_scaled = (
            isinstance(loss_fn, keras.losses.Loss)
            and getattr(loss_fn, "reduction", None) in _AVERAGING_REDUCTIONS
        )
        cross_replica = "sum" if keras_scaled else "mean"
    if cross_replica == "sum":
        return tf.distribute.ReduceOp.SUM
    if cross_replica == "mean":
        return tf.distribute.ReduceOp.MEAN
    raise ValueError(
        f"`cross_replica` must be 'auto', 'sum' or 'mean'; received {cross_replica!r}."
    )


def gradient_noise_norms(
    model,
    loss_fn,
    dataset,
    num_batches=None,
    full_gradient=None,
    strategy=None,
    training=False,
    include_model_losses=False,
    return_full_gradient=False,
    cross_replica="auto",
):
    """Noise norms ``||g_i - grad f(x)||`` of minibatch gradients at fixed weights.

    ``g_i`` is the gradient of ``loss_fn(y, model(x), sample_weight)`` over
    ``model.trainable_variables`` for the i-th element of ``dataset`` (one
    minibatch). Under ``strategy`` each element is a *global* batch split
    over the replicas, and ``g_i`` is the mean of the per-replica gradients
    (the aggregated gradient an optimizer would apply; equal to the
    global-batch gradient when the replicas' batches have equal size and
    ``loss_fn`` averages over the batch).

    ``grad f`` is estimated by ``gbar = (1/n) sum_i g_i`` over the same
    ``n`` minibatches (first pass), unless ``full_gradient`` is given (e.g.
    from a larger sample); the second pass computes ``||g_i - gbar||``. The
    dataset must therefore yield the same minibatches when iterated twice (no
    reshuffling between iterations: shuffle with a fixed seed and
    ``reshuffle_each_iteration=False``, or shuffle before caching). Use
    ``drop_remainder=True`` so that every minibatch has the same size.

    Args:
        model: a built Keras model (under ``strategy.scope()`` when a
            strategy is used). Its weights are not changed.
        loss_fn: ``loss_fn(y_true, y_pred)`` or, when the dataset yields
            sample weights, ``loss_fn(y_true, y_pred, sample_weight)``
            returning a scalar (a Keras loss object works).
        dataset: a finite `tf.data.Dataset` of ``(x, y)`` or
            ``(x, y, sample_weight)`` minibatches.
        num_batches: use only the first ``num_batches`` elements.
        full_gradient: optional list of arrays (one per trainable variable).
        strategy: optional `tf.distribute.Strategy`.
        training: passed to ``model(x, training=...)`` (False: no dropout,
            so the only randomness is the data).
        include_model_losses: add ``sum(model.losses)`` (regularisers).
        return_full_gradient: keep ``gbar`` (numpy) in the result.
        cross_replica: ``"sum"``, ``"mean"`` or ``"auto"`` (sum for an
            averaging `keras.losses.Loss`, mean otherwise). Ignored without a
            strategy.

    Returns:
        A `GradientNoiseSample`.
    """
    if not callable(loss_fn):
        raise ValueError(f"`loss_fn` must be callable; received {loss_fn!r}.")
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"`dataset` must be a tf.data.Dataset; received {type(dataset).__name__}."
        )
    reduce_op = _cross_replica_op(loss_fn, cross_replica)
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"`num_batches` must be a positive integer; received {num_batches!r}.")
    variables = list(model.trainable_variables)
    if not variables:
        raise ValueError("`model` has no trainable variables (is it built?).")
    if num_batches is not None:
        dataset = dataset.take(num_batches)

    def replica_gradients(batch):
        x, y, sample_weight = _unpack(batch)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=training)
            if sample_weight is None:
                loss = loss_fn(y, y_pred)
            else:
                loss = loss_fn(y, y_pred, sample_weight)
            if include_model_losses and model.losses:
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, variables)
        return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]

    if strategy is None:
        batches = dataset
        minibatch_gradients = replica_gradients
    else:
        batches = strategy.experimental_distribute_dataset(dataset)

        def minibatch_gradients(batch):
            per_replica = strategy.run(replica_gradients, args=(batch,))
            return [
                strategy.reduce(reduce_op, g, axis=None)
                for g in per_replica
            ]

    @tf.function
    def accumulate(batch, total):
        """``total += g_i`` in float64, on the device (no gradient copied to the host)."""
        for t, g in zip(total, minibatch_gradients(batch)):
            t.assign_add(tf.cast(g, tf.float64))

    @tf.function
    def noise_and_norm(batch, gbar):
        grads = [tf.cast(g, tf.float64) for g in minibatch_gradients(batch)]
        diffs = [g - m for g, m in zip(grads, gbar)]
        return tf.linalg.global_norm(diffs), tf.linalg.global_norm(grads)

    if full_gradient is None:
        total = [tf.Variable(tf.zeros(v.shape, tf.float64), trainable=False) for v in variables]
        count = 0
        for batch in batches:
            accumulate(batch, total)
            count += 1
        if count == 0:
            raise ValueError("`dataset` yielded no minibatches.")
        gbar = [t.numpy() / count for t in total]
    else:
        if len(full_gradient) != len(variables):
            raise ValueError(
                f"`full_gradient` has {len(full_gradient)} arrays; the model has "
                f"{len(variables)} trainable variables."
            )
        gbar = [np.asarray(g, np.float64) for g in full_gradient]
        for g, v in zip(gbar, variables):
            if tuple(g.shape) != tuple(v.shape):
                raise ValueError(
                    f"`full_gradient` entry of shape {g.shape} does not match variable "
                    f"{v.path} of shape {tuple(v.shape)}."
                )
    gbar_tensors = [tf.constant(g) for g in gbar]
    noise, norms = [], []
    for batch in batches:
        r, n = noise_and_norm(batch, gbar_tensors)
        noise.append(float(r))
        norms.append(float(n))
    if not noise:
        raise ValueError("`dataset` yielded no minibatches.")
    if full_gradient is None and len(noise) != count:
        raise ValueError(
            f"`dataset` yielded {count} minibatches in the first pass and {len(noise)} "
            "in the second; it must be deterministic and finite."
        )
    return GradientNoiseSample(
        noise_norms=np.asarray(noise),
        gradient_norms=np.asarray(norms),
        full_gradient_norm=float(np.sqrt(sum(np.sum(g**2) for g in gbar))),
        num_batches=len(noise),
        full_gradient=gbar if return_full_gradient else None,
    )
