"""Documents -> train/validation/test splits -> token streams -> next-token sequences
-> resumable, replica-exact tf.data pipelines.

* Splits: whole documents, shuffled with a fixed seed (0, independent of
  `--seed`); validation and test each get `eval_fraction` of the documents
  (at least one each), the rest is training text.
* Tokenizers: ``word`` (the `vocab_size` most frequent lowercased words of the
  training split, split on ``\\w+|[^\\w\\s]``; others -> [UNK]) or
  ``wordpiece`` (the project's WordPiece learner and KerasHub's BertTokenizer,
  as bert_pretrain uses them). Either vocabulary starts with the special tokens
  of `trainers.common.text.vocab` and is learned from the training split only.
* Each split's documents are tokenized and concatenated, each followed by the
  document separator [SEP], and cut into windows of ``seq_length + 1`` tokens
  with stride ``seq_length``: inputs ``w[:-1]``, targets ``w[1:]``, so every
  token of the stream but the first is a target exactly once.
* Training order: global example position ``p`` (batch ``p // G``) reads
  window ``index_shuffle(p % n, seed=[seed, p // n])``: a fresh permutation per
  epoch, a pure function of (seed, position), so a resumed run skips to
  ``start_batch * G`` at no cost and any number of workers/replicas cut the
  same global batches (`trainers.common.inputs.per_replica`).
* Evaluation: the held-out windows once, in order, the last global batch
  filled with weight-0 copies, so the reported loss is over the split exactly.
* Fixed training windows (``--fixed_train_examples``, the optimisation-speed metric):
  `inputs.fixed_indices` picks N windows evenly spaced over the training windows, the same
  for every optimizer and seed, evaluated in order like the held-out split.
* Training subset (``--train_windows=N``): training reads only those evenly spaced N
  windows (with ``--global_batch_size=N`` every step is the full, deterministic
  gradient of that set: the noise-free cell of docs/evidence.md).
* Frequency buckets (``--frequency_buckets=K``): the vocabulary ranked by its count
  among the training targets and cut into K buckets of about equal target mass
  (`frequency_buckets`), bucket 0 the rarest; each evaluation reports the loss per
  bucket (Kunstner et al. 2024's training loss per frequency group).
* Prepared shards (``--data_dir``, `ShardedCausalLMData`): the windows
  `trainers.prepare_pretraining_data` cut with `token_stream` and `windows` from
  each shard's documents, streamed per input pipeline (see docs/data.md).
"""

import collections
import re

import numpy as np
import tensorflow as tf

from trainers.common.cli import TrainerError
from trainers.common.inputs import fixed_indices, padded_rows, per_replica
from trainers.common.text import corpus as corpus_lib
from trainers.common.text import shards as shards_lib
from trainers.common.text.vocab import SPECIAL_TOKENS, make_tokenizer

TOKENIZERS = ("word", "wordpiece")
SEPARATOR = "[SEP]"
UNKNOWN = "[UNK]"
_WORD = re.compile(r"\w+|[^\w\s]")


def split_documents(documents, eval_fraction=0.2, seed=0):
    """{"train", "validation", "test"}: whole documents, disjoint, in corpus order.

    The common text split (`trainers.common.text.corpus.split_documents`): a fraction
    `eval_fraction` of the documents is held out and halved into validation and test,
    the training documents being the same as BERT's with the same fraction.
    """
    train, validation, test = corpus_lib.split_documents(
        documents, eval_fraction, seed=seed, with_test=True)
    splits = {"train": train, "validation": validation, "test": test}
    empty = [name for name, docs in splits.items() if not docs]
    if empty:
        raise TrainerError(
            f"the corpus has {len(documents)} document(s): too few for a non-empty "
            f"{' and '.join(empty)} split at --eval_fraction={eval_fraction}")
    return splits


# ---------------------------------------------------------------- tokenizers
def words(text):
    return _WORD.findall(text.lower())


