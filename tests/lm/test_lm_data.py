"""The causal LM's data: splits, vocabularies, next-token windows, and pipelines
that resume exactly and cut the same global batches for any number of pipelines.

In-process and small: no trainer runs, no download (the corpus is written here).
"""


import numpy as np
import pytest
import tensorflow as tf

from trainers.common.cli import TrainerError
from trainers.common.text.vocab import SPECIAL_TOKENS
from trainers.lm import data as lm_data

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
         "pi rho sigma tau upsilon phi chi psi omega").split()


def make_documents(n=20, seed=0):
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n):
        paras = [" ".join(rng.choice(WORDS, size=12)) + f" doc{d}." for _ in range(3)]
        docs.append(paras)
    return docs


def take(dataset, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset.take(n)]


def test_split_is_disjoint_whole_documents_and_fixed():
    docs = make_documents(20)
    splits = lm_data.split_documents(docs, 0.2, seed=0)
    assert [len(splits[k]) for k in ("train", "validation", "test")] == [16, 2, 2]
    keys = {k: {d[0] for d in v} for k, v in splits.items()}
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    assert keys["train"] | keys["validation"] | keys["test"] == {d[0] for d in docs}
    assert lm_data.split_documents(docs, 0.2, seed=0) == splits
    assert lm_data.split_documents(docs, 0.2, seed=1) != splits
    with pytest.raises(TrainerError):
        lm_data.split_documents(docs[:2])


def test_word_vocabulary_comes_from_train_only():
    docs = make_documents(20)
    splits = lm_data.split_documents(docs, 0.1)
    vocab = lm_data.word_vocabulary(splits["train"], 1000)
    assert tuple(vocab[: len(SPECIAL_TOKENS)]) == SPECIAL_TOKENS
    doc_words = lambda ds: {w for d in ds for p in d for w in lm_data.words(p)}  # noqa: E731
    held_only = (doc_words(splits["validation"]) | doc_words(splits["test"])) - doc_words(
        splits["train"])
    assert held_only and not held_only & set(vocab)  # the docN markers of held-out docs
    assert doc_words(splits["train"]) <= set(vocab)
    # Truncation keeps the most frequent words; held-out words map to [UNK].
    small = lm_data.word_vocabulary(splits["train"], len(SPECIAL_TOKENS) + 3)
    assert len(small) == len(SPECIAL_TOKENS) + 3 and set(small[-3:]) <= set(WORDS + ["."])
    unk = vocab.index("[UNK]")
    encoded = lm_data.encode_words(splits["test"], vocab)
    assert sum(int(np.sum(e == unk)) for e in encoded) == 3 * len(splits["test"])
    lm_data.check_vocabulary(vocab, "word")
    with pytest.raises(TrainerError):
        lm_data.check_vocabulary(vocab, "wordpiece")


def test_wordpiece_tokenizer_encodes_documents():
    from trainers.common.text.vocab import build_vocabulary

    docs = make_documents(6)
    vocab = build_vocabulary([p for d in docs for p in d], 80)
    lm_data.check_vocabulary(vocab, "wordpiece")
    encoded = lm_data.encode(docs, vocab, "wordpiece")
    assert len(encoded) == len(docs) and all(len(e) > 36 for e in encoded)
    # Per document, the same ids as tokenizing that document alone.
    alone = lm_data.encode(docs[3:4], vocab, "wordpiece")[0]
    np.testing.assert_array_equal(encoded[3], alone)


def test_windows_are_next_token_pairs_over_the_stream():
    encoded = [np.arange(1, 30, dtype=np.int32), np.arange(100, 120, dtype=np.int32)]
    stream = lm_data.token_stream(encoded, separator_id=3)
    assert len(stream) == 29 + 1 + 20 + 1 and stream[29] == 3 and stream[-1] == 3
    w = lm_data.windows(stream, 8)
    assert w.shape == ((len(stream) - 1) // 8, 9)
    inputs, targets = w[:, :-1], w[:, 1:]
    for i in range(len(w)):
        np.testing.assert_array_equal(inputs[i], stream[i * 8: i * 8 + 8])
        np.testing.assert_array_equal(targets[i], stream[i * 8 + 1: i * 8 + 9])
    # Every token after the first is a target exactly once (up to the cut tail).
    np.testing.assert_array_equal(targets.reshape(-1), stream[1: 1 + targets.size])
    assert lm_data.windows(stream[:5], 8).shape == (0, 9)


def small_data(n_train=37, n_eval=11, seed=5):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 1000, size=(n_train, 9)).astype(np.int32)
    train[:, 0] = np.arange(n_train)  # window i starts with i
    held = rng.integers(0, 1000, size=(n_eval, 9)).astype(np.int32)
    held[:, 0] = np.arange(n_eval)
    return lm_data.CausalLMData(train, held, seed)


