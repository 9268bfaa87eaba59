"""Image-classification tf.data pipelines: augmentation, normalisation, distribution.

Training examples are a function of (seed, position in the training stream):
the order is a stateless permutation per epoch (in-memory splits) or a
seeded shuffle per epoch (streamed TFDS splits), and each example's random
crop and flip take the stateless seed ``(seed, position)``. So a resumed run
reads exactly the examples an uninterrupted one would, and every worker /
replica layout builds the same global batches (`trainers.common.inputs.per_replica`
slices them; the decoding and augmentation happen after the slicing, so each
pipeline decodes only its own share).

Streamed (TFDS) training data on several input pipelines (hosts) is read per
pipeline by default (`per_host_reads`): pipeline p of P reads only the split's
files p, p + P, ... (``tfds.ReadConfig(input_context=...)``), shuffles them per
epoch, and fills its G/P rows of each global batch from them. Then N workers
see the same *multiset* of examples per epoch as one process (exactly so when
the P file groups hold equal numbers of examples), not the same global batches
(see docs/resnet.md). With ``per_host_reads=False``, with fewer files than
pipelines, and for in-memory data and folders (whose images are read in
`decode`, after the slicing, so each host reads only its own share anyway) the
global batches are the ones one process builds.

Augmentations (`--augment`):

* ``resized_crop``: Inception / Model Garden ImageNet crop (area 8%-100%, aspect
  3/4-4/3) resized to the image size; eval: centre crop of `eval_crop_fraction`
  of the shorter side, resized;
* ``pad_crop``: CIFAR-style, pad by size/8 and take a random crop; eval: the image;
* ``none``: resize only; each of the first two with ``_flip`` adds a random
  horizontal flip.

Batches are ``{"image": float32 [B, S, S, C] normalised, "label": int32 [B],
"weight": float32 [B]}``; the held-out set is padded to whole global batches
with weight-0 copies of its first example, so metrics count each example once.
"""

import math

import tensorflow as tf

from trainers.common.errors import TrainerError
from trainers.common.inputs import per_replica

AUGMENTATIONS = ("auto", "resized_crop_flip", "resized_crop", "pad_crop_flip", "pad_crop",
                 "none")


def resolve_augment(augment, data):
    if augment != "auto":
        return augment
    if data.name == "synthetic":
        return "none"
    if data.name == "digits":
        return "pad_crop"  # digits are not mirror-symmetric
    return "pad_crop_flip" if data.small_images else "resized_crop_flip"


def _resize(image, size):
    return tf.image.resize(image, [size, size], method="bilinear")


def random_resized_crop(image, size, seed, area=(0.08, 1.0), aspect=(3 / 4, 4 / 3)):
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=aspect, area_range=area, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return _resize(tf.slice(image, begin, crop_size), size)


def pad_and_crop(image, size, seed):
    image = _resize(image, size)
    pad = max(1, size // 8)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed)


def centre_crop(image, size, fraction):
    shape = tf.shape(image)
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * fraction, tf.int32)
    top = (shape[0] - side) // 2
    left = (shape[1] - side) // 2
    return _resize(image[top:top + side, left:left + side], size)


def block_shuffle(dataset, block_size, seed):
    """Shuffle scalar-element `dataset` within consecutive blocks, from a stateless `seed` [2].

    `Dataset.shuffle(seed=<tensor>)` fails in graph code whenever the global
    seed is 0 (TF's seed check then compares the tensor in Python), and the
    trainers set the global seed to --seed (default 0). Sorting each block by
    stateless random keys is deterministic for a given seed, whatever the
    global seed, and needs no state to resume.
    """
    def keyed(index, element):
        key = tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_fold_in(seed, index))
        return (key,) + tuple(element)

    def permute(keys, *columns):
        order = tf.argsort(keys)
        return tuple(tf.gather(c, order) for c in columns)

    return (dataset.enumerate().map(keyed).batch(block_size).map(permute)
            .unbatch())


