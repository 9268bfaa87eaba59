"""BERT's masking rule, checked by counting over many sequences."""

import numpy as np
import pytest
import tensorflow as tf

from trainers.bert.masking import example_seed, mask_sequence

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, UNK, CLS, SEP, MASK]
VOCAB = 1000
L = 64


def make_sequence(rng, length):
    """[CLS] words [SEP] [PAD]... with some [UNK]s among the words."""
    ids = np.full([L], PAD, np.int32)
    words = rng.integers(5, VOCAB, size=length - 2)
    words[rng.random(length - 2) < 0.05] = UNK
    ids[0], ids[1 : length - 1], ids[length - 1] = CLS, words, SEP
    return ids


def run_many(n=3000, max_predictions=20):
    rng = np.random.default_rng(0)
    seqs = np.stack([make_sequence(rng, int(rng.integers(10, L + 1))) for _ in range(n)])
    ds = tf.data.Dataset.from_tensor_slices((seqs, np.arange(n, dtype=np.int64))).map(
        lambda ids, i: mask_sequence(ids, example_seed(7, i), mask_token_id=MASK,
                                     special_token_ids=SPECIAL, vocab_size=VOCAB,
                                     max_predictions=max_predictions))
    return list(zip(seqs, ds.as_numpy_iterator()))


@pytest.fixture(scope="module")
def many():
    return run_many()


def test_labels_weights_and_positions_align(many):
    for ids, out in many:
        w = out["mask_weights"]
        n = int(w.sum())
        assert set(np.unique(w)) <= {0.0, 1.0}
        assert np.all(w[:n] == 1) and np.all(w[n:] == 0)  # real predictions first
        pos = out["mask_positions"][:n]
        assert np.all(np.diff(pos) > 0)  # sorted, distinct
        np.testing.assert_array_equal(out["mask_ids"][:n], ids[pos])  # labels = originals
        assert np.all(out["mask_positions"][n:] == 0) and np.all(out["mask_ids"][n:] == 0)
        unchanged = np.setdiff1d(np.arange(L), pos)
        np.testing.assert_array_equal(out["token_ids"][unchanged], ids[unchanged])


def test_special_tokens_never_selected(many):
    for ids, out in many:
        n = int(out["mask_weights"].sum())
        assert not np.isin(ids[out["mask_positions"][:n]], SPECIAL).any()


def test_rate_is_15_percent_of_candidates_capped(many):
    for ids, out in many:
        candidates = int((~np.isin(ids, SPECIAL)).sum())
        expected = min(20, max(1, int(np.round(0.15 * candidates))))
        assert out["mask_weights"].sum() == expected


def test_80_10_10(many):
    masked = random = kept = 0
    for ids, out in many:
        n = int(out["mask_weights"].sum())
        pos = out["mask_positions"][:n]
        new, old = out["token_ids"][pos], ids[pos]
        masked += int((new == MASK).sum())
        kept += int((new == old).sum())
        random += int(((new != MASK) & (new != old)).sum())
        # a random replacement is a normal word, never a special token
        assert not np.isin(new[(new != MASK) & (new != old)], SPECIAL).any()
    total = masked + random + kept
    assert total > 10000
    # A random draw equal to the original counts as "kept": +1/995 of 10%.
    np.testing.assert_allclose(masked / total, 0.8, atol=0.01)
    np.testing.assert_allclose(random / total, 0.1, atol=0.01)
    np.testing.assert_allclose(kept / total, 0.1, atol=0.01)


def test_positions_are_uniform_over_candidates():
    # One fixed sequence, many seeds: every candidate position is picked equally often.
    ids = make_sequence(np.random.default_rng(1), L)
    counts = np.zeros(L)
    ds = tf.data.Dataset.range(2000).map(lambda i: mask_sequence(
        ids, example_seed(3, i), mask_token_id=MASK, special_token_ids=SPECIAL,
        vocab_size=VOCAB, max_predictions=20))
    for out in ds.as_numpy_iterator():
        n = int(out["mask_weights"].sum())
        counts[out["mask_positions"][:n]] += 1
    candidates = ~np.isin(ids, SPECIAL)
    freq = counts[candidates] / 2000
    expected = min(20, round(0.15 * candidates.sum())) / candidates.sum()
    np.testing.assert_allclose(freq.mean(), expected, rtol=1e-6)
    assert np.abs(freq - expected).max() < 0.05
    assert counts[~candidates].sum() == 0


def test_deterministic_per_seed_and_index():
    ids = tf.constant(make_sequence(np.random.default_rng(2), 50))
    kw = dict(mask_token_id=MASK, special_token_ids=SPECIAL, vocab_size=VOCAB,
              max_predictions=20)
    a = mask_sequence(ids, example_seed(5, 11), **kw)
    b = mask_sequence(ids, example_seed(5, 11), **kw)
    c = mask_sequence(ids, example_seed(5, 12), **kw)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["mask_positions"], c["mask_positions"])
