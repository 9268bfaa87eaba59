"""`--dataset` -> an `ImageData`: the raw train and held-out splits, classes, statistics.

Datasets:

* ``digits``: scikit-learn's 1,797 real 8x8 digits (always available), a fixed
  stratified 80/20 split (1,437 / 360);
* ``fashion_mnist``: the 60k/10k Fashion-MNIST IDX files from Keras' cache
  (``~/.keras/datasets/fashion-mnist``) or Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), whichever has all four;
* ``folder:PATH``: ``PATH/train/<class>/<image>`` and ``PATH/val/<class>/<image>``
  (and optionally ``PATH/test/<class>/<image>``);
* ``tfds:NAME``: a TFDS image-classification dataset (``image`` and ``label``
  features), e.g. ``tfds:imagenet2012`` from the ImageNet tars in TFDS's manual dir;
* ``synthetic``: random images, for throughput measurements only.

Held-out examples (`--eval_split`, `select_eval_split`): an in-memory source
(digits, fashion_mnist, a folder without test/) has one official held-out split,
its *test* split. ``validation`` is a fixed fold of the *training* split
(`--validation_fraction`, stratified by class, drawn with seed 0 whatever
`--seed` is); ``test`` is the official held-out split. The model trains on the
training split minus the validation fold in both cases, so a sweep's final seeds
(on test) train on exactly what its selection trials (on validation) trained on.
A folder with test/ uses val/ as validation and test/ as test (no fold).
For ``tfds:NAME`` `--eval_split` is a TFDS split name (ImageNet reports on
``validation``; its test labels are not public).

A split either keeps its examples in memory (`table`: random access, so the
training order is a stateless permutation per epoch) or reads them as a stream
(`stream`, TFDS). `decode` turns one raw element into a uint8 ``[H, W, C]`` image.
Everything the user can get wrong raises a one-line `TrainerError`.
"""

import dataclasses
import gzip
import os
import re
import struct
from typing import Callable, Optional

import numpy as np

from trainers.common import files
from trainers.common.errors import UNREADABLE_FILE, TrainerError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FASHION_MNIST_DIRS = (
    files.join(files.absolute(os.environ.get("KERAS_HOME", "~/.keras")), "datasets",
               "fashion-mnist"),
    "/usr/share/datasets/fashion-mnist",
)
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# Files a manual-download TFDS dataset needs for a train and a held-out split.
TFDS_MANUAL_FILES = {"imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")}
# TFDS splits whose labels are withheld (-1): refused as training or held-out splits.
TFDS_UNLABELLED_SPLITS = {"imagenet2012": ("test",)}
SYNTHETIC_EXAMPLES = 256


@dataclasses.dataclass
class ImageSplit:
    num_examples: int
    decode: Callable  # raw element -> uint8 [H, W, C]
    table: Optional[tuple] = None  # (raw elements, int32 labels) as numpy arrays
    # (input_context=None) -> tf.data.Dataset of (raw, label) in a fixed order; with an
    # input context: only that input pipeline's files (see `shard_sizes`).
    stream: Optional[Callable] = None
    # num_pipelines -> [examples in pipeline p's files for p in range(num_pipelines)], or
    # None where the split cannot be read per pipeline (fewer files than pipelines).
    shard_sizes: Optional[Callable] = None

    def ordered(self):
        """tf.data.Dataset of (raw, label) in the split's fixed order, in memory or streamed."""
        if self.table is None:
            return self.stream()
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices(self.table)


@dataclasses.dataclass
class ImageData:
    name: str
    train: ImageSplit
    eval: ImageSplit
    num_classes: int
    class_names: list
    channels: int
    native_size: Optional[int]  # side of the (square) stored images; None: they vary
    mean: tuple  # per channel, of pixel values scaled to [0, 1]
    std: tuple
    small_images: bool  # CIFAR-style pad-and-crop rather than ImageNet's resized crop

    eval_split: str = "validation"  # what --eval_split selected
    eval_source: str = ""  # which examples that is, in words
    test: Optional[ImageSplit] = None  # the official held-out split before selection

    def facts(self):
        return dict(dataset=self.name, num_classes=self.num_classes,
                    train_examples=self.train.num_examples, eval_split=self.eval_split,
                    eval_examples=self.eval.num_examples, eval_source=self.eval_source,
                    channels=self.channels, native_size=self.native_size)


