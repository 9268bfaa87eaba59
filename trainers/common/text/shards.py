"""Prepared pretraining data: sharded TFRecord files + a JSON manifest, written by
`trainers.prepare_pretraining_data` and streamed by the text trainers (``--data_dir``).

Layout of a prepared directory (see docs/data.md)::

    manifest.json                       what the shards hold (written last)
    preparation.json                    the preparation's settings (written first)
    vocab.txt                           the vocabulary, one token a line
    train-00003-of-00008.tfrecord       shard 3 of the training split
    train-00003-of-00008.tfrecord.json  its record: examples, tokens, bytes, sha256
    validation-..., test-...            the held-out splits, sharded the same way

Each record is a `tf.train.Example` with one feature ``token_ids`` (int64 list of
``width`` ids: ``seq_length`` for the masked-LM layout, ``seq_length + 1`` for the
causal-LM layout). A shard is written to a temporary name and renamed, then its
``.json`` is written (also atomically): a shard with a ``.json`` is finished.

Streaming (`ShardedExamples`): input pipeline ``p`` of ``P`` reads only the shards
``i`` with ``i % P == p``. Its epoch ``e`` reads those files in an order permuted
by ``(seed, e)``, interleaved record by record, through a shuffle buffer of
bounded size (see below); every example carries its global id
(the shard's offset + its record number) and its epoch, from which the task draws
its masks. The stream is a pure function of (seed, P, p), so a resumed run skips
to ``start_batch * G / P`` examples of its pipeline: whole epochs at no cost
(their sizes are in the manifest), then the records of the current epoch (raw
bytes, before parsing and masking).

Shuffling is bounded and stateless: each epoch's interleaved records are cut into
blocks of ``shuffle_buffer`` records, each block permuted with a seed of (seed,
pipeline, epoch, block), then passed through a ``shuffle_buffer``-sized tf.data
shuffle with a fixed seed (deterministic, and restarted each epoch).
"""

import contextlib
import hashlib
import json
import os

from trainers.common import files
from trainers.common.errors import TrainerError, first_line
from trainers.common.files import write_text_atomically

FORMAT = "acclip_tf.pretraining_shards"
VERSION = 1
LAYOUTS = ("mlm", "causal_lm")
SPLITS = ("train", "validation", "test")
FEATURE = "token_ids"
MANIFEST = "manifest.json"
SETTINGS = "preparation.json"
VOCAB = "vocab.txt"


# ---------------------------------------------------------------- names and hashes
def shard_name(split, index, num_shards):
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def vocab_text(vocab):
    return "\n".join(vocab) + "\n"


def vocab_hash(vocab):
    """sha256 of the vocabulary as `vocab.save_vocabulary` writes it."""
    return hashlib.sha256(vocab_text(vocab).encode("utf-8")).hexdigest()


