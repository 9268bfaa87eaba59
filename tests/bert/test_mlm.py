"""Segments and the masked-LM pipeline: framing, sharding, resume position."""

import numpy as np
import pytest

from trainers.bert import mlm
from trainers.common.text.corpus import split_documents
from trainers.common.text.vocab import SPECIAL_TOKENS, make_tokenizer

VOCAB = list(SPECIAL_TOKENS) + [f"w{i}" for i in range(95)]


class FakeContext:
    """What `distribute_datasets_from_function` passes (tf.distribute.InputContext)."""

    def __init__(self, pipelines, pid, replicas):
        self.num_input_pipelines, self.input_pipeline_id = pipelines, pid
        self.num_replicas_in_sync = replicas

    def get_per_replica_batch_size(self, global_batch_size):
        return global_batch_size // self.num_replicas_in_sync


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    segs = rng.integers(5, 100, size=(50, 16)).astype(np.int32)
    segs[:, 0], segs[:, -1] = 2, 3
    segs[::3, 10:] = 0  # some padding
    return mlm.MaskedLMData(segs, segs[:20], VOCAB, seed=4, max_predictions=3)


def batches(ds, n):
    return [b for _, b in zip(range(n), ds.as_numpy_iterator())]


def test_resume_position_continues_the_stream(data):
    full = batches(data.train_dataset(None, 8, start_batch=0), 9)  # crosses an epoch (50/8)
    resumed = batches(data.train_dataset(None, 8, start_batch=6), 3)
    for a, b in zip(full[6:], resumed):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_workers_and_replicas_make_up_the_global_batch(data):
    (one,) = batches(data.train_dataset(None, 8), 1)
    # 2 workers x 2 replicas: each worker yields 2 per-replica batches of 2 per step.
    parts = []
    for pid in range(2):
        parts += batches(data.train_dataset(FakeContext(2, pid, 4), 8), 2)
    for k in one:
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), one[k])


def test_epochs_are_reshuffled_and_remasked(data):
    def originals(batch):
        tokens = batch["token_ids"].copy()
        for row, pos, ids, w in zip(tokens, batch["mask_positions"], batch["mask_ids"],
                                    batch["mask_weights"]):
            n = int(w.sum())
            row[pos[:n]] = ids[:n]
        return tokens

    a, b = (originals(x) for x in batches(data.train_dataset(None, 50), 2))  # 2 epochs
    key = lambda rows: sorted(map(tuple, rows.tolist()))  # noqa: E731
    assert key(a) == key(b) == key(data.train_segments)  # each epoch: every segment once
    assert not np.array_equal(a, b)  # in another order


def test_padding_mask_and_segments(data):
    (b,) = batches(data.eval_dataset(None, 20), 1)
    np.testing.assert_array_equal(b["padding_mask"], data.eval_segments != 0)
    assert not b["segment_ids"].any()


def test_segment_documents_frames_and_keeps_documents_apart():
    tokenizer = make_tokenizer(SPECIAL_TOKENS + ("alpha", "beta", "gamma", "."))
    docs = [["alpha beta gamma . alpha beta gamma ."], ["gamma gamma gamma gamma gamma beta"]]
    segs = mlm.segment_documents(docs, tokenizer, seq_length=10, min_tokens=3)
    a, b, g, dot = (tokenizer.token_to_id(t) for t in ("alpha", "beta", "gamma", "."))
    np.testing.assert_array_equal(segs, [
        [2, a, b, g, dot, a, b, g, dot, 3],
        [2, g, g, g, g, g, b, 3, 0, 0],
    ])


def test_too_small_corpus_is_reported(data):
    from trainers.common.errors import TrainerError

    with pytest.raises(TrainerError, match="fewer than one batch"):
        data.check_sizes(64)


def test_split_by_document_is_fixed_and_disjoint():
    docs = [[f"doc {i}"] for i in range(40)]
    train, held = split_documents(docs, 0.1, seed=0)
    assert len(held) == 4 and len(train) == 36
    assert not {d[0] for d in train} & {d[0] for d in held}
    assert split_documents(docs, 0.1, seed=0) == (train, held)


def test_validation_and_test_split_the_held_out_documents_only():
    docs = [[f"doc {i}"] for i in range(40)]
    train, held = split_documents(docs, 0.25, seed=0)
    train3, validation, test = split_documents(docs, 0.25, seed=0, with_test=True)
    assert train3 == train  # the training documents do not depend on the test split
    assert len(validation) == 5 and len(test) == 5
    assert sorted(validation + test) == sorted(held)
    assert split_documents(docs, 0.25, seed=0, with_test=True) == (train, validation, test)
    _, validation, test = split_documents(docs[:12], 0.1, seed=0, with_test=True)
    assert len(validation) == 1 and test == []


def test_tokenizer_normalises_like_the_learned_vocabulary():
    # build_vocabulary learns an uncased vocabulary from accent-stripped text; the
    # tokenizer must strip accents too, or every accented word becomes [UNK].
    from trainers.common.text.vocab import build_vocabulary

    text = ["Le café du résumé est naïf. The cafe sells a resume of naive art."] * 50
    vocab = build_vocabulary(text, 60)
    tokenizer = make_tokenizer(vocab)
    ids = np.asarray(tokenizer("Café résumé naïf")).tolist()
    assert vocab.index("[UNK]") not in ids
    assert ids == np.asarray(tokenizer("cafe resume naif")).tolist()


def test_fixed_training_examples_are_the_same_for_every_seed_and_padded_with_weight_0(data):
    other = mlm.MaskedLMData(data.train_segments, data.eval_segments, VOCAB, seed=99,
                             max_predictions=3)
    count, batch = 11, 4
    assert data.fixed_train_steps(batch, count) == 3
    ours = batches(data.fixed_train_dataset(None, batch, count), 3)
    theirs = batches(other.fixed_train_dataset(None, batch, count), 3)
    for a, b in zip(ours, theirs):  # --seed changes neither the segments nor the masks
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    rows = np.concatenate([b["token_ids"] for b in ours])
    masked = np.concatenate([b["mask_weights"] for b in ours]).sum(axis=1)
    # 11 evenly spaced training segments, then a weight-0 copy fills the last batch.
    index = np.floor(np.arange(count) * (50 / count)).astype(int)
    originals = data.train_segments[index]
    for row, orig, b in zip(rows[:count], originals, [x for b in ours for x in b["mask_positions"]]):
        keep = np.ones(len(orig), bool)
        keep[b] = False
        np.testing.assert_array_equal(row[keep], orig[keep])
    assert (masked[:count] > 0).all() and masked[count:].sum() == 0
    # The same fixed examples on every evaluation (repeated, not reshuffled).
    again = batches(data.fixed_train_dataset(None, batch, count), 6)[3:]
    for a, b in zip(ours, again):
        np.testing.assert_array_equal(a["token_ids"], b["token_ids"])