def validation_fold(labels, fraction, seed=0):
    """Sorted indices of a stratified `fraction` of `labels`, drawn with `seed`.

    Each class contributes round(fraction * its count) examples, at least one and
    at most all but one (classes with one example contribute none), so every
    class with two or more examples is in both the fold and the rest.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(fraction * len(members)))
        if fraction > 0 and len(members) > 1:
            k = min(max(k, 1), len(members) - 1)
        else:
            k = 0
        fold.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(fold)) if fold else np.zeros([0], np.int64)


def _rows(split, index):
    raws, labels = split.table
    return ImageSplit(len(index), split.decode, table=(raws[index], labels[index]))


def select_eval_split(data, eval_split="validation", validation_fraction=0.1, seed=0):
    """An in-memory `ImageData` whose `eval` is its official held-out split -> the data
    with training split minus the validation fold and `eval` = that fold (validation)
    or the official split (test)."""
    if eval_split not in ("validation", "test"):
        raise TrainerError(f"--eval_split={eval_split!r}: --dataset={data.name} has the "
                           f"held-out sets validation and test")
    if not 0 <= validation_fraction < 1:
        raise TrainerError(f"--validation_fraction must lie in [0, 1), got "
                           f"{validation_fraction}")
    labels = data.train.table[1]
    fold = validation_fold(labels, validation_fraction, seed)
    if eval_split == "validation" and not len(fold):
        raise TrainerError(f"--eval_split=validation needs --validation_fraction > 0 "
                           f"(got {validation_fraction})")
    rest = np.setdiff1d(np.arange(len(labels)), fold)
    train = _rows(data.train, rest)
    percent = f"{100 * validation_fraction:g}%"
    if eval_split == "validation":
        held = _rows(data.train, fold)
        source = (f"validation: {len(fold)} examples, a {percent} fold of the training split "
                  f"(stratified, seed {seed}); training on the other {len(rest)}")
    else:
        held = data.eval
        source = (f"test: the {data.name} held-out split ({held.num_examples} examples); "
                  f"training on {len(rest)} (the training split minus the {percent} "
                  f"validation fold)")
    return dataclasses.replace(data, train=train, eval=held, eval_split=eval_split,
                               eval_source=source, test=data.eval)


def _identity(raw):
    return raw


def _array_data(name, train, held, class_names, small_images=True):
    """ImageData over uint8 arrays [N, H, W, C] and integer labels."""
    (x_train, y_train), (x_eval, y_eval) = train, held
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
    return ImageData(
        name=name,
        train=ImageSplit(len(x_train), _identity, table=(x_train, y_train.astype(np.int32))),
        eval=ImageSplit(len(x_eval), _identity, table=(x_eval, y_eval.astype(np.int32))),
        num_classes=len(class_names), class_names=list(class_names),
        channels=x_train.shape[-1], native_size=x_train.shape[1],
        mean=tuple(pixels.mean(0).tolist()), std=tuple(np.maximum(pixels.std(0), 1e-3).tolist()),
        small_images=small_images)


# ---------------------------------------------------------------- digits
def load_digits():
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    # 0..16 grey levels -> 0..255.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    x_train, x_eval, y_train, y_eval = train_test_split(
        images, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
    return _array_data("digits", (x_train, y_train), (x_eval, y_eval),
                       [str(d) for d in range(10)])


# ---------------------------------------------------------------- fashion_mnist
def read_idx(path, magic):
    """A gzipped IDX file (the MNIST format) -> uint8 array; checks its header."""
    with files.open_file(path, "rb") as raw:
        data = gzip.decompress(raw.read())
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
        raise TrainerError(f"{path} is not an IDX file with magic number {magic}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise TrainerError(f"{path} is truncated: its header says {shape}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def fashion_mnist_dir(candidates=FASHION_MNIST_DIRS):
    for d in candidates:
        if all(files.exists(files.join(d, name)) for name in FASHION_MNIST_FILES):
            return d
    raise TrainerError(
        "--dataset=fashion_mnist: its files (" + ", ".join(FASHION_MNIST_FILES) + ") are in "
        "none of " + ", ".join(candidates) + "; install Debian's package (apt-get install "
        "dataset-fashion-mnist) or let Keras download them (python -c 'import keras; "
        "keras.datasets.fashion_mnist.load_data()')")


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_fashion_mnist(candidates=FASHION_MNIST_DIRS):
    d = fashion_mnist_dir(candidates)
    x_train, y_train, x_eval, y_eval = (
        read_idx(files.join(d, name), 2051 if "images" in name else 2049)
        for name in FASHION_MNIST_FILES)
    return _array_data("fashion_mnist", (x_train[..., None], y_train),
                       (x_eval[..., None], y_eval), FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------- synthetic
def load_synthetic(image_size, num_classes, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, [SYNTHETIC_EXAMPLES, image_size, image_size, channels],
                          dtype=np.uint8)
    labels = rng.integers(0, num_classes, [SYNTHETIC_EXAMPLES])
    data = _array_data("synthetic", (images, labels), (images, labels),
                       [str(i) for i in range(num_classes)], small_images=image_size < 64)
    return data


# ---------------------------------------------------------------- folder:PATH
# The first bytes of the formats tf.io.decode_image reads.
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")


def _decode_file(path):
    """One image file -> uint8 [H, W, 3]; a file that is no image (a stray text file, an
    empty or cut-off download) fails an assertion naming it (`errors.UNREADABLE_FILE`),
    which the runner reports in one line, instead of decode_image's nameless error."""
    import tensorflow as tf

    raw = tf.io.read_file(path)
    is_image = tf.reduce_any([tf.equal(tf.strings.substr(raw, 0, len(sig)), sig)
                              for sig in IMAGE_SIGNATURES])
    with tf.control_dependencies([tf.debugging.Assert(is_image, [UNREADABLE_FILE, path])]):
        return tf.io.decode_image(raw, channels=3, expand_animations=False)


