"""Prepared pretraining shards: the preparation round-trips (tokens, counts,
vocabulary) with the trainers' own segmentation, resumes per shard, gives the same
shards with two worker processes; two input pipelines read disjoint shards and
together see every example once per epoch; a resumed stream continues exactly;
mismatched or corrupt data fails with one TrainerError.

In-process, on a corpus written here (no download); trainer runs are in
tests/bert/test_bert_shards.py.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from shards_helpers import lm_settings, mlm_settings, write_corpus
from trainers import prepare_pretraining_data as prep
from trainers.bert import mlm
from trainers.common.errors import TrainerError
from trainers.common.text import corpus as corpus_lib
from trainers.common.text import shards as shards_lib
from trainers.common.text import vocab as vocab_lib
from trainers.lm import data as lm_data

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")))


@pytest.fixture(scope="module")
def splits(corpus):
    docs = corpus_lib.load_corpus(corpus)
    train, validation, test = corpus_lib.split_documents(docs, 0.2, seed=0, with_test=True)
    return {"train": train, "validation": validation, "test": test}


@pytest.fixture(scope="module")
def mlm_dir(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mlm"))
    result = prep.prepare(out, mlm_settings(corpus))
    assert result["manifest"] and result["shards"] == 9
    return out


@pytest.fixture(scope="module")
def lm_dir(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lm"))
    assert prep.prepare(out, lm_settings(corpus))["manifest"]
    return out


def manifest(directory):
    return shards_lib.load_manifest(directory)


def shard_rows(directory, split):
    m = manifest(directory)
    return [shards_lib.read_records(os.path.join(directory, s["file"]), m["width"])
            for s in m["splits"][split]["shards"]]


def context(pipelines, pid):
    return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pid,
                                      num_replicas_in_sync=pipelines)


# ---------------------------------------------------------------- preparation
def test_mlm_shards_hold_bert_pretrains_own_segments_counts_and_vocabulary(mlm_dir, splits):
    m = manifest(mlm_dir)
    vocab = vocab_lib.load_vocabulary(os.path.join(mlm_dir, "vocab.txt"))
    assert m["vocab"]["sha256"] == shards_lib.vocab_hash(vocab) and m["vocab"]["size"] == len(vocab)
    assert m["layout"] == "mlm" and m["seq_length"] == m["width"] == 32
    assert m["tokenizer"]["name"] == "wordpiece"
    assert "12 training documents" in m["vocab"]["source"]
    tokenizer = vocab_lib.make_tokenizer(vocab)
    for split in shards_lib.SPLITS:
        docs = splits[split]
        rows = shard_rows(mlm_dir, split)
        records = m["splits"][split]
        assert records["documents"] == len(docs)
        assert [len(r) for r in rows] == [s["examples"] for s in records["shards"]]
        assert records["examples"] == sum(len(r) for r in rows)
        # Shards are contiguous document ranges, and BERT segments documents one by one:
        # the shards in order are the trainer's in-memory segments exactly.
        expected = mlm.segment_documents(docs, tokenizer, 32)
        got = np.asarray([row for r in rows for row in r], np.int32).reshape(-1, 32)
        np.testing.assert_array_equal(got, expected)
        ranges = [s["documents"] for s in records["shards"]]
        assert ranges[0][0] == 0 and ranges[-1][1] == len(docs)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_lm_shards_hold_causal_lms_windows_of_each_shards_documents(lm_dir, corpus, splits,
                                                                     tmp_path):
    m = manifest(lm_dir)
    assert m["width"] == 17 and m["tokenizer"]["name"] == "word"
    vocab = vocab_lib.load_vocabulary(os.path.join(lm_dir, "vocab.txt"))
    assert vocab == lm_data.word_vocabulary(splits["train"], 80)
    sep = vocab.index(lm_data.SEPARATOR)
    for split in shards_lib.SPLITS:
        for s, rows in zip(m["splits"][split]["shards"], shard_rows(lm_dir, split)):
            a, b = s["documents"]
            stream = lm_data.token_stream(lm_data.encode(splits[split][a:b], vocab, "word"), sep)
            np.testing.assert_array_equal(np.asarray(rows).reshape(-1, 17),
                                          lm_data.windows(stream, 16))
    # One shard: exactly the trainer's in-memory windows of the whole split.
    one = str(tmp_path / "one")
    prep.prepare(one, lm_settings(corpus, num_shards=1))
    stream = lm_data.token_stream(lm_data.encode(splits["train"], vocab, "word"), sep)
    np.testing.assert_array_equal(np.asarray(shard_rows(one, "train")[0]),
                                  lm_data.windows(stream, 16))


def test_a_rerun_skips_finished_shards_rewrites_missing_ones_and_refuses_other_settings(
        corpus, tmp_path):
    out = str(tmp_path / "data")
    settings = lm_settings(corpus)
    first = prep.prepare(out, settings, shard_index="1")
    assert first["shards"] == 3 and first["manifest"] is None  # shard 1 of 3 splits
    second = prep.prepare(out, settings, shard_index="0-1")
    assert (second["shards"], second["skipped"]) == (3, 3) and second["manifest"]
    victim = os.path.join(out, shards_lib.shard_name("train", 0, 2))
    before = open(victim, "rb").read()
    os.remove(victim)
    third = prep.prepare(out, settings)
    assert (third["shards"], third["skipped"]) == (1, 5)
    assert open(victim, "rb").read() == before
    with pytest.raises(TrainerError, match="--seq_length=16, not 32"):
        prep.prepare(out, dict(settings, seq_length=32))
    with pytest.raises(TrainerError, match="outside 0-1"):
        prep.parse_shard_index("0-2", 2)


def test_two_worker_processes_write_the_same_shards(corpus, mlm_dir, tmp_path):
    out = str(tmp_path / "two")
    prep.prepare(out, mlm_settings(corpus), num_workers=2)
    a, b = manifest(mlm_dir), manifest(out)
    assert a["splits"] == b["splits"] and a["vocab"] == b["vocab"]


# ---------------------------------------------------------------- streaming
def stream_items(examples, n):
    return [(int(x["id"]), int(x["epoch"]), tuple(x["tokens"].numpy())) for x in examples.take(n)]


def test_two_pipelines_read_disjoint_shards_and_see_every_example_once_per_epoch(mlm_dir):
    m = manifest(mlm_dir)
    data = shards_lib.ShardedExamples(mlm_dir, m, "train", shuffle_buffer=16)
    everything = [tuple(r) for rows in shard_rows(mlm_dir, "train") for r in rows]
    seen = []
    for pid in range(2):
        ctx = context(2, pid)
        own = data.own_shards(ctx)
        n = data.pipeline_count(ctx)
        items = stream_items(data.train_examples(ctx, 8, 0, seed=3), 2 * n)
        first, second = items[:n], items[n:]
        assert {e for _, e, _ in first} == {0} and {e for _, e, _ in second} == {1}
        ids = sorted(i for i, _, _ in first)
        assert ids == sorted(i for i, _, _ in second) and len(set(ids)) == n
        assert ids == [data.offsets[s] + k for s in own for k in range(data.counts[s])]
        assert [i for i, _, _ in first] != [i for i, _, _ in second]  # reshuffled
        assert all(everything[i] == tokens for i, _, tokens in first)
        seen += ids
    assert sorted(seen) == list(range(len(everything)))


def test_a_resumed_stream_continues_where_the_uninterrupted_one_is(mlm_dir):
    data = shards_lib.ShardedExamples(mlm_dir, manifest(mlm_dir), "train", shuffle_buffer=16)
    ctx = context(2, 1)
    n = data.pipeline_count(ctx)
    share, start = 4, (n // 4) + 3  # past the end of the pipeline's first epoch
    whole = stream_items(data.train_examples(ctx, 8, 0, seed=5), start * share + 40)
    resumed = stream_items(data.train_examples(ctx, 8, start, seed=5), 40)
    assert resumed == whole[start * share:]


def test_streamed_masked_lm_batches_and_exact_evaluation(mlm_dir):
    m = manifest(mlm_dir)
    vocab = vocab_lib.load_vocabulary(os.path.join(mlm_dir, "vocab.txt"))
    data = mlm.ShardedMaskedLMData(mlm_dir, m, "validation", vocab, seed=0, max_predictions=5,
                                   shuffle_buffer=32)
    weights = 0.0
    for pid in range(2):
        batch = next(iter(data.train_dataset(context(2, pid), 8, 0)))
        assert batch["token_ids"].shape == (4, 32) and batch["mask_positions"].shape == (4, 5)
        ds = data.eval_dataset(context(2, pid), 8)
        steps = data.eval_steps(8)
        for b in ds.take(steps):
            weights += float(tf.reduce_sum(tf.cast(tf.reduce_any(
                b["mask_weights"] > 0, axis=1), tf.float32)))
    assert steps == data.held.eval_steps(8, 2)
    # One pipeline feeding two replicas: per-replica batches of G / 2.
    one_host = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                          num_replicas_in_sync=2)
    assert next(iter(data.train_dataset(one_host, 8, 0)))["token_ids"].shape == (4, 32)
    assert weights == m["splits"]["validation"]["examples"]  # each held-out sequence once


# ---------------------------------------------------------------- bad data
def test_mismatched_data_is_refused_in_one_line(mlm_dir, lm_dir, tmp_path):
    kwargs = dict(program="bert_pretrain", vocab_file=None, model_dir=str(tmp_path),
                  is_chief=True)
    with pytest.raises(TrainerError, match="--seq_length=32, not --seq_length=64"):
        shards_lib.open_prepared(mlm_dir, layout="mlm", seq_length=64, **kwargs)
    with pytest.raises(TrainerError, match="holds causal_lm data"):
        shards_lib.open_prepared(lm_dir, layout="mlm", seq_length=16, **kwargs)
    with pytest.raises(TrainerError, match="--tokenizer=word, not --tokenizer=wordpiece"):
        shards_lib.open_prepared(lm_dir, layout="causal_lm", seq_length=16,
                                 **dict(kwargs, tokenizer="wordpiece"))
    with pytest.raises(TrainerError, match="is not the one"):
        shards_lib.open_prepared(mlm_dir, layout="mlm", seq_length=32, **dict(
            kwargs, vocab_file=os.path.join(lm_dir, "vocab.txt")))
    manifest_, vocab = shards_lib.open_prepared(mlm_dir, layout="mlm", seq_length=32, **kwargs)
    assert os.path.exists(tmp_path / "vocab.txt") and len(vocab) == manifest_["vocab"]["size"]
    with pytest.raises(TrainerError, match="no manifest.json"):
        shards_lib.load_manifest(str(tmp_path))


def test_a_truncated_or_corrupt_shard_fails_in_one_line(corpus, tmp_path):
    out = str(tmp_path / "data")
    prep.prepare(out, lm_settings(corpus))
    m = manifest(out)
    path = os.path.join(out, m["splits"]["train"]["shards"][0]["file"])
    data = shards_lib.ShardedExamples(out, m, "train")
    original = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(original[:-7])
    with pytest.raises(TrainerError, match="has .* bytes, not"):
        data.own_shards(None)
    corrupt = bytearray(original)
    corrupt[len(corrupt) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(corrupt))
    with pytest.raises(TrainerError, match="is corrupt"):
        with shards_lib.corrupt_data_in_one_line(out):
            stream_items(data.train_examples(None, 8, 0, seed=0), data.total)
    with pytest.raises(TrainerError, match="1 of 6 shards are corrupt"):
        prep.verify(out)
    assert not os.path.exists(path + ".json")  # a rerun rewrites it
    assert prep.prepare(out, lm_settings(corpus))["shards"] == 1
    prep.verify(out)
    assert json.load(open(path + ".json"))["sha256"] == m["splits"]["train"]["shards"][0]["sha256"]
