"""ResNet image classification (the paper's SGD-friendly counterpart to BERT).

    python -m trainers.resnet_imagenet --model_dir=runs/r50 --dataset=tfds:imagenet2012
    python -m trainers.resnet_imagenet --model_dir=runs/digits --dataset=digits \
        --model=resnet20 --train_epochs=20 --global_batch_size=64

The flag defaults are Model Garden's ImageNet ResNet-50 recipe: SGD with
momentum 0.9, learning rate 0.1 x batch / 256, 5 warm-up epochs then x0.1 at
epochs 30, 60 and 80 of 90, L2 weight decay 1e-4 (not on batch norm or
biases), label smoothing 0.1, random-resized crop + flip, centre-crop eval,
top-1 and top-5 accuracy. See docs/resnet.md; the common flags are in
trainers/common/flags.py.
"""

import os

from absl import flags

from trainers import resnet_models
from trainers.common import cli
from trainers.common import flags as common_flags
from trainers.common import optimizers as common_optimizers
from trainers.common import runner
from trainers.common.task import Task
from trainers.data import image_sources
from trainers.data import images

# Model Garden's ImageNet ResNet-50 recipe as the common flags' defaults (sgd's own
# defaults are momentum 0.9 and lr 0.1, scaled here by global_batch_size / 256).
RECIPE = dict(
    optimizer="sgd", global_batch_size=256, lr_scaling_batch=256, lr_schedule="step",
    train_epochs=90, warmup_epochs=5, lr_decay_epochs=["30", "60", "80"], lr_decay_rate=0.1,
    steps_per_loop=100, eval_every=5000, checkpoint_every=5000)
common_flags.define_common_flags(**RECIPE)
flags.DEFINE_enum("model", "resnet50", resnet_models.MODELS,
                  "resnet50 (keras.applications, ImageNet-sized input) or a CIFAR-style ResNet.")
flags.DEFINE_string("dataset", "tfds:imagenet2012",
                    "tfds:NAME, folder:PATH (train/<class>/*, val/<class>/*), fashion_mnist, "
                    "digits or synthetic.")
flags.DEFINE_integer("num_classes", 0, "Output classes; 0: the data's (synthetic: 1000).")
flags.DEFINE_integer("image_size", 0,
                     "Model input side; 0: 224 for resnet50, else the data's own size (32 if "
                     "its images vary).")
flags.DEFINE_enum("augment", "auto", images.AUGMENTATIONS,
                  "Training augmentation; auto: resized_crop_flip for ImageNet-sized data, "
                  "pad_crop_flip for small images, pad_crop for digits, none for synthetic.")
flags.DEFINE_float("eval_crop_fraction", 0.875,
                   "Eval centre crop, as a fraction of the shorter side (resized_crop only).")
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the cross-entropy.")
flags.DEFINE_float("l2_weight_decay", 1e-4,
                   "L2 penalty l2/2 * |w|^2 added to the loss (gradient l2 * w), not on batch "
                   "norm or biases (Model Garden's l2_weight_decay). Independent of the "
                   "optimizer's decoupled --weight_decay.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data dir (default $TFDS_DATA_DIR or "
                    "~/tensorflow_datasets).")
flags.DEFINE_string("tfds_manual_dir", None,
                    "Where manually downloaded files are (default <tfds_data_dir>/downloads/manual).")
flags.DEFINE_string("train_split", "train", "TFDS training split.")
flags.DEFINE_string("eval_split", "validation", "TFDS held-out split.")
flags.DEFINE_integer("shuffle_buffer", 10_000, "Shuffle buffer of streamed (TFDS) data.")

FLAGS = flags.FLAGS

# Batch-norm scales/offsets and biases get no weight decay (Keras paths end in these).
WEIGHT_DECAY_EXCLUDE = (r"(^|/)(gamma|beta|bias)$",)


class ImageClassificationTask(Task):
    weight_decay_exclude = WEIGHT_DECAY_EXCLUDE
    example_name = "images"

    def __init__(self, f, model_dir=None, is_chief=True):
        del model_dir, is_chief
        self.f = f
        if not 0 <= f.label_smoothing < 1:
            raise cli.TrainerError(f"--label_smoothing must lie in [0, 1), got {f.label_smoothing}")
        if f.l2_weight_decay < 0:
            raise cli.TrainerError(f"--l2_weight_decay must be >= 0, got {f.l2_weight_decay}")
        if f.num_classes < 0:
            raise cli.TrainerError(f"--num_classes must be >= 0, got {f.num_classes}")
        self.data, self.image_size = image_sources.load_for_model(
            f.model, f.dataset, f.image_size, f.num_classes, f.seed,
            tfds_data_dir=f.tfds_data_dir, tfds_manual_dir=f.tfds_manual_dir,
            train_split=f.train_split, eval_split=f.eval_split)
        self.num_classes = f.num_classes or self.data.num_classes
        if self.num_classes < self.data.num_classes:
            raise cli.TrainerError(f"--num_classes={f.num_classes} but {f.dataset} has "
                                   f"{self.data.num_classes} classes")
        self.pipelines = images.ImagePipelines(
            self.data, self.image_size, f.augment, f.seed, f.eval_crop_fraction,
            f.shuffle_buffer)
        self.facts = dict(self.data.facts(), model=f.model, image_size=self.image_size,
                          model_classes=self.num_classes, augment=self.pipelines.augment,
                          label_smoothing=f.label_smoothing, l2_weight_decay=f.l2_weight_decay)
        print("data: " + ", ".join(f"{k} {v}" for k, v in self.facts.items()), flush=True)

    def build_model(self):
        model = resnet_models.build(self.f.model, self.image_size, self.data.channels,
                                    self.num_classes)
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

        if not self.f.l2_weight_decay or not self.decayed:
            return tf.constant(0.0)
        squares = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
                            for v in self.decayed])
        return 0.5 * self.f.l2_weight_decay * squares

    def forward(self, model, batch, training):
        import tensorflow as tf

        logits = tf.cast(model(batch["image"], training=training), tf.float32)
        labels = batch["label"]
        weights = batch["weight"]
        total = tf.reduce_sum(weights)
        ce = classification_losses(logits, labels, self.f.label_smoothing)
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
        os.makedirs(export_dir, exist_ok=True)
        model.save(os.path.join(export_dir, "model.keras"))
        with open(os.path.join(export_dir, "classes.txt"), "w") as out:
            out.write("\n".join(self.data.class_names) + "\n")

    def summary(self):
        return self.facts


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


def main(argv):
    del argv
    runner.run(ImageClassificationTask, FLAGS)


if __name__ == "__main__":
    cli.run(main)