def word_vocabulary(train_documents, vocab_size):
    """The special tokens, then the most frequent lowercased words of the training
    documents (ties by the word itself), `vocab_size` entries at most."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise TrainerError(f"--vocab_size={vocab_size} is too small")
    counts = collections.Counter(w for doc in train_documents for p in doc for w in words(p))
    for t in SPECIAL_TOKENS:
        counts.pop(t.lower(), None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return list(SPECIAL_TOKENS) + [w for w, _ in ranked[: vocab_size - len(SPECIAL_TOKENS)]]


def check_vocabulary(vocab, tokenizer):
    """A word vocabulary has no ``##`` pieces; a WordPiece one has (a resumed run's
    vocab.txt or --vocab_file must fit --tokenizer)."""
    pieces = sum(t.startswith("##") for t in vocab)
    if tokenizer == "word" and pieces > len(vocab) // 10:
        raise TrainerError("the vocabulary is a WordPiece one but --tokenizer=word "
                           "(use the run's own tokenizer, or a fresh --model_dir)")
    if tokenizer == "wordpiece" and pieces == 0:
        raise TrainerError("the vocabulary has no ## pieces but --tokenizer=wordpiece "
                           "(use the run's own tokenizer, or a fresh --model_dir)")


def encode_words(documents, vocab):
    """[int32 array per document] under the word vocabulary."""
    ids = {t: i for i, t in enumerate(vocab)}
    unk = ids[UNKNOWN]
    return [np.asarray([ids.get(w, unk) for p in doc for w in words(p)], np.int32)
            for doc in documents]


def encode_wordpiece(documents, vocab):
    """[int32 array per document] under KerasHub's BertTokenizer (lowercased, accents
    stripped, as `trainers.common.text.vocab.build_vocabulary` learned it)."""
    tokenizer = make_tokenizer(vocab)
    paragraphs = [p for doc in documents for p in doc]
    if not paragraphs:
        return [np.zeros([0], np.int32) for _ in documents]
    flats, lengths = [], []
    for ids in tf.data.Dataset.from_tensor_slices(paragraphs).batch(512).map(tokenizer):
        flats.append(ids.flat_values.numpy())
        lengths.append(ids.row_lengths().numpy())
    flat = np.concatenate(flats).astype(np.int32)
    para_ends = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
    doc_ends = np.cumsum([0] + [len(doc) for doc in documents])
    return [flat[para_ends[doc_ends[d]]:para_ends[doc_ends[d + 1]]]
            for d in range(len(documents))]


def encode(documents, vocab, tokenizer):
    if tokenizer == "word":
        return encode_words(documents, vocab)
    if tokenizer == "wordpiece":
        return encode_wordpiece(documents, vocab)
    raise TrainerError(f"unknown --tokenizer={tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")


def token_stream(encoded_documents, separator_id):
    """The documents' tokens concatenated, each document followed by the separator."""
    parts = []
    for ids in encoded_documents:
        parts.append(ids)
        parts.append(np.asarray([separator_id], np.int32))
    return np.concatenate(parts) if parts else np.zeros([0], np.int32)


def windows(stream, seq_length):
    """int32 [n, seq_length + 1]: ``stream[i*L : i*L + L + 1]`` for every whole window."""
    if seq_length < 2:
        raise TrainerError(f"--seq_length must be >= 2, got {seq_length}")
    n = max(len(stream) - 1, 0) // seq_length
    if n == 0:
        return np.zeros([0, seq_length + 1], np.int32)
    index = np.arange(n)[:, None] * seq_length + np.arange(seq_length + 1)[None, :]
    return stream[index].astype(np.int32)


