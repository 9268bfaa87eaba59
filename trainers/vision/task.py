"""Image classification (ResNet) as a `trainers.common.task.Task`."""

from trainers.common import cli
from trainers.common import files
from trainers.common import optimizers as common_optimizers
from trainers.common.task import Task
from trainers.vision import models as resnet_models
from trainers.vision import pipelines as images
from trainers.vision import sources as image_sources
from trainers.vision.config import ImageConfig


# Batch-norm scales/offsets and biases get no weight decay (Keras paths end in these).
WEIGHT_DECAY_EXCLUDE = (r"(^|/)(gamma|beta|bias)$",)


class ImageClassificationTask(Task):
    weight_decay_exclude = WEIGHT_DECAY_EXCLUDE
    example_name = "images"

    config_class = ImageConfig
    # Model Garden's ImageNet ResNet-50 recipe as the shared settings' defaults (sgd's own
    # defaults are momentum 0.9 and lr 0.1, scaled here by global_batch_size / 256).
    run_defaults = dict(
        optimizer="sgd", global_batch_size=256, lr_scaling_batch=256, lr_schedule="step",
        train_epochs=90, warmup_epochs=5, lr_decay_epochs=["30", "60", "80"],
        lr_decay_rate=0.1, steps_per_loop=100, eval_every=5000, checkpoint_every=5000)

    def __init__(self, experiment, model_dir=None, is_chief=True):
        """`experiment`: a `trainers.common.config.ExperimentConfig` whose task is an
        `ImageConfig` (the task reads its own settings, the run's seed and jit_compile)."""
        del model_dir, is_chief
        c = self.settings = experiment.task
        self.seed, self.jit_compile = experiment.run.seed, experiment.run.jit_compile
        self.data, self.image_size = image_sources.load_for_model(
            c.model, c.dataset, c.image_size, c.num_classes, self.seed,
            tfds_data_dir=c.tfds_data_dir, tfds_manual_dir=c.tfds_manual_dir,
            train_split=c.train_split, eval_split=c.eval_split,
            validation_fraction=c.validation_fraction)
        self.num_classes = c.num_classes or self.data.num_classes
        if self.num_classes < self.data.num_classes:
            raise cli.TrainerError(f"--num_classes={c.num_classes} but {c.dataset} has "
                                   f"{self.data.num_classes} classes")
        self.pipelines = images.ImagePipelines(
            self.data, self.image_size, c.augment, self.seed, c.eval_crop_fraction,
            c.shuffle_buffer, c.per_host_reads)
        self.facts = dict(self.data.facts(), model=c.model, image_size=self.image_size,
                          model_classes=self.num_classes, augment=self.pipelines.augment,
                          label_smoothing=c.label_smoothing, l2_weight_decay=c.l2_weight_decay,
                          sync_batch_norm=c.sync_batch_norm)
        print("data: " + ", ".join(f"{k} {v}" for k, v in self.facts.items()), flush=True)

    def build_model(self):
        c = self.settings
        if c.sync_batch_norm:
            check_sync_batch_norm(self.jit_compile)
        model = resnet_models.build(c.model, self.image_size, self.data.channels,
                                    self.num_classes, c.sync_batch_norm)
        excluded = {id(v) for v in common_optimizers.excluded_variables(
            model.trainable_variables, self.weight_decay_exclude)}
        self.decayed = [v for v in model.trainable_variables if id(v) not in excluded]
        self.facts["parameters"] = int(model.count_params())
        return model

    def train_dataset(self, input_context, global_batch_size, start_batch):
        return self.pipelines.train_dataset(input_context, global_batch_size, start_batch)

    def eval_dataset(self, input_context, global_batch_size):
        return self.pipelines.eval_dataset(input_context, global_batch_size)

    def eval_steps(self, global_batch_size):
        return self.pipelines.eval_steps(global_batch_size)

    def steps_per_epoch(self, global_batch_size):
        return self.pipelines.steps_per_epoch(global_batch_size)

    def l2_penalty(self):
        import tensorflow as tf

        l2 = self.settings.l2_weight_decay
        if not l2 or not self.decayed:
            return tf.constant(0.0)
        squares = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
                            for v in self.decayed])
        return 0.5 * l2 * squares

    def forward(self, model, batch, training):
        import tensorflow as tf

        logits = tf.cast(model(batch["image"], training=training), tf.float32)
        labels = batch["label"]
        weights = batch["weight"]
        total = tf.reduce_sum(weights)
        ce = classification_losses(logits, labels, self.settings.label_smoothing)
        ranks = top_rank(logits, labels)
        ce_sum = tf.reduce_sum(ce * weights)
        # total * penalty: the loop divides by the global batch's total weight, so
        # the replicas' penalties add up to exactly one penalty per step.
        return {
            "loss": (ce_sum + total * self.l2_penalty(), total),
            "cross_entropy": (ce_sum, total),
            "accuracy": (tf.reduce_sum(tf.cast(ranks < 1, tf.float32) * weights), total),
            "top5_accuracy": (tf.reduce_sum(tf.cast(ranks < 5, tf.float32) * weights), total),
        }

    def export(self, model, export_dir):
        files.makedirs(export_dir, what="the export directory")
        files.save_keras_model(model, files.join(export_dir, "model.keras"))
        files.write_text(files.join(export_dir, "classes.txt"),
                         "\n".join(self.data.class_names) + "\n")

    def summary(self):
        return self.facts


def check_sync_batch_norm(jit_compile):
    """Refuse --sync_batch_norm where its all-reduce cannot run: inside an XLA-compiled
    forward pass on CPU workers (there the all-reduce needs a merge_call, which XLA
    cannot hold; GPUs and TPUs all-reduce in XLA; the runner already turns XLA off on
    several logical CPUs of one host)."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    devices = [d.upper() for d in strategy.extended.worker_devices]
    if (jit_compile and strategy.num_replicas_in_sync > 1 and len(devices) == 1
            and "CPU" in devices[0]):
        raise cli.TrainerError("--sync_batch_norm on CPU workers needs --nojit_compile (XLA "
                               "cannot hold the batch-norm all-reduce on CPUs)")


def classification_losses(logits, labels, label_smoothing):
    """Per-example cross-entropy against one-hot labels smoothed by `label_smoothing`."""
    import keras

    one_hot = keras.ops.one_hot(labels, logits.shape[-1])
    return keras.losses.categorical_crossentropy(one_hot, logits, from_logits=True,
                                                 label_smoothing=label_smoothing)


def top_rank(logits, labels):
    """How many classes score strictly higher than the true one (top-k correct <=> < k)."""
    import tensorflow as tf

    true = tf.gather(logits, labels, batch_dims=1)[:, None]
    return tf.reduce_sum(tf.cast(logits > true, tf.int32), axis=-1)