def _list_images(directory, class_names=None):
    """(file paths, class names) of directory/<class>/<image> via Keras' directory indexer."""
    import keras

    dataset = keras.utils.image_dataset_from_directory(
        directory, labels="inferred", class_names=class_names, batch_size=None,
        shuffle=False, verbose=False)
    return list(dataset.file_paths), list(dataset.class_names)


def _class_dirs(directory):
    import tensorflow as tf

    return sorted(d.rstrip("/") for d in tf.io.gfile.listdir(directory)
                  if tf.io.gfile.isdir(files.join(directory, d)))


def load_folder(root):
    import tensorflow as tf

    dirs = {s: files.join(root, s) for s in ("train", "val")}
    for split, d in dirs.items():
        if not tf.io.gfile.isdir(d):
            raise TrainerError(f"--dataset=folder:{root}: no {split}/ directory ({d}); "
                               f"expected {root}/train/<class>/<image> and "
                               f"{root}/val/<class>/<image>")
    train_classes, val_classes = _class_dirs(dirs["train"]), _class_dirs(dirs["val"])
    if not train_classes:
        raise TrainerError(f"--dataset=folder:{root}: {dirs['train']} has no class "
                           f"subdirectories (expected train/<class>/<image>)")
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        raise TrainerError(
            f"--dataset=folder:{root}: train/ and val/ have different classes "
            f"(only in train: {', '.join(only_train) or '-'}; "
            f"only in val: {', '.join(only_val) or '-'})")
    if tf.io.gfile.isdir(files.join(root, "test")):
        dirs["test"] = files.join(root, "test")
        if _class_dirs(dirs["test"]) != train_classes:
            raise TrainerError(f"--dataset=folder:{root}: train/ and test/ have different "
                               f"classes")
    splits = {}
    for split, d in dirs.items():
        try:
            paths, _ = _list_images(d, train_classes)
        except ValueError as e:
            raise TrainerError(f"--dataset=folder:{root}: {split}/: {e}")
        index = {name: i for i, name in enumerate(train_classes)}
        labels = np.array([index[files.basename(files.dirname(p))] for p in paths],
                          np.int32)
        empty = [c for i, c in enumerate(train_classes) if not np.any(labels == i)]
        if empty:
            raise TrainerError(f"--dataset=folder:{root}: {split}/ has no images of class(es) "
                               f"{', '.join(empty[:10])}")
        splits[split] = ImageSplit(len(paths), _decode_file,
                                   table=(np.array(paths, dtype=object), labels))
    return ImageData(
        name=f"folder:{root}", train=splits["train"], eval=splits["val"],
        num_classes=len(train_classes), class_names=train_classes, channels=3,
        native_size=None, mean=IMAGENET_MEAN, std=IMAGENET_STD, small_images=False,
        test=splits.get("test"))


