"""Streamed TFDS training data read per host: two input pipelines read disjoint files and
together every example once per epoch (a small TFDS dataset written here, no downloads)."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from trainers.vision import pipelines as images
from trainers.vision import sources as image_sources

TRAIN, HELD = 30, 6


class AcclipTinyImages(tfds.core.GeneratorBasedBuilder):
    """8x8 solid images whose grey level is the example's id (0..29 train, 100.. held-out)."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # defined in a test: no checksums file (TFDS would look for one)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3)),
            "label": tfds.features.ClassLabel(num_classes=3)}))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(TRAIN, 0), "validation": self._generate_examples(HELD, 100)}

    def _generate_examples(self, n, first):
        for i in range(n):
            yield i, {"image": np.full((8, 8, 3), first + i, np.uint8), "label": i % 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tfds"))
    AcclipTinyImages(data_dir=root).download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=4))
    return root


def context(pid, pipelines=2):
    return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pid,
                                      num_replicas_in_sync=pipelines)


def ids_of(split, ctx=None):
    return [int(tf.io.decode_png(raw)[0, 0, 0]) for raw, _ in split.stream(ctx)]


def batch_ids(batches, data):
    """Example ids of normalised solid images (augment none keeps them solid)."""
    images_ = np.concatenate([b["image"] for b in batches])
    pixels = (images_ * np.array(data.std) + np.array(data.mean)) * 255.0
    return np.round(pixels[:, 0, 0, 0]).astype(int).tolist()


def test_two_input_contexts_read_disjoint_files_and_together_every_example(data_dir):
    data = image_sources.load("tfds:acclip_tiny_images", tfds_data_dir=data_dir)
    split = data.train
    assert (split.num_examples, data.eval.num_examples) == (TRAIN, HELD)
    files = tfds.builder("acclip_tiny_images", data_dir=data_dir).info.splits["train"]
    assert len(files.file_instructions) == 4
    sizes = split.shard_sizes(2)
    assert sum(sizes) == TRAIN and min(sizes) > 0
    shares = [ids_of(split, context(pid)) for pid in range(2)]
    assert [len(s) for s in shares] == sizes
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(TRAIN)) == sorted(ids_of(split))
    assert split.shard_sizes(5) is None  # 4 files cannot feed 5 pipelines


def test_per_host_pipelines_see_every_example_once_per_epoch(data_dir):
    data = image_sources.load("tfds:acclip_tiny_images", tfds_data_dir=data_dir)
    pipes = images.ImagePipelines(data, 8, "none", seed=0, shuffle_buffer=64)
    sizes = data.train.shard_sizes(2)
    one = batch_ids(list(pipes.train_dataset(None, 6, 0).take(5).as_numpy_iterator()), data)
    assert sorted(one) == list(range(TRAIN))  # one process: an epoch is a permutation
    per_host = []
    for pid in range(2):
        ctx = context(pid)
        assert pipes.host_shard_size(ctx) == sizes[pid]
        # Batches of 1 (this pipeline's half of a global batch of 2), two epochs of its files.
        batches = list(pipes.train_dataset(ctx, 2, 0).take(2 * sizes[pid]).as_numpy_iterator())
        ids = batch_ids(batches, data)
        first, second = ids[:sizes[pid]], ids[sizes[pid]:]
        assert sorted(first) == sorted(second) and len(set(first)) == sizes[pid]
        assert first != second  # reshuffled per epoch
        # Resume: from step 2 on, the same examples as straight.
        resumed = batch_ids(list(pipes.train_dataset(ctx, 2, 5).take(sizes[pid])
                                 .as_numpy_iterator()), data)
        assert resumed == ids[5:5 + sizes[pid]]  # crosses into the second epoch
        per_host.append(first)
    assert not set(per_host[0]) & set(per_host[1])
    assert collections.Counter(per_host[0] + per_host[1]) == collections.Counter(one)
    # --noper_host_reads: every host reads all and keeps its rows of one process's batches.
    whole = images.ImagePipelines(data, 8, "none", seed=0, shuffle_buffer=64,
                                  per_host_reads=False)
    halves = [batch_ids(list(whole.train_dataset(context(pid), 6, 0).take(1)
                             .as_numpy_iterator()), data) for pid in range(2)]
    assert halves[0] + halves[1] == one[:6]