def file_sha256(path):
    digest = hashlib.sha256()
    with files.open_file(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path, record):
    write_text_atomically(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def read_json(path, what):
    """A JSON file, local or on any file system TF reads (gs://...), or a TrainerError."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return json.loads(f.read())
    except (FileNotFoundError, tf.errors.NotFoundError):
        raise TrainerError(f"{what} {path} does not exist")
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise TrainerError(f"{what} {path} is unreadable: {first_line(e)}")


def read_vocabulary(path):
    """One token a line (as `vocab.save_vocabulary` writes it), through tf.io.gfile."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return [line.rstrip("\n") for line in f.read().splitlines(True) if line.strip()]
    except (FileNotFoundError, tf.errors.NotFoundError):
        raise TrainerError(f"vocabulary file {path} does not exist")


def file_size(path):
    """Bytes of `path` (local or gs://...), or None when it does not exist."""
    import tensorflow as tf

    try:
        return tf.io.gfile.stat(path).length
    except tf.errors.NotFoundError:
        return None


# ---------------------------------------------------------------- writing
def write_shard(path, rows):
    """Write int rows (each of the same width) as a TFRecord shard, through a temporary
    name and a rename; returns ``{"file", "examples", "bytes", "sha256"}``."""
    import tensorflow as tf

    tmp = f"{path}.tmp{os.getpid()}"
    count = 0
    with tf.io.TFRecordWriter(tmp) as writer:
        for row in rows:
            example = tf.train.Example(features=tf.train.Features(feature={
                FEATURE: tf.train.Feature(int64_list=tf.train.Int64List(value=row))}))
            writer.write(example.SerializeToString())
            count += 1
    record = {"file": files.basename(path), "examples": count,
              "bytes": files.size(tmp), "sha256": file_sha256(tmp)}
    files.rename(tmp, path)
    return record


def shard_done(path):
    """The record of a finished shard (its .json and a file of the recorded size), or None."""
    info = path + ".json"
    if not (files.exists(info) and files.exists(path)):
        return None
    try:
        record = json.loads(files.read_text(info))
    except (OSError, ValueError):
        return None
    return record if files.size(path) == record.get("bytes") else None


def read_records(path, width):
    """All rows of one shard as a list of int lists (tests and --verify)."""
    import tensorflow as tf

    spec = {FEATURE: tf.io.FixedLenFeature([width], tf.int64)}
    rows = []
    for raw in tf.data.TFRecordDataset(path):
        rows.append(tf.io.parse_single_example(raw, spec)[FEATURE].numpy().tolist())
    return rows


# ---------------------------------------------------------------- the manifest
def load_manifest(data_dir):
    """The manifest of a prepared directory, checked for completeness (one-line errors)."""
    import tensorflow as tf

    if not data_dir or not tf.io.gfile.isdir(data_dir):
        raise TrainerError(f"--data_dir={data_dir} is not a directory")
    path = files.join(data_dir, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise TrainerError(f"--data_dir={data_dir} has no {MANIFEST}: prepare it with "
                           "python -m trainers.prepare_pretraining_data (all shards)")
    manifest = read_json(path, "the manifest")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise TrainerError(f"{path} is not a version-{VERSION} {FORMAT} manifest")
    return manifest


def check_manifest(manifest, data_dir, *, layout, seq_length, tokenizer=None, program):
    """Refuse data the trainer cannot use: another layout, seq_length or tokenizer."""
    where = f"--data_dir={data_dir}"
    if manifest["layout"] != layout:
        raise TrainerError(f"{where} holds {manifest['layout']} data; {program} reads "
                           f"{layout} data (prepare with --layout={layout})")
    if manifest["seq_length"] != seq_length:
        raise TrainerError(f"{where} was prepared with --seq_length={manifest['seq_length']}, "
                           f"not --seq_length={seq_length}")
    if tokenizer is not None and manifest["tokenizer"]["name"] != tokenizer:
        raise TrainerError(f"{where} was prepared with --tokenizer="
                           f"{manifest['tokenizer']['name']}, not --tokenizer={tokenizer}")


def check_vocabulary(manifest, data_dir, vocab, source):
    """The vocabulary the trainer uses must be the one the data was tokenized with."""
    if vocab_hash(vocab) != manifest["vocab"]["sha256"]:
        raise TrainerError(
            f"the vocabulary {source} (sha256 {vocab_hash(vocab)[:12]}) is not the one "
            f"--data_dir={data_dir} was tokenized with (sha256 "
            f"{manifest['vocab']['sha256'][:12]}); use {files.join(data_dir, VOCAB)} "
            "or a fresh --model_dir")


def open_prepared(data_dir, *, layout, seq_length, program, vocab_file, model_dir,
                  is_chief, tokenizer=None):
    """(manifest, vocabulary) of a prepared directory, checked against the trainer's
    flags: layout, seq_length, tokenizer, and the vocabulary's hash (--vocab_file, or a
    resumed run's model_dir/vocab.txt, must be the data's). The chief saves the
    vocabulary as model_dir/vocab.txt (the export uses it)."""
    from trainers.common.text import vocab as vocab_lib

    manifest = load_manifest(data_dir)
    check_manifest(manifest, data_dir, layout=layout, seq_length=seq_length,
                   tokenizer=tokenizer, program=program)
    data_vocab = files.join(data_dir, manifest["vocab"]["file"])
    saved = files.join(model_dir, VOCAB)
    for path, source in ((data_vocab, data_vocab), (vocab_file, f"--vocab_file={vocab_file}"),
                         (saved if file_size(saved) is not None else None,
                          f"of the run ({saved})")):
        if path:
            check_vocabulary(manifest, data_dir, read_vocabulary(path), source)
    vocab = read_vocabulary(data_vocab)
    if is_chief:
        vocab_lib.save_vocabulary(vocab, saved)
    return manifest, vocab


def facts(manifest, data_dir, eval_split):
    """The data facts a trainer prints and adds to summary.json."""
    splits = manifest["splits"]
    return dict(data_dir=data_dir, corpus=manifest["corpus"],
                train_documents=splits["train"]["documents"], eval_split=eval_split,
                eval_documents=splits[eval_split]["documents"],
                train_sequences=splits["train"]["examples"],
                eval_sequences=splits[eval_split]["examples"],
                train_tokens=splits["train"]["tokens"], eval_tokens=splits[eval_split]["tokens"],
                shards=manifest["num_shards"], tokenizer=manifest["tokenizer"]["name"],
                vocab_size=manifest["vocab"]["size"], vocab_sha256=manifest["vocab"]["sha256"],
                seq_length=manifest["seq_length"])


@contextlib.contextmanager
def corrupt_data_in_one_line(data_dir):
    """Around a run that streams `data_dir`: a record that fails its TFRecord CRC (or
    parses to the wrong width) ends the run with one line, not a traceback."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        if not data_dir or not (isinstance(e, tf.errors.DataLossError)
                                or f"Key: {FEATURE}" in str(e)):
            raise
        raise TrainerError(f"a shard under --data_dir={data_dir} is corrupt ({first_line(e)}); "
                           "find it with python -m trainers.prepare_pretraining_data "
                           f"--output_dir={data_dir} --verify")


# ---------------------------------------------------------------- streaming
def pipeline_of(input_context):
    if input_context is None:
        return 0, 1
    return input_context.input_pipeline_id, input_context.num_input_pipelines


def pipeline_batches(dataset, input_context, global_batch_size):
    """This pipeline's examples -> its per-replica batches: the pipeline's share
    ``G / P`` of each global batch, cut into batches of ``G / replicas``."""
    _, pipelines = pipeline_of(input_context)
    share = global_batch_size // pipelines
    per_replica = (input_context.get_per_replica_batch_size(global_batch_size)
                   if input_context else global_batch_size)
    dataset = dataset.batch(share, drop_remainder=True)
    if per_replica != share:
        dataset = dataset.unbatch().batch(per_replica, drop_remainder=True)
    return dataset


class ShardedExamples:
    """One split of a prepared directory as per-pipeline tf.data streams of
    ``{"id", "epoch", "tokens"}`` (tokens int32 [width]); nothing is loaded up front."""

    def __init__(self, data_dir, manifest, split, shuffle_buffer=10_000, cycle_length=4):
        self.data_dir = data_dir
        self.split = split
        self.width = manifest["width"]
        shards = manifest["splits"][split]["shards"]
        self.files = [files.join(data_dir, s["file"]) for s in shards]
        self.counts = [int(s["examples"]) for s in shards]
        self.bytes = [int(s["bytes"]) for s in shards]
        self.offsets = [sum(self.counts[:i]) for i in range(len(self.counts))]
        self.total = sum(self.counts)
        self.shuffle_buffer = int(shuffle_buffer)
        self.cycle_length = int(cycle_length)

    def own_shards(self, input_context):
        """The shard indices pipeline p of P reads (i % P == p), their files checked
        against the manifest's sizes (a truncated or missing shard fails in one line)."""
        pid, pipelines = pipeline_of(input_context)
        if len(self.files) < pipelines:
            raise TrainerError(
                f"--data_dir={self.data_dir} has {len(self.files)} {self.split} shard(s), "
                f"fewer than the {pipelines} input pipelines; prepare it with --num_shards "
                f">= {pipelines} (a multiple of the number of hosts)")
        own = list(range(pid, len(self.files), pipelines))
        for i in own:
            path = self.files[i]
            size = file_size(path)
            if size != self.bytes[i]:
                state = "is missing" if size is None else f"has {size} bytes, not {self.bytes[i]}"
                raise TrainerError(
                    f"shard {path} {state} (corrupt or incomplete); rerun "
                    f"prepare_pretraining_data --output_dir={self.data_dir} --verify")
        return own

    def pipeline_count(self, input_context):
        return sum(self.counts[i] for i in self.own_shards(input_context))

    def _parse(self, record):
        import tensorflow as tf

        spec = {FEATURE: tf.io.FixedLenFeature([self.width], tf.int64)}
        return tf.cast(tf.io.parse_single_example(record, spec)[FEATURE], tf.int32)

    def _file_records(self, files, offsets, counts, j):
        """(global id, serialized record) of the j-th of `files`."""
        import tensorflow as tf

        ids = tf.data.Dataset.range(offsets[j], offsets[j] + counts[j])
        return tf.data.Dataset.zip((ids, tf.data.TFRecordDataset(files[j])))

    def train_examples(self, input_context, global_batch_size, start_batch, seed):
        """This pipeline's training stream from global batch `start_batch` on."""
        import tensorflow as tf

        pid, pipelines = pipeline_of(input_context)
        own = self.own_shards(input_context)
        n = sum(self.counts[i] for i in own)
        if n == 0:
            raise TrainerError(f"input pipeline {pid} of {pipelines} has no training example "
                               f"in its shards of --data_dir={self.data_dir}")
        files = tf.constant([self.files[i] for i in own])
        offsets = tf.constant([self.offsets[i] for i in own], tf.int64)
        counts = tf.constant([self.counts[i] for i in own], tf.int64)
        k = len(own)
        seed = int(seed)
        skip = int(start_batch) * (global_batch_size // pipelines)
        first_epoch, offset = divmod(skip, n)
        buffer = max(1, self.shuffle_buffer)

        def epoch(e):
            order = tf.random.experimental.index_shuffle(
                tf.range(k, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), e]),
                max_index=k - 1) if k > 1 else tf.zeros([1], tf.int64)
            records = tf.data.Dataset.from_tensor_slices(order).interleave(
                lambda j: self._file_records(files, offsets, counts, j),
                cycle_length=min(self.cycle_length, k), block_length=1,
                num_parallel_calls=min(self.cycle_length, k), deterministic=True)
            # Bounded shuffling, a pure function of (seed, epoch, pipeline): blocks of
            # `buffer` records permuted by a stateless seed, then a fixed-seed buffer.
            block_seed = tf.constant([seed, pid], tf.int64)

            def permute(b, batch):
                ids, recs = batch
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(tf.shape(ids)[0]), seed=block_seed + tf.stack([e, b]))
                return tf.gather(ids, order), tf.gather(recs, order)

            records = (records.batch(buffer).enumerate().map(permute).unbatch()
                       .shuffle(buffer, seed=seed % 2 ** 31, reshuffle_each_iteration=False))
            return records.map(lambda i, r: (i, e, r))

        stream = tf.data.Dataset.range(first_epoch, tf.int64.max).flat_map(epoch).skip(offset)
        return stream.map(lambda i, e, r: {"id": i, "epoch": e, "tokens": self._parse(r)},
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def eval_steps(self, global_batch_size, pipelines):
        """Global batches that cover every pipeline's shards of the split once."""
        share = global_batch_size // pipelines
        most = max(sum(self.counts[p::pipelines]) for p in range(pipelines))
        return max(1, -(-most // share))

    def eval_examples(self, input_context, global_batch_size, pad_row):
        """This pipeline's shards in order, each example with ``weight`` 1, then weight-0
        copies of `pad_row` up to `eval_steps` batches; repeated."""
        import tensorflow as tf

        _, pipelines = pipeline_of(input_context)
        own = self.own_shards(input_context)
        total = self.eval_steps(global_batch_size, pipelines) * (global_batch_size // pipelines)
        files = tf.constant([self.files[i] for i in own])
        offsets = tf.constant([self.offsets[i] for i in own], tf.int64)
        counts = tf.constant([self.counts[i] for i in own], tf.int64)
        real = tf.data.Dataset.range(len(own)).flat_map(
            lambda j: self._file_records(files, offsets, counts, j))
        real = real.map(lambda i, r: {"id": i, "epoch": tf.constant(0, tf.int64),
                                      "tokens": self._parse(r),
                                      "weight": tf.constant(1.0)})
        pad = tf.data.Dataset.from_tensors({
            "id": tf.constant(-1, tf.int64), "epoch": tf.constant(0, tf.int64),
            "tokens": tf.constant(pad_row, tf.int32), "weight": tf.constant(0.0)}).repeat()
        return real.concatenate(pad).take(total).repeat()
