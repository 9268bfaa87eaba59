"""Documents -> fixed-length token segments -> masked-LM tf.data pipelines.

Segments: each document's paragraphs are tokenized and concatenated, cut
into pieces of ``seq_length - 2`` tokens, and framed as
``[CLS] piece [SEP] [PAD]...`` (one segment per example, no next-sentence
task; the paper's numbers are MLM loss and accuracy). Pieces shorter than
`min_tokens` (a document's tail) are dropped.

In-memory pipelines (`MaskedLMData`) are functions of (seed, global example
index) only, so they are deterministic, skip cheaply to a resume position, and
build identical global batches however many workers and replicas read them (see
`per_replica`). Streamed pipelines (`ShardedMaskedLMData`, ``--data_dir``) read
the segments `trainers.prepare_pretraining_data` wrote with `segment_documents`;
each input pipeline reads its own shards and masks only its own examples, with
the seed of the example's global id and epoch (the same masks on any number of
hosts). See docs/data.md.
"""

import numpy as np
import tensorflow as tf

from trainers.common.errors import TrainerError
from trainers.bert.masking import example_seed, mask_sequence
from trainers.common.inputs import fixed_indices, padded_rows, per_replica
from trainers.common.text import shards as shards_lib
from trainers.common.text.vocab import SPECIAL_TOKENS


def segment_documents(documents, tokenizer, seq_length, min_tokens=8):
    """int32 array [num_segments, seq_length] of framed, padded segments."""
    if seq_length < 8:
        raise TrainerError(f"--seq_length must be >= 8, got {seq_length}")
    cls_id = tokenizer.token_to_id("[CLS]")
    sep_id = tokenizer.token_to_id("[SEP]")
    pad_id = tokenizer.token_to_id("[PAD]")
    piece = seq_length - 2
    paragraphs = [p for doc in documents for p in doc]
    if not paragraphs:
        return np.zeros([0, seq_length], np.int32)
    # Inside tf.data the tokenizer returns ragged tensors (eagerly, Python lists).
    flats, row_lengths = [], []
    for ids in tf.data.Dataset.from_tensor_slices(paragraphs).batch(512).map(tokenizer):
        flats.append(ids.flat_values.numpy())
        row_lengths.append(ids.row_lengths().numpy())
    flat = np.concatenate(flats)
    lengths = np.concatenate(row_lengths)
    doc_sizes = np.cumsum([0] + [len(doc) for doc in documents])
    para_ends = np.cumsum(np.concatenate([[0], lengths]))
    segments = []
    for d in range(len(documents)):
        start, end = para_ends[doc_sizes[d]], para_ends[doc_sizes[d + 1]]
        tokens = flat[start:end]
        for i in range(0, len(tokens), piece):
            chunk = tokens[i : i + piece]
            if len(chunk) < min_tokens:
                continue
            row = np.full([seq_length], pad_id, np.int32)
            row[0] = cls_id
            row[1 : 1 + len(chunk)] = chunk
            row[1 + len(chunk)] = sep_id
            segments.append(row)
    if not segments:
        return np.zeros([0, seq_length], np.int32)
    return np.stack(segments)


