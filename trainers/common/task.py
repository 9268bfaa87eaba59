"""What a trainer tells the common loop about its task.

The loop owns the strategy, the optimizer, XLA, checkpoints and reports; a
task owns its data, model, loss and metrics. Losses and metrics are *sums*
with a weight, so that replicas, steps and workers combine exactly:

    forward(model, batch, training) -> {"loss": (sum, weight), "accuracy": (sum, weight), ...}

The loop divides the gradient of ``loss.sum`` by the all-reduced total
weight of the global batch, so N replicas take the same step as one device
on the same global batch (up to float summation order), and reports each
metric as sum / weight over a loop or an evaluation.
"""

import abc

from trainers.common.errors import TrainerError


class Task(abc.ABC):
    #: Regexes searched in `variable.path`; matches get no weight decay.
    weight_decay_exclude = ()
    #: What one example is called in progress lines ("sequences", "images").
    example_name = "examples"
    #: {optimizer: {setting: value}}: this model family's measured settings (a
    #: sweep's choices, docs/evidence.md), used where the flag is not set; an
    #: optimizer absent here keeps the table's defaults (trainers.common.optimizers).
    optimizer_settings = {}
    #: The task's typed config (a `config.Config` dataclass; its fields make the flags).
    config_class = None
    #: {field: value}: the shared settings' defaults for this task (its program's recipe,
    #: e.g. Model Garden's ResNet-50 schedule), under the flags given and a --config.
    run_defaults = {}

    @abc.abstractmethod
    def build_model(self):
        """A built `keras.Model` (called inside `strategy.scope()`)."""

    @abc.abstractmethod
    def train_dataset(self, input_context, global_batch_size, start_batch):
        """Infinite `tf.data.Dataset` of this pipeline's per-replica batches.

        It must yield, from global batch number `start_batch` on, exactly the
        examples an uninterrupted run would (resume), and the pipelines
        together must make up the same global batches whatever the number of
        workers and replicas (so multi-worker equals one process).
        """

    @abc.abstractmethod
    def eval_dataset(self, input_context, global_batch_size):
        """Per-replica batches of the held-out set; repeated, `eval_steps()` are read."""

    @abc.abstractmethod
    def eval_steps(self, global_batch_size):
        """Global batches that cover the held-out set once (the same on every worker);
        the runner reads at most --eval_batches of them."""

    @abc.abstractmethod
    def forward(self, model, batch, training):
        """``{"loss": (sum, weight), name: (sum, weight), ...}`` of this replica's batch."""

    def fixed_train_dataset(self, input_context, global_batch_size, count):
        """Per-replica batches of `count` fixed *training* examples, in order, the last
        global batch filled with weight-0 copies; repeated. The same examples for every
        optimizer and seed (no augmentation, no seed-dependent choice), evaluated with
        dropout off: the optimisation-speed metric (--fixed_train_examples)."""
        raise TrainerError(f"--fixed_train_examples: {type(self).__name__} has no fixed "
                           "training examples (causal_lm and bert_pretrain have)")

    def fixed_train_steps(self, global_batch_size, count):
        """Global batches that cover `fixed_train_dataset`'s examples once."""
        raise TrainerError(f"--fixed_train_examples: {type(self).__name__} has no fixed "
                           "training examples (causal_lm and bert_pretrain have)")

    def steps_per_epoch(self, global_batch_size):
        """Global batches per epoch of the training set, or None (no epoch flags then)."""
        return None

    def derived_metrics(self, results):
        """Metrics computed from an evaluation's combined ``{metric: value}`` (e.g. a
        language model's perplexity = exp(loss)); added to the same record."""
        return {}

    def export(self, model, export_dir):
        """Write what later trainers load (chief only). Default: nothing."""

    def summary(self):
        """Task facts added to summary.json (sizes, corpus, vocabulary)."""
        return {}


class DataObjectTask(Task):
    """A Task whose examples all come from one data object, ``self.data``, that has the
    Task's data methods under the same names (the text tasks' data classes): they are
    forwarded to it."""

    def train_dataset(self, input_context, global_batch_size, start_batch):
        return self.data.train_dataset(input_context, global_batch_size, start_batch)

    def eval_dataset(self, input_context, global_batch_size):
        return self.data.eval_dataset(input_context, global_batch_size)

    def eval_steps(self, global_batch_size):
        return self.data.eval_steps(global_batch_size)

    def fixed_train_dataset(self, input_context, global_batch_size, count):
        return self.data.fixed_train_dataset(input_context, global_batch_size, count)

    def fixed_train_steps(self, global_batch_size, count):
        return self.data.fixed_train_steps(global_batch_size, count)


class PredictionEvaluation(abc.ABC):
    """An optional capability a task declares by inheriting it next to `Task`
    (``class SquadTask(Task, PredictionEvaluation)``): evaluation by per-example
    predictions (e.g. SQuAD EM/F1). Each evaluation then also runs `predict` over
    the same `eval_steps` batches and hands the outputs, gathered from all
    replicas and concatenated over steps, to `evaluate_predictions`."""

    @abc.abstractmethod
    def predict(self, model, batch):
        """Per-example tensors of this replica's eval batch (``{name: [batch, ...]}``);
        return an example index among the outputs if their order matters."""

    @abc.abstractmethod
    def evaluate_predictions(self, outputs, step):
        """``{metric: float}`` from the numpy `outputs` of `predict` (added as eval_<metric>)."""