# ---------------------------------------------------------------- tfds:NAME
def tfds_dirs(data_dir=None, manual_dir=None):
    """(data_dir, manual_dir) as TFDS resolves them by default."""
    data_dir = data_dir or files.absolute(os.environ.get("TFDS_DATA_DIR")
                                          or "~/tensorflow_datasets")
    return data_dir, manual_dir or files.join(data_dir, "downloads", "manual")


def _prepare(builder, name, data_dir, manual_dir):
    import tensorflow_datasets as tfds

    if builder.is_prepared():
        return
    needed = TFDS_MANUAL_FILES.get(name.split("/")[0].split(":")[0])
    if needed:
        missing = [f for f in needed if not files.exists(files.join(manual_dir, f))]
        if missing:
            raise TrainerError(
                f"--dataset=tfds:{name} is not prepared in {builder.data_dir} and "
                f"{', '.join(missing)} missing from the manual dir {manual_dir}: put "
                f"{' and '.join(needed)} (from https://image-net.org/download-images) into "
                f"{manual_dir} (or pass --tfds_manual_dir=DIR holding them, "
                f"--tfds_data_dir=DIR for where the prepared data goes)")
    elif getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) and not (
            files.isdir(manual_dir) and files.listdir(manual_dir)):
        raise TrainerError(
            f"--dataset=tfds:{name} needs files placed in {manual_dir}: "
            f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    print(f"preparing tfds:{name} in {data_dir} (once) ...", flush=True)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except (AssertionError, OSError, ValueError) as e:
        first = first_line(e)
        raise TrainerError(f"--dataset=tfds:{name}: preparing failed: {first}")


def _tfds_split(builder, split, channels):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def stream(input_context=None):
        # With an input context TFDS reads only files p, p + P, p + 2P, ... of the split
        # (`shard_sizes` counts their examples).
        read_config = tfds.ReadConfig(input_context=input_context) if input_context else None
        ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config,
                                decoders={"image": tfds.decode.SkipDecoding()})
        return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)))

    def shard_sizes(pipelines):
        try:
            files = builder.info.splits[split].file_instructions
        except Exception:  # noqa: BLE001 - no file list (e.g. mocked data): read it whole
            return None
        if len(files) < pipelines:
            return None
        return [sum(int(f.take) for f in files[p::pipelines]) for p in range(pipelines)]

    info = builder.info.splits[split] if split in builder.info.splits else None
    n = info.num_examples if info else int(stream().cardinality())
    if n <= 0:
        n = int(stream().reduce(0, lambda count, _: count + 1))

    def decode(raw):
        return tf.io.decode_image(raw, channels=channels, expand_animations=False)

    return ImageSplit(n, decode, stream=stream, shard_sizes=shard_sizes)


