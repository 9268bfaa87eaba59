"""ResNet image classification (the paper's SGD-friendly counterpart to BERT).

    python -m trainers.resnet_imagenet --model_dir=runs/r50 --dataset=tfds:imagenet2012
    python -m trainers.resnet_imagenet --model_dir=runs/digits --dataset=digits \
        --model=resnet20 --train_epochs=20 --global_batch_size=64

The flag defaults are Model Garden's ImageNet ResNet-50 recipe: SGD with
momentum 0.9, learning rate 0.1 x batch / 256, 5 warm-up epochs then x0.1 at
epochs 30, 60 and 80 of 90, L2 weight decay 1e-4 (not on batch norm or
biases), label smoothing 0.1, random-resized crop + flip, centre-crop eval,
top-1 and top-5 accuracy. See docs/resnet.md; the common flags are the
fields of trainers/common/config.py.
"""

from absl import flags

from trainers.common import cli
from trainers.common import flags as common_flags
from trainers.common import runner
from trainers.vision import models as resnet_models
from trainers.vision import pipelines as images
from trainers.vision.task import ImageClassificationTask

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
flags.DEFINE_bool("sync_batch_norm", False,
                  "Synchronized batch norm (Model Garden's use_sync_bn): batch statistics over "
                  "the global batch of all replicas and workers, so N replicas train as one "
                  "device would. Off: each replica normalises with its own share's statistics.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data dir (default $TFDS_DATA_DIR or "
                    "~/tensorflow_datasets).")
flags.DEFINE_string("tfds_manual_dir", None,
                    "Where manually downloaded files are (default <tfds_data_dir>/downloads/manual).")
flags.DEFINE_string("train_split", "train", "TFDS training split.")
common_flags.define_eval_split_flag()
flags.DEFINE_float("validation_fraction", 0.1,
                   "In-memory datasets: the stratified fraction of the training split held out "
                   "as the validation set (drawn with seed 0, whatever --seed).")
common_flags.define_shuffle_buffer_flag()
flags.DEFINE_bool("per_host_reads", True,
                  "Streamed (TFDS) training data on several hosts: each host reads only its own "
                  "files (N workers see the same examples per epoch as one process, not the same "
                  "global batches). Off: every host reads all and keeps its share (the same "
                  "global batches as one process, N times the reading).")

FLAGS = flags.FLAGS

def main(argv):
    del argv
    runner.run(ImageClassificationTask, FLAGS)


if __name__ == "__main__":
    cli.run(main)