def frequency_buckets(targets, vocab_size, num_buckets):
    """int32 [vocab_size]: each token's frequency bucket, 0 (rarest) .. num_buckets - 1.

    Tokens are ranked by their count in `targets` (ties by id, never-seen tokens first)
    and cut into `num_buckets` consecutive groups of about equal mass: token t goes to
    ``floor(K * (tokens strictly rarer than t in that order, counted with their
    occurrences) / total)``, so each bucket holds ~1/K of the target occurrences (one
    very frequent token may fill a bucket alone and leave the next one empty)."""
    counts = np.bincount(np.asarray(targets, np.int64).ravel(), minlength=vocab_size)
    order = np.lexsort((np.arange(vocab_size), counts))  # rarest first
    before = np.cumsum(counts[order]) - counts[order]
    bucket = np.zeros(vocab_size, np.int32)
    total = max(int(counts.sum()), 1)
    bucket[order] = np.minimum(before * num_buckets // total, num_buckets - 1)
    return bucket


# ---------------------------------------------------------------- pipelines
def train_position_index(position, num_windows, seed):
    """The window read at global example position `position` (int64 tensors)."""
    n = tf.constant(num_windows, tf.int64)
    epoch = position // n
    return tf.random.experimental.index_shuffle(
        position % n, seed=tf.stack([tf.constant(seed, tf.int64), epoch]), max_index=n - 1)


def ordered_dataset(table, input_context, global_batch_size):
    """`table`'s rows once, in order, as per-replica batches; the last global batch is
    filled with weight-0 copies (so a metric is over the rows exactly); repeated."""
    rows = tf.constant(table)
    ds = padded_rows(len(table), global_batch_size).map(
        lambda i, w: {"tokens": tf.gather(rows, i), "weights": w}).repeat()
    return per_replica(ds, input_context, global_batch_size).prefetch(tf.data.AUTOTUNE)


class CausalLMData:
    """Next-token pipelines over fixed windows (train: shuffled per epoch, eval: in order).

    `train_windows` > 0 keeps only that many evenly spaced training windows."""

    def __init__(self, train_windows, eval_windows, seed, train_subset=0):
        self.train_windows = np.asarray(train_windows, np.int32)
        if train_subset:
            self.train_windows = self.train_windows[
                fixed_indices(len(self.train_windows), train_subset)]
        self.eval_windows = np.asarray(eval_windows, np.int32)
        self.seed = int(seed)

    def fixed_train_windows(self, count):
        return self.train_windows[fixed_indices(len(self.train_windows), count)]

    def fixed_train_dataset(self, input_context, global_batch_size, count):
        return ordered_dataset(self.fixed_train_windows(count), input_context,
                               global_batch_size)

    def fixed_train_steps(self, global_batch_size, count):
        return -(-len(self.fixed_train_windows(count)) // global_batch_size)

    def target_buckets(self, vocab_size, num_buckets):
        return frequency_buckets(self.train_windows[:, 1:], vocab_size, num_buckets)

    def check_sizes(self, eval_split):
        for name, w in (("training", self.train_windows), (eval_split, self.eval_windows)):
            if len(w) == 0:
                raise TrainerError(
                    f"the {name} split holds no sequence of --seq_length+1 tokens; use a "
                    f"larger corpus or a smaller --seq_length or --eval_fraction")

    def train_dataset(self, input_context, global_batch_size, start_batch=0):
        table = tf.constant(self.train_windows)
        n, seed = len(self.train_windows), self.seed
        ds = tf.data.Dataset.range(start_batch * global_batch_size, tf.int64.max).map(
            lambda p: {"tokens": tf.gather(table, train_position_index(p, n, seed)),
                       "weights": tf.constant(1.0, tf.float32)},
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return per_replica(ds, input_context, global_batch_size).prefetch(tf.data.AUTOTUNE)

    def eval_dataset(self, input_context, global_batch_size):
        return ordered_dataset(self.eval_windows, input_context, global_batch_size)

    def eval_steps(self, global_batch_size):
        return -(-len(self.eval_windows) // global_batch_size)


class ShardedCausalLMData:
    """The same windows streamed from prepared shards: each input pipeline reads its own
    shards (`shards_lib.ShardedExamples`); evaluation pads with weight-0 windows."""

    def __init__(self, data_dir, manifest, eval_split, seed, shuffle_buffer=10_000):
        self.train = shards_lib.ShardedExamples(data_dir, manifest, "train", shuffle_buffer)
        self.held = shards_lib.ShardedExamples(data_dir, manifest, eval_split)
        self.seed = int(seed)
        self._eval_pipelines = 1

    def check_sizes(self, eval_split):
        for name, data in (("training", self.train), (eval_split, self.held)):
            if data.total == 0:
                raise TrainerError(f"the prepared {name} split holds no sequence")

    def train_dataset(self, input_context, global_batch_size, start_batch=0):
        ds = self.train.train_examples(input_context, global_batch_size, start_batch, self.seed)
        ds = ds.map(lambda x: {"tokens": x["tokens"], "weights": tf.constant(1.0, tf.float32)})
        return shards_lib.pipeline_batches(ds, input_context, global_batch_size).prefetch(
            tf.data.AUTOTUNE)

    def eval_dataset(self, input_context, global_batch_size):
        self._eval_pipelines = shards_lib.pipeline_of(input_context)[1]
        pad_row = np.zeros([self.held.width], np.int32)
        ds = self.held.eval_examples(input_context, global_batch_size, pad_row)
        ds = ds.map(lambda x: {"tokens": x["tokens"], "weights": x["weight"]})
        return shards_lib.pipeline_batches(ds, input_context, global_batch_size).prefetch(
            tf.data.AUTOTUNE)

    def eval_steps(self, global_batch_size):
        return self.held.eval_steps(global_batch_size, self._eval_pipelines)

    def steps_per_epoch(self, global_batch_size):
        return max(1, self.train.total // global_batch_size)