def test_training_order_is_a_permutation_per_epoch_and_resumes_exactly():
    data = small_data()
    G = 8
    stream = take(data.train_dataset(None, G, 0), 20)
    ids = np.concatenate([b["tokens"][:, 0] for b in stream])
    epochs = [ids[e * 37:(e + 1) * 37] for e in range(4)]
    for e in epochs:
        assert sorted(e) == list(range(37))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
    assert all(np.all(b["weights"] == 1) for b in stream)
    for k in (1, 7, 13):
        resumed = take(data.train_dataset(None, G, k), 20 - k)
        for a, b in zip(stream[k:], resumed):
            np.testing.assert_array_equal(a["tokens"], b["tokens"])
    other = take(small_data(seed=6).train_dataset(None, G, 0), 1)[0]
    assert not np.array_equal(other["tokens"], stream[0]["tokens"])


@pytest.mark.parametrize("pipelines,replicas", [(1, 2), (2, 2), (2, 4)])
def test_pipelines_and_replicas_make_up_the_same_global_batches(pipelines, replicas):
    data = small_data()
    G = 8
    whole = take(data.train_dataset(None, G, 3), 4)
    per_replica_batches = replicas // pipelines
    parts = []
    for pid in range(pipelines):
        ctx = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pid,
                                         num_replicas_in_sync=replicas)
        parts.append(take(data.train_dataset(ctx, G, 3), 4 * per_replica_batches))
    for step in range(4):
        rows = np.concatenate([
            parts[pid][step * per_replica_batches + r]["tokens"]
            for pid in range(pipelines) for r in range(per_replica_batches)])
        np.testing.assert_array_equal(rows, whole[step]["tokens"])


def test_eval_covers_the_held_out_split_once_with_zero_weight_filler():
    data = small_data(n_eval=11)
    G = 4
    steps = data.eval_steps(G)
    assert steps == 3
    batches = take(data.eval_dataset(None, G), steps)
    first = np.concatenate([b["tokens"][:, 0] for b in batches])
    weights = np.concatenate([b["weights"] for b in batches])
    assert list(first[weights == 1]) == list(range(11)) and weights.sum() == 11
    again = take(data.eval_dataset(None, G), 2 * steps)[steps:]  # repeated identically
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])


def test_task_learns_vocabulary_from_train_saves_and_reuses_it(tmp_path):
    from trainers.lm.task import CausalLMTask

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = make_documents(20)
    (corpus / "a.txt").write_text("\n\n".join("\n".join(d) for d in docs) + "\n")
    from trainers.common import config
    from trainers.lm.config import LMConfig

    model_dir = tmp_path / "run"
    model_dir.mkdir()
    f = config.ExperimentConfig(
        "test", config.RunConfig(model_dir=str(model_dir)), config.OptimizerConfig(),
        LMConfig(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32, dropout=0.0,
                 corpus=f"files:{corpus}/*.txt", eval_fraction=0.2, vocab_size=500,
                 seq_length=8))
    task = CausalLMTask(f, str(model_dir), True)
    saved = (model_dir / "vocab.txt").read_text().split()
    assert saved == task.vocab
    splits = lm_data.split_documents(docs, 0.2)
    assert task.vocab == lm_data.word_vocabulary(splits["train"], 500)
    assert task.facts["eval_documents"] == 2 and task.facts["eval_unk_rate"] > 0
    # The test split is another set of documents; a resumed run reuses vocab.txt.
    (corpus / "b.txt").write_text("zzz yyy xxx www vvv uuu ttt sss.\n\nqqq ppp ooo nnn.\n")
    again = CausalLMTask(f.replace(task={"eval_split": "test"}), str(model_dir), True)
    assert again.vocab == task.vocab
    assert again.facts["eval_split"] == "test"