class MaskedLMData:
    """Masked-LM pipelines over fixed segments (train: shuffled, eval: fixed order)."""

    def __init__(self, train_segments, eval_segments, vocab, seed, max_predictions,
                 mask_rate=0.15):
        self.train_segments = train_segments
        self.eval_segments = eval_segments
        self.seed = seed
        special = [vocab.index(t) for t in SPECIAL_TOKENS]
        self._mask_kwargs = dict(
            mask_token_id=vocab.index("[MASK]"), special_token_ids=special,
            vocab_size=len(vocab), max_predictions=max_predictions, mask_rate=mask_rate)
        self.pad_id = vocab.index("[PAD]")

    def check_sizes(self, global_batch_size):
        for name, segs in (("training", self.train_segments), ("held-out", self.eval_segments)):
            if len(segs) < global_batch_size:
                raise TrainerError(
                    f"the {name} split has {len(segs)} sequences, fewer than one batch "
                    f"(--global_batch_size={global_batch_size}); use a larger corpus or "
                    f"a smaller batch or --seq_length")

    def mask(self, tokens, mask_index, seed, weight=None):
        """One segment, masked with the seed of `mask_index`; `weight` (0 for padding
        examples of an evaluation) scales its mask weights."""
        ex = mask_sequence(tokens, example_seed(seed, mask_index), **self._mask_kwargs)
        ex["padding_mask"] = tokens != self.pad_id
        ex["segment_ids"] = tf.zeros_like(tokens)
        if weight is not None:
            ex["mask_weights"] = ex["mask_weights"] * weight
        return ex

    def _example(self, segments, segment_index, mask_index, seed):
        """Segment `segment_index`, masked with the seed of stream position `mask_index`."""
        return self.mask(tf.gather(segments, segment_index), mask_index, seed)

    def train_dataset(self, input_context, global_batch_size, start_batch=0):
        segments = tf.constant(self.train_segments)
        n = len(self.train_segments)
        order = (tf.data.Dataset.range(n)
                 .shuffle(n, seed=self.seed, reshuffle_each_iteration=True)
                 .repeat()
                 .enumerate()
                 .skip(start_batch * global_batch_size))
        # The masks depend on the stream position i, so each epoch masks anew.
        ds = order.map(lambda i, j: self._example(segments, j, i, self.seed),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return per_replica(ds, input_context, global_batch_size).prefetch(tf.data.AUTOTUNE)

    def eval_dataset(self, input_context, global_batch_size):
        segments = tf.constant(self.eval_segments)
        ds = tf.data.Dataset.range(len(self.eval_segments)).repeat().map(
            lambda i: self._example(segments, i, i, self.seed + 1_000_003),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return per_replica(ds, input_context, global_batch_size).prefetch(tf.data.AUTOTUNE)

    def eval_steps(self, global_batch_size):
        return -(-len(self.eval_segments) // global_batch_size)

    # Masks of the fixed training examples: one seed for every run (not --seed), so every
    # optimizer and seed is scored on the same positions.
    FIXED_TRAIN_MASK_SEED = 2_000_003

    def fixed_train_indices(self, count):
        return fixed_indices(len(self.train_segments), count)

    def fixed_train_dataset(self, input_context, global_batch_size, count):
        """`count` evenly spaced training segments, masked with one fixed seed, in order;
        the last global batch filled with weight-0 copies; repeated."""
        segments = tf.constant(self.train_segments[self.fixed_train_indices(count)])
        ds = padded_rows(int(segments.shape[0]), global_batch_size).map(
            lambda i, w: self.mask(tf.gather(segments, i), i, self.FIXED_TRAIN_MASK_SEED,
                                   weight=w),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).repeat()
        return per_replica(ds, input_context, global_batch_size).prefetch(tf.data.AUTOTUNE)

    def fixed_train_steps(self, global_batch_size, count):
        return -(-len(self.fixed_train_indices(count)) // global_batch_size)


class ShardedMaskedLMData(MaskedLMData):
    """The same masked-LM examples streamed from prepared shards (``--data_dir``).

    Training: each pipeline's `shards_lib.ShardedExamples` stream, masked after the
    host's share is taken, with the seed of ``epoch * train_examples + id`` (dynamic
    masking: each epoch masks anew). Evaluation: each pipeline's held-out shards in
    order, masked by id, padded with weight-0 examples to a whole number of batches.
    """

    def __init__(self, data_dir, manifest, eval_split, vocab, seed, max_predictions,
                 mask_rate=0.15, shuffle_buffer=10_000):
        super().__init__(None, None, vocab, seed, max_predictions, mask_rate)
        self.train = shards_lib.ShardedExamples(data_dir, manifest, "train", shuffle_buffer)
        self.held = shards_lib.ShardedExamples(data_dir, manifest, eval_split)
        self.eval_split = eval_split
        self._eval_pipelines = 1

    def check_sizes(self, global_batch_size):
        for name, data in (("training", self.train), (self.eval_split, self.held)):
            if data.total < global_batch_size:
                raise TrainerError(
                    f"the prepared {name} split has {data.total} sequences, fewer than one "
                    f"batch (--global_batch_size={global_batch_size})")

    def train_dataset(self, input_context, global_batch_size, start_batch=0):
        total = self.train.total
        ds = self.train.train_examples(input_context, global_batch_size, start_batch, self.seed)
        ds = ds.map(lambda x: self.mask(x["tokens"], x["epoch"] * total + x["id"], self.seed),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return shards_lib.pipeline_batches(ds, input_context, global_batch_size).prefetch(
            tf.data.AUTOTUNE)

    def eval_dataset(self, input_context, global_batch_size):
        self._eval_pipelines = shards_lib.pipeline_of(input_context)[1]
        pad_row = np.full([self.held.width], self.pad_id, np.int32)
        ds = self.held.eval_examples(input_context, global_batch_size, pad_row)
        ds = ds.map(lambda x: self.mask(x["tokens"], x["id"], self.seed + 1_000_003,
                                        x["weight"]),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return shards_lib.pipeline_batches(ds, input_context, global_batch_size).prefetch(
            tf.data.AUTOTUNE)

    def eval_steps(self, global_batch_size):
        return self.held.eval_steps(global_batch_size, self._eval_pipelines)
