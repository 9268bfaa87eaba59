"""The ResNet trainer's input pipelines: digits, folder:, tfds: (mocked), fashion_mnist, errors."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf
import keras

from resnet_support import COLOURS, make_folder
from trainers.common.errors import TrainerError
from trainers.vision import sources as image_sources
from trainers.vision import pipelines as images


def first_batches(dataset, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset.take(n)]


def denormalise(image, data):
    """Normalised float image -> pixel values in [0, 255]."""
    return (image * np.array(data.std) + np.array(data.mean)) * 255.0


def check_batch(batch, batch_size, size, channels, num_classes):
    assert batch["image"].dtype == np.float32
    assert batch["image"].shape == (batch_size, size, size, channels)
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (batch_size,)
    assert batch["weight"].dtype == np.float32
    assert np.all((batch["label"] >= 0) & (batch["label"] < num_classes))


# ---------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits():
    """The raw digits data (training split whole, held-out = its test split)."""
    return image_sources.load_digits()


def test_digits_is_sklearns_data_split_without_loss(digits):
    from sklearn.datasets import load_digits

    ref = load_digits()
    assert (digits.train.num_examples, digits.eval.num_examples) == (1437, 360)
    assert digits.num_classes == 10 and digits.channels == 1 and digits.native_size == 8
    # train + eval is exactly sklearn's 1,797 (image, label) pairs, 0..16 grey levels.
    ours = collections.Counter()
    for x, y in (digits.train.table, digits.eval.table):
        for image, label in zip(np.round(x[..., 0].astype(float) * 16 / 255), y):
            ours[(image.astype(int).tobytes(), int(label))] += 1
    theirs = collections.Counter((i.astype(int).tobytes(), int(t))
                                 for i, t in zip(ref.images, ref.target))
    assert ours == theirs
    # Stratified: every class in both splits.
    assert set(digits.eval.table[1]) == set(range(10))


def test_digits_train_pipeline_shapes_ranges_and_epoch_permutation(digits):
    pipes = images.ImagePipelines(digits, 8, "none", seed=3)
    n = digits.train.num_examples
    batches = first_batches(pipes.train_dataset(None, 479, 0), 3)  # 3 x 479 = one epoch
    for b in batches:
        check_batch(b, 479, 8, 1, 10)
        np.testing.assert_array_equal(b["weight"], 1.0)
    pixels = denormalise(np.concatenate([b["image"] for b in batches]), digits)
    assert pixels.min() > -1e-3 and pixels.max() < 255 + 1e-3
    # Without augmentation one epoch is a permutation of the training set.
    seen = sorted(row.tobytes() for row in np.round(pixels).astype(np.uint8).reshape(n, -1))
    expected = sorted(row.tobytes() for row in digits.train.table[0].reshape(n, -1))
    assert seen == expected
    labels = np.concatenate([b["label"] for b in batches])
    assert collections.Counter(labels.tolist()) == collections.Counter(
        digits.train.table[1].tolist())


def test_augmented_train_stream_resumes_and_splits_across_pipelines(digits):
    pipes = images.ImagePipelines(digits, 8, "pad_crop", seed=0)
    straight = first_batches(pipes.train_dataset(None, 8, 0), 5)
    resumed = first_batches(pipes.train_dataset(None, 8, 3), 2)
    for a, b in zip(straight[3:], resumed):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    # The same seed gives the same stream, another seed another one.
    again = first_batches(images.ImagePipelines(digits, 8, "pad_crop", seed=0)
                          .train_dataset(None, 8, 0), 1)[0]
    np.testing.assert_array_equal(again["image"], straight[0]["image"])
    other = first_batches(images.ImagePipelines(digits, 8, "pad_crop", seed=1)
                          .train_dataset(None, 8, 0), 1)[0]
    assert not np.array_equal(other["image"], straight[0]["image"])
    # Two input pipelines x one replica each: their batches make up the global batch.
    shares = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                         num_replicas_in_sync=2)
        shares.append(first_batches(pipes.train_dataset(ctx, 8, 0), 1)[0])
    np.testing.assert_array_equal(
        np.concatenate([s["image"] for s in shares]), straight[0]["image"])


def test_eval_pipeline_counts_each_example_once(digits):
    pipes = images.ImagePipelines(digits, 8, "pad_crop", seed=0)
    steps = pipes.eval_steps(64)
    assert steps == 6
    batches = first_batches(pipes.eval_dataset(None, 64), steps)
    weights = np.concatenate([b["weight"] for b in batches])
    assert weights.sum() == 360 and set(weights.tolist()) == {0.0, 1.0}
    labels = np.concatenate([b["label"] for b in batches])[weights > 0]
    np.testing.assert_array_equal(labels, digits.eval.table[1])
    pixels = denormalise(np.concatenate([b["image"] for b in batches])[weights > 0], digits)
    np.testing.assert_allclose(pixels, digits.eval.table[0], atol=1e-3)


# ---------------------------------------------------------------- folder:
def test_folder_pipeline(tmp_path):
    root = make_folder(str(tmp_path / "imgs"))
    data = image_sources.load(f"folder:{root}", eval_split="test")
    assert data.class_names == sorted(COLOURS) and data.num_classes == 3
    # val/ is the test split; one of each class's 4 training images is the validation fold.
    assert (data.train.num_examples, data.eval.num_examples) == (9, 6)
    pipes = images.ImagePipelines(data, 16, "auto", seed=0)
    assert pipes.augment == "resized_crop_flip"
    train = first_batches(pipes.train_dataset(None, 6, 0), 2)
    for b in train:
        check_batch(b, 6, 16, 3, 3)
    evals = first_batches(pipes.eval_dataset(None, 4), pipes.eval_steps(4))
    for b in train + evals:
        # Solid colours survive crops, flips and resizing: each pixel names its class.
        for image, label in zip(denormalise(b["image"], data), b["label"]):
            np.testing.assert_allclose(image.reshape(-1, 3).mean(0),
                                       COLOURS[data.class_names[label]], atol=0.5)
    weights = np.concatenate([b["weight"] for b in evals])
    assert weights.sum() == 6 and len(weights) == 8


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainerError, match="no train/ directory"):
        image_sources.load(f"folder:{empty}")
    (empty / "train").mkdir()
    (empty / "val").mkdir()
    with pytest.raises(TrainerError, match="no class subdirectories"):
        image_sources.load(f"folder:{empty}")
    root = make_folder(str(tmp_path / "mismatch"))
    os.rename(os.path.join(root, "val", "eel"), os.path.join(root, "val", "fox"))
    with pytest.raises(TrainerError, match=r"only in train: eel; only in val: fox"):
        image_sources.load(f"folder:{root}")
    root = make_folder(str(tmp_path / "hollow"))
    for name in os.listdir(os.path.join(root, "val", "dog")):
        os.remove(os.path.join(root, "val", "dog", name))
    with pytest.raises(TrainerError, match="val/.*dog"):
        image_sources.load(f"folder:{root}")


# ---------------------------------------------------------------- tfds:
@pytest.mark.parametrize("global_seed", [None, 0])
def test_tfds_imagenet_through_mock_data(tmp_path, global_seed):
    # The trainers set the global seed to --seed (default 0); stream shuffling
    # once crashed then (TF compares a tensor op seed in Python when it is 0).
    import tensorflow_datasets as tfds

    if global_seed is not None:
        keras.utils.set_random_seed(global_seed)

    manual = tmp_path / "manual"
    manual.mkdir()
    for name in image_sources.TFDS_MANUAL_FILES["imagenet2012"]:
        (manual / name).write_bytes(b"")
    with tfds.testing.mock_data(num_examples=10):
        data = image_sources.load("tfds:imagenet2012", tfds_data_dir=str(tmp_path / "data"),
                                  tfds_manual_dir=str(manual))
        assert data.num_classes == 1000 and data.channels == 3
        assert data.class_names[:2] == ["n01440764", "n01443537"]
        assert (data.train.num_examples, data.eval.num_examples) == (10, 10)
        pipes = images.ImagePipelines(data, 32, "auto", seed=0)
        assert pipes.augment == "resized_crop_flip"
        train = first_batches(pipes.train_dataset(None, 4, 0), 3)  # crosses an epoch
        resumed = first_batches(pipes.train_dataset(None, 4, 2), 1)
        evals = first_batches(pipes.eval_dataset(None, 4), pipes.eval_steps(4))
    for b in train + evals:
        check_batch(b, 4, 32, 3, 1000)
        pixels = denormalise(b["image"], data)
        assert pixels.min() > -1e-2 and pixels.max() < 255 + 1e-2
    np.testing.assert_array_equal(train[2]["image"], resumed[0]["image"])
    assert np.concatenate([b["weight"] for b in evals]).sum() == 10


def test_missing_imagenet_says_where_to_put_which_files(tmp_path):
    with pytest.raises(TrainerError) as e:
        image_sources.load("tfds:imagenet2012", tfds_data_dir=str(tmp_path))
    message = str(e.value)
    manual = os.path.join(str(tmp_path), "downloads", "manual")
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
    assert f"into {manual}" in message and "\n" not in message


def test_unknown_datasets():
    with pytest.raises(TrainerError, match="unknown --dataset"):
        image_sources.load("cifar")
    with pytest.raises(TrainerError, match="tfds:no_such_dataset"):
        image_sources.load("tfds:no_such_dataset")


# ---------------------------------------------------------------- fashion_mnist
def test_fashion_mnist_missing_files_error(tmp_path):
    with pytest.raises(TrainerError, match="dataset-fashion-mnist"):
        image_sources.load_fashion_mnist(candidates=(str(tmp_path),))


def test_idx_reader_rejects_a_wrong_header(tmp_path):
    import gzip

    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"12")
    with pytest.raises(TrainerError, match="truncated"):
        image_sources.read_idx(str(path), 2049)
    with pytest.raises(TrainerError, match="magic number 2051"):
        image_sources.read_idx(str(path), 2051)


@pytest.mark.skipif(not any(
    all(os.path.exists(os.path.join(d, n)) for n in image_sources.FASHION_MNIST_FILES)
    for d in image_sources.FASHION_MNIST_DIRS), reason="no Fashion-MNIST files")
def test_fashion_mnist():
    data = image_sources.load_fashion_mnist()
    assert (data.train.num_examples, data.eval.num_examples) == (60000, 10000)
    # --eval_split: validation is 600 per class of the training split, test the 10k.
    val = image_sources.load("fashion_mnist")
    assert (val.train.num_examples, val.eval.num_examples) == (54000, 6000)
    assert np.bincount(val.eval.table[1]).tolist() == [600] * 10
    test = image_sources.load("fashion_mnist", eval_split="test")
    assert (test.train.num_examples, test.eval.num_examples) == (54000, 10000)
    assert data.train.table[0].shape == (60000, 28, 28, 1)
    # Published facts: 6,000 / 1,000 images per class; the first training image is an ankle boot.
    assert np.bincount(data.train.table[1]).tolist() == [6000] * 10
    assert np.bincount(data.eval.table[1]).tolist() == [1000] * 10
    assert data.train.table[1][0] == 9 and data.class_names[9] == "Ankle boot"
    pipes = images.ImagePipelines(data, 28, "auto", seed=0)
    assert pipes.augment == "pad_crop_flip"
    b = first_batches(pipes.train_dataset(None, 32, 0), 1)[0]
    check_batch(b, 32, 28, 1, 10)
    pixels = denormalise(b["image"], data)
    assert pixels.min() > -1e-3 and pixels.max() < 255 + 1e-3