def load_tfds(name, train_split="train", eval_split="validation", data_dir=None,
              manual_dir=None):
    import tensorflow_datasets as tfds

    data_dir, manual_dir = tfds_dirs(data_dir, manual_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - DatasetNotFoundError and kin, in one line
        first = first_line(e)
        raise TrainerError(f"--dataset=tfds:{name}: {first}")
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise TrainerError(f"--dataset=tfds:{name} has no 'image' and 'label' features")
    _prepare(builder, name, data_dir, manual_dir)
    known = list(builder.info.splits.keys())
    base = name.split("/")[0].split(":")[0]
    for split in (train_split, eval_split):
        names = {re.sub(r"\[.*\]$", "", part.strip()) for part in split.split("+")}
        if names & set(TFDS_UNLABELLED_SPLITS.get(base, ())):
            raise TrainerError(f"--dataset=tfds:{name}: the split {split!r} has no labels "
                               f"(ImageNet's test labels are not public); evaluate on "
                               f"validation")
        if known and not names <= set(known):
            raise TrainerError(f"--dataset=tfds:{name} has no split {split!r} "
                               f"(it has {', '.join(known)})")
    shape = features["image"].shape
    channels = shape[-1] or 3
    label = features["label"]
    side = shape[0] if shape[0] and shape[0] == shape[1] else None
    mean, std = ((IMAGENET_MEAN, IMAGENET_STD) if channels == 3
                 else ((0.5,) * channels, (0.25,) * channels))
    return ImageData(
        name=f"tfds:{name}", train=_tfds_split(builder, train_split, channels),
        eval=_tfds_split(builder, eval_split, channels), num_classes=label.num_classes,
        class_names=list(label.names), channels=channels, native_size=side, mean=mean,
        std=std, small_images=bool(side and side < 64))


# ---------------------------------------------------------------- dispatch
def load_for_model(model, spec, image_size=0, num_classes=0, seed=0, **source_options):
    """``(ImageData, input side)`` as `trainers.resnet_imagenet` resolves them.

    The side is ``image_size`` if given, else 224 for resnet50, else the data's
    own (32 where sizes vary); synthetic data is made at that side.
    """
    size = image_size or (224 if model == "resnet50" else 0)
    data = load(spec, image_size=size or 32, num_classes=num_classes, seed=seed,
                **source_options)
    return data, size or data.native_size or 32


def load(spec, image_size=224, num_classes=0, seed=0, tfds_data_dir=None,
         tfds_manual_dir=None, train_split="train", eval_split="validation",
         validation_fraction=0.1):
    """The `ImageData` of a `--dataset` value, its `eval` chosen by `eval_split`.

    `seed` makes synthetic images only; the validation fold is always drawn
    with seed 0, so every --seed trains and selects on the same examples.
    """
    if spec == "digits":
        return select_eval_split(load_digits(), eval_split, validation_fraction)
    if spec == "fashion_mnist":
        return select_eval_split(load_fashion_mnist(), eval_split, validation_fraction)
    if spec == "synthetic":
        data = load_synthetic(image_size, num_classes or 1000, seed)
        return dataclasses.replace(data, eval_split="train",
                                   eval_source="synthetic: the training images")
    if spec.startswith("folder:") and spec[len("folder:"):]:
        data = load_folder(spec[len("folder:"):])
        if data.test is None:
            return select_eval_split(data, eval_split, validation_fraction)
        if eval_split not in ("validation", "test"):
            raise TrainerError(f"--eval_split={eval_split!r}: --dataset={spec} has the "
                               f"held-out sets validation (val/) and test (test/)")
        held = data.eval if eval_split == "validation" else data.test
        folder = "val/" if eval_split == "validation" else "test/"
        return dataclasses.replace(
            data, eval=held, eval_split=eval_split,
            eval_source=f"{eval_split}: {folder} ({held.num_examples} examples); training "
                        f"on all of train/")
    if spec.startswith("tfds:") and spec[len("tfds:"):]:
        data = load_tfds(spec[len("tfds:"):], train_split, eval_split, tfds_data_dir,
                         tfds_manual_dir)
        return dataclasses.replace(
            data, eval_split=eval_split,
            eval_source=f"{eval_split}: the TFDS split ({data.eval.num_examples} examples); "
                        f"training on the TFDS split {train_split}")
    raise TrainerError(f"unknown --dataset={spec!r}; use digits, fashion_mnist, synthetic, "
                       f"folder:PATH or tfds:NAME")