class ImagePipelines:
    """Train and eval pipelines of an `ImageData` for one image size and augmentation."""

    def __init__(self, data, image_size, augment="auto", seed=0, eval_crop_fraction=0.875,
                 shuffle_buffer=10_000, per_host_reads=True):
        augment = resolve_augment(augment, data)
        if augment not in AUGMENTATIONS:
            raise TrainerError(f"unknown --augment={augment!r}")
        if image_size < 1:
            raise TrainerError(f"--image_size must be >= 1, got {image_size}")
        if not 0 < eval_crop_fraction <= 1:
            raise TrainerError(f"--eval_crop_fraction must lie in (0, 1], got "
                               f"{eval_crop_fraction}")
        for name, split in (("training", data.train), ("held-out", data.eval)):
            if split.num_examples < 1:
                raise TrainerError(f"{data.name}: the {name} split is empty")
        self.data = data
        self.size = image_size
        self.augment = augment
        self.seed = seed
        self.eval_crop_fraction = eval_crop_fraction if augment.startswith("resized") else 1.0
        self.shuffle_buffer = shuffle_buffer
        self.per_host_reads = per_host_reads

    # ------------------------------------------------------------ per example
    def _normalise(self, image):
        mean = tf.constant(self.data.mean, tf.float32)
        std = tf.constant(self.data.std, tf.float32)
        image = tf.cast(image, tf.float32) / 255.0
        image = tf.ensure_shape(image, [self.size, self.size, self.data.channels])
        return (image - mean) / std

    def train_image(self, image, seed):
        """uint8 [H, W, C] and a stateless seed [2] -> the augmented float32 image."""
        image = tf.cast(image, tf.float32)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if self.augment.startswith("resized_crop"):
            image = random_resized_crop(image, self.size, crop_seed)
        elif self.augment.startswith("pad_crop"):
            image = pad_and_crop(image, self.size, crop_seed)
        else:
            image = _resize(image, self.size)
        if self.augment.endswith("_flip"):
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return self._normalise(image)

    def eval_image(self, image):
        return self._normalise(centre_crop(tf.cast(image, tf.float32), self.size,
                                           self.eval_crop_fraction))

    # ------------------------------------------------------------ element streams
    def _train_elements(self, start):
        """{"position", "raw", "label"} of the training stream from example `start` on."""
        split = self.data.train
        n = split.num_examples
        seed = tf.constant(self.seed, tf.int64)
        if split.table is not None:
            raws, labels = (tf.constant(a) for a in split.table)

            def element(position):
                epoch, i = position // n, position % n
                j = tf.random.experimental.index_shuffle(
                    i, tf.stack([seed, epoch]), tf.constant(n - 1, tf.int64))
                return {"position": position, "raw": tf.gather(raws, j),
                        "label": tf.gather(labels, j)}

            return tf.data.Dataset.range(start, 2**62).map(element)

        def epoch_stream(epoch):
            return block_shuffle(split.stream(), self.shuffle_buffer, tf.stack([seed, epoch]))

        stream = (tf.data.Dataset.range(start // n, 2**62).flat_map(epoch_stream)
                  .skip(start % n))
        positions = tf.data.Dataset.range(start, 2**62)
        return tf.data.Dataset.zip(positions, stream).map(
            lambda p, e: {"position": p, "raw": e[0], "label": e[1]})

    def host_shard_size(self, input_context):
        """Examples in this input pipeline's own files of a streamed training split when it
        reads only those (several pipelines, `per_host_reads`, enough files), else None."""
        split = self.data.train
        if not (self.per_host_reads and split.table is None and split.shard_sizes
                and input_context and input_context.num_input_pipelines > 1):
            return None
        sizes = split.shard_sizes(input_context.num_input_pipelines)
        if not sizes or min(sizes) < 1:
            print(f"note: {self.data.name}: the training split has fewer files than the "
                  f"{input_context.num_input_pipelines} input pipelines; every host reads "
                  f"all of it and keeps its share", flush=True)
            return None
        return sizes[input_context.input_pipeline_id]

    def _host_train_elements(self, input_context, n, start):
        """{"position", "raw", "label"} of this pipeline's own files from its example `start`
        on: its `n` examples in a seeded block-shuffled order per epoch; `position` is
        local position * P + p, unique over the pipelines (it seeds the augmentation)."""
        split = self.data.train
        pipelines = input_context.num_input_pipelines
        pid = input_context.input_pipeline_id
        seed = tf.constant(self.seed, tf.int64)

        def epoch_stream(epoch):
            return block_shuffle(split.stream(input_context), self.shuffle_buffer,
                                 tf.stack([seed, epoch * pipelines + pid]))

        stream = (tf.data.Dataset.range(start // n, 2**62).flat_map(epoch_stream)
                  .skip(start % n))
        positions = tf.data.Dataset.range(start, 2**62).map(lambda i: i * pipelines + pid)
        return tf.data.Dataset.zip(positions, stream).map(
            lambda p, e: {"position": p, "raw": e[0], "label": e[1]})

    def _eval_elements(self, global_batch_size):
        """The held-out set once in order (weight 1), padded to whole global batches
        with weight-0 copies of its first example, repeated."""
        split = self.data.eval
        ordered = split.ordered().map(lambda raw, label: (raw, label, tf.constant(1.0)))
        pad = self.eval_steps(global_batch_size) * global_batch_size - split.num_examples
        padding = ordered.take(1).map(lambda raw, label, w: (raw, label, 0.0 * w)).repeat(pad)
        return ordered.concatenate(padding).repeat().map(
            lambda raw, label, weight: {"raw": raw, "label": label, "weight": weight})

    # ------------------------------------------------------------ pipelines
    def _finish(self, elements, input_context, global_batch_size, example_fn):
        batch = (input_context.get_per_replica_batch_size(global_batch_size)
                 if input_context else global_batch_size)
        return (per_replica(elements, input_context, global_batch_size).unbatch()
                .map(example_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

    def train_dataset(self, input_context, global_batch_size, start_batch=0):
        decode = self.data.train.decode
        seed = self.seed

        def example(e):
            image_seed = tf.stack([tf.constant(seed, tf.int64), e["position"]])
            return {"image": self.train_image(decode(e["raw"]), image_seed),
                    "label": e["label"], "weight": tf.constant(1.0)}

        n = self.host_shard_size(input_context)
        if n is None:
            return self._finish(self._train_elements(start_batch * global_batch_size),
                                input_context, global_batch_size, example)
        # This pipeline's G/P rows of every global batch come from its own files.
        share = global_batch_size // input_context.num_input_pipelines
        per_replica_batch = input_context.get_per_replica_batch_size(global_batch_size)
        elements = self._host_train_elements(input_context, n, start_batch * share)
        return (elements.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(per_replica_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

    def eval_dataset(self, input_context, global_batch_size):
        decode = self.data.eval.decode

        def example(e):
            return {"image": self.eval_image(decode(e["raw"])), "label": e["label"],
                    "weight": e["weight"]}

        return self._finish(self._eval_elements(global_batch_size), input_context,
                            global_batch_size, example)

    def eval_steps(self, global_batch_size):
        return math.ceil(self.data.eval.num_examples / global_batch_size)

    def steps_per_epoch(self, global_batch_size):
        return max(1, self.data.train.num_examples // global_batch_size)
