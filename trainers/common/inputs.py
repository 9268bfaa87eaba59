"""Input helpers every task's tf.data pipelines share."""

import tensorflow as tf


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
