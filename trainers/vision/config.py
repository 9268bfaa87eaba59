"""The image-classification task's typed config (resnet_imagenet's task flags are
generated from these fields; the defaults are Model Garden's ImageNet ResNet-50 recipe)."""

import dataclasses
from typing import Optional

from trainers.common.config import StreamingConfig, option
from trainers.vision.models import MODELS
from trainers.vision.pipelines import AUGMENTATIONS


@dataclasses.dataclass(frozen=True)
class ImageConfig(StreamingConfig):
    """The ResNet, the image data and its held-out split, the loss."""
    model: str = option("resnet50", "resnet50 (keras.applications, ImageNet-sized input) or a "
                        "CIFAR-style ResNet.", choices=MODELS)
    dataset: str = option("tfds:imagenet2012", "tfds:NAME, folder:PATH (train/<class>/*, "
                          "val/<class>/*), fashion_mnist, digits or synthetic.")
    num_classes: int = option(0, "Output classes; 0: the data's (synthetic: 1000).", minimum=0)
    image_size: int = option(0, "Model input side; 0: 224 for resnet50, else the data's own "
                             "size (32 if its images vary).", minimum=0)
    augment: str = option(
        "auto", "Training augmentation; auto: resized_crop_flip for ImageNet-sized data, "
        "pad_crop_flip for small images, pad_crop for digits, none for synthetic.",
        choices=AUGMENTATIONS)
    eval_crop_fraction: float = option(
        0.875, "Eval centre crop, as a fraction of the shorter side (resized_crop only).",
        above=0.0)
    label_smoothing: float = option(0.1, "Label smoothing of the cross-entropy.", minimum=0.0,
                                    below=1.0)
    l2_weight_decay: float = option(
        1e-4, "L2 penalty l2/2 * |w|^2 added to the loss (gradient l2 * w), not on batch norm "
        "or biases (Model Garden's l2_weight_decay). Independent of the optimizer's decoupled "
        "--weight_decay.", minimum=0.0)
    sync_batch_norm: bool = option(
        False, "Synchronized batch norm (Model Garden's use_sync_bn): batch statistics over "
        "the global batch of all replicas and workers, so N replicas train as one device "
        "would. Off: each replica normalises with its own share's statistics.")
    tfds_data_dir: Optional[str] = option(
        None, "TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets).")
    tfds_manual_dir: Optional[str] = option(
        None, "Where manually downloaded files are (default <tfds_data_dir>/downloads/manual).")
    train_split: str = option("train", "TFDS training split.")
    eval_split: str = option(
        "validation", "Held-out examples to evaluate on: validation (choose settings on it) "
        "or test (report the chosen ones). digits, fashion_mnist, folder:PATH without test/: "
        "a fixed fold of the training split (--validation_fraction) or the dataset's held-out "
        "split; folder:PATH with test/: val/ or test/; tfds:NAME: a TFDS split name "
        "(ImageNet: validation).")
    validation_fraction: float = option(
        0.1, "In-memory datasets: the stratified fraction of the training split held out as "
        "the validation set (drawn with seed 0, whatever --seed).", minimum=0.0, below=1.0)
    per_host_reads: bool = option(
        True, "Streamed (TFDS) training data on several hosts: each host reads only its own "
        "files (N workers see the same examples per epoch as one process, not the same global "
        "batches). Off: every host reads all and keeps its share (the same global batches as "
        "one process, N times the reading).")
