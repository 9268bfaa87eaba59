"""--eval_split of the ResNet trainer: a fixed validation fold of the training split vs the
dataset's own test split (in-memory sources), folders with test/, and the errors."""

import collections

import numpy as np
import pytest

from resnet_support import experiment, COLOURS, make_folder, parse_flags, restore_flag_defaults
from trainers import resnet_imagenet  # noqa: F401 - defines the flags
from trainers.common.errors import TrainerError
from trainers.vision import sources as image_sources
from trainers.vision import task as vision_task

restore_defaults = pytest.fixture(autouse=True)(restore_flag_defaults)


def keys(split):
    """Each example of an in-memory split as (pixels, label), a multiset."""
    raws, labels = split.table
    return collections.Counter((r.tobytes(), int(y)) for r, y in zip(raws, labels))


@pytest.fixture(scope="module")
def raw():
    return image_sources.load_digits()


def test_validation_fold_is_a_disjoint_stratified_part_of_the_training_split(raw):
    val = image_sources.load("digits", eval_split="validation")
    test = image_sources.load("digits", eval_split="test")
    # validation + the training examples used == the training split, without overlap.
    assert val.train.num_examples + val.eval.num_examples == raw.train.num_examples == 1437
    assert keys(val.train) + keys(val.eval) == keys(raw.train)
    assert not set(keys(val.train)) & set(keys(val.eval))
    assert val.eval.num_examples == 142 and val.train.num_examples == 1295
    # Stratified: each class is ~10 % of its training examples (round(), >= 1).
    train_counts = np.bincount(raw.train.table[1], minlength=10)
    fold_counts = np.bincount(val.eval.table[1], minlength=10)
    np.testing.assert_array_equal(fold_counts, np.maximum(1, np.round(0.1 * train_counts)))
    # test: the official held-out split; the model trains on exactly the same examples.
    assert keys(test.eval) == keys(raw.eval) and test.eval.num_examples == 360
    np.testing.assert_array_equal(test.train.table[0], val.train.table[0])
    np.testing.assert_array_equal(test.train.table[1], val.train.table[1])
    assert (val.eval_split, test.eval_split) == ("validation", "test")
    assert "10% fold" in val.eval_source and "held-out split (360" in test.eval_source


def test_the_fold_is_fixed_whatever_the_seed(tmp_path):
    folds = []
    for seed in (0, 1, 7):
        f = parse_flags(f"--model_dir={tmp_path}", "--dataset=digits", "--model=resnet8",
                        f"--seed={seed}")
        task = vision_task.ImageClassificationTask(experiment(f))
        folds.append((task.data.eval.table[0], task.data.train.table[0]))
        assert task.facts["eval_split"] == "validation" and task.facts["eval_examples"] == 142
    for fold, train in folds[1:]:
        np.testing.assert_array_equal(fold, folds[0][0])
        np.testing.assert_array_equal(train, folds[0][1])


def test_validation_fraction_and_errors(raw):
    quarter = image_sources.load("digits", validation_fraction=0.25)
    assert abs(quarter.eval.num_examples - 0.25 * 1437) <= 10
    everything = image_sources.load("digits", eval_split="test", validation_fraction=0)
    assert everything.train.num_examples == 1437 and everything.eval.num_examples == 360
    with pytest.raises(TrainerError, match="validation_fraction > 0"):
        image_sources.load("digits", eval_split="validation", validation_fraction=0)
    with pytest.raises(TrainerError, match=r"validation_fraction must lie in \[0, 1\)"):
        image_sources.load("digits", validation_fraction=1.0)
    with pytest.raises(TrainerError, match="held-out sets validation and test"):
        image_sources.load("digits", eval_split="train")


def test_validation_fold_of_small_classes():
    labels = np.array([0] * 4 + [1] * 2 + [2] * 1 + [3] * 30)
    fold = image_sources.validation_fold(labels, 0.1)
    assert collections.Counter(labels[fold].tolist()) == {0: 1, 1: 1, 3: 3}
    np.testing.assert_array_equal(fold, image_sources.validation_fold(labels, 0.1))


def test_folder_with_and_without_test_dir(tmp_path):
    root = make_folder(str(tmp_path / "imgs"))
    val = image_sources.load(f"folder:{root}", eval_split="validation")
    test = image_sources.load(f"folder:{root}", eval_split="test")
    assert (val.train.num_examples, val.eval.num_examples) == (9, 3)  # 1 of 4 per class
    assert (test.train.num_examples, test.eval.num_examples) == (9, 6)  # val/
    assert not set(val.train.table[0]) & set(val.eval.table[0])
    assert all("/val/" in p for p in test.eval.table[0])
    # With test/: validation = val/, test = test/, training on all of train/.
    make_folder(str(tmp_path / "three"), train_per_class=4, val_per_class=2)
    make_folder(str(tmp_path / "three_test"), train_per_class=3, val_per_class=0)
    (tmp_path / "three_test" / "train").rename(tmp_path / "three" / "test")
    val = image_sources.load(f"folder:{tmp_path / 'three'}", eval_split="validation")
    test = image_sources.load(f"folder:{tmp_path / 'three'}", eval_split="test")
    assert (val.train.num_examples, val.eval.num_examples) == (12, 6)
    assert (test.train.num_examples, test.eval.num_examples) == (12, 9)
    assert all("/test/" in p for p in test.eval.table[0]) and test.class_names == sorted(COLOURS)
