"""Per-minibatch losses in the shape `acclip_tf.noise.gradient_noise_norms` measures.

`gradient_noise_norms(model, loss_fn, dataset)` differentiates
``loss_fn(y, model(x, training))`` for each ``(x, y[, w])`` element. A trainer's
task computes its loss itself (``task.forward(model, batch, training)`` ->
``{"loss": (sum, weight)}``), so `TaskObjective` stands in for the model: called
on a task batch it returns the task's own training loss of that batch, and
`passthrough` is the loss_fn. Both objectives divide the replica's loss sum by
the weight of the whole global batch (all-reduced), as the training loop does,
so the summed per-replica gradients (``cross_replica="sum"``) are the
global-batch gradient the optimizer sees.
"""

import tensorflow as tf

CROSS_REPLICA = "sum"


def global_mean(total, weight):
    """``total / max(W, 1)``, ``W`` the weight summed over the replicas in sync."""
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        weight = context.all_reduce(tf.distribute.ReduceOp.SUM, weight)
    return total / tf.maximum(weight, 1.0)


class TaskObjective:
    """The training loss of `task` at `model`'s weights, as a callable "model" of a batch."""

    def __init__(self, task, model):
        self.task = task
        self.model = model

    @property
    def trainable_variables(self):
        return self.model.trainable_variables

    def count_params(self):
        return self.model.count_params()

    def __call__(self, batch, training=False):
        total, weight = self.task.forward(self.model, batch, training)["loss"]
        return global_mean(total, weight)


def passthrough(y_true, loss):
    """The loss_fn of a `TaskObjective`: its output already is the loss."""
    del y_true
    return loss


def task_batches(dataset):
    """Task batches -> ``(batch, dummy)`` elements (a per-example zero as the unused y)."""

    def element(batch):
        first = tf.nest.flatten(batch)[0]
        return batch, tf.zeros(tf.shape(first)[:1])

    return dataset.map(element)


def masked_lm_loss(y_true, logits, weights):
    """Figure 4's encoders (not the trainer's model): cross-entropy at the predicted
    positions over the global batch's predicted positions, the formula of
    `BertPretrainTask.forward`'s loss."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y_true, logits=tf.cast(logits, tf.float32))
    return global_mean(tf.reduce_sum(ce * weights), tf.reduce_sum(weights))
