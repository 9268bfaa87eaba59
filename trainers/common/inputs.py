"""Input helpers every task's tf.data pipelines share."""

import numpy as np
import tensorflow as tf


def fixed_indices(num_rows, count):
    """`count` row indices evenly spaced over `num_rows` (all of them when count >=
    num_rows), sorted and distinct; a function of the two sizes only (no seed), so every
    optimizer and seed gets the same rows."""
    if count >= num_rows:
        return np.arange(num_rows)
    return np.unique(np.floor(np.arange(count) * (num_rows / count)).astype(np.int64))


def padded_rows(num_rows, global_batch_size):
    """Dataset of (row, weight): rows 0..num_rows-1 once with weight 1, then weight-0
    copies up to whole global batches (a metric over them is over the rows exactly)."""
    total = -(-num_rows // global_batch_size) * global_batch_size
    return tf.data.Dataset.range(total).map(
        lambda i: (i % num_rows, tf.cast(i < num_rows, tf.float32)))


def per_replica(dataset, input_context, global_batch_size):
    """Global batches -> this input pipeline's share as per-replica batches.

    Pipeline p of P takes rows [p*G/P, (p+1)*G/P) of each global batch, in
    per-replica batches of G/num_replicas: the union over all replicas of one
    step is exactly the global batch a single device would see.
    """
    pipelines = input_context.num_input_pipelines if input_context else 1
    pid = input_context.input_pipeline_id if input_context else 0
    per_replica_batch = (input_context.get_per_replica_batch_size(global_batch_size)
                         if input_context else global_batch_size)
    share = global_batch_size // pipelines
    dataset = dataset.batch(global_batch_size, drop_remainder=True)
    if pipelines > 1:
        dataset = dataset.map(
            lambda b: tf.nest.map_structure(lambda t: t[pid * share : (pid + 1) * share], b))
    if per_replica_batch != global_batch_size:
        dataset = dataset.unbatch().batch(per_replica_batch, drop_remainder=True)
    return dataset
