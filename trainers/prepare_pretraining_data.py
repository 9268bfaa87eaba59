"""Prepare a pretraining corpus once: vocabulary -> tokenized, packed sequences in
sharded TFRecord files + manifest.json, read by ``bert_pretrain --data_dir`` and
``causal_lm --data_dir`` with memory and start-up time independent of the corpus.

    python -m trainers.prepare_pretraining_data --corpus=tfds:wikipedia/20230601.en \
        --output_dir=data/wiki128 --vocab_size=30522 --vocab_sample_documents=100000 \
        --seq_length=128 --num_shards=256 --num_workers=16

* Splits: train/validation/test by whole documents, exactly as the trainers split
  (`trainers.common.text.corpus.split_documents`, seed 0, --eval_fraction).
* Vocabulary: --vocab_file, or learned from --vocab_sample_documents training
  documents (a fixed-seed sample; 0: all of them, as the trainers learn it).
* Sequences: --layout=mlm cuts each document into ``[CLS] piece [SEP] [PAD]...``
  segments (`trainers.bert.mlm.segment_documents`, bert_pretrain's own); --layout=
  causal_lm cuts each shard's token stream into windows of seq_length + 1
  (`trainers.lm.data.windows`, causal_lm's own; a window never crosses a shard).
* Shards: split s, shard i holds the documents [i*n/N, (i+1)*n/N) of the split's
  n documents. Each is written by one of --num_workers processes to a temporary
  name and renamed; a finished shard (its .json exists) is skipped on a rerun.
  --shard_index=a-b (or a list) writes only those shard numbers (of every split),
  so several machines can share the work; the run that finds all shards done
  writes manifest.json. --verify checks every shard's sha256.

See docs/data.md for the format and how the trainers stream it.
"""

import dataclasses
import multiprocessing
import os
import random
import time
from typing import Optional

from absl import flags

from trainers.common import files
from trainers.common import cli
from trainers.common import config
from trainers.common.errors import TrainerError
from trainers.common.text import corpus as corpus_lib
from trainers.common.text import shards as shards_lib
from trainers.common.text import vocab as vocab_lib

@dataclasses.dataclass(frozen=True)
class PreparationConfig(config.Config):
    """What to prepare, where, and by how many processes (its flags are generated from
    these fields; a name a trainer in this process defined first keeps that definition)."""
    corpus: str = config.option("wiki", "wiki (the default excerpt), files:GLOB or tfds:NAME.")
    max_documents: int = config.option(0, "Use only the first N documents (0: all).",
                                       minimum=0)
    eval_fraction: Optional[float] = config.option(
        None, "Fraction of documents held out (halved into validation and test); default: "
        "the reading trainer's (0.1 bert_pretrain, 0.2 causal_lm).", above=0.0, below=1.0)
    output_dir: Optional[str] = config.option(
        None, "Where the shards, vocab.txt and manifest.json go.", required=True)
    layout: str = config.option("mlm", "mlm: bert_pretrain's segments; causal_lm: "
                                "causal_lm's windows.", choices=shards_lib.LAYOUTS)
    tokenizer: Optional[str] = config.option(
        None, "wordpiece (KerasHub BertTokenizer) or word (causal_lm's word vocabulary); "
        "default: wordpiece for mlm, word for causal_lm.", choices=("wordpiece", "word"))
    vocab_file: Optional[str] = config.option(
        None, "Use this vocabulary instead of learning one.")
    vocab_size: int = config.option(8192, "Vocabulary size to learn (with the special "
                                    "tokens).", minimum=1)
    vocab_sample_documents: int = config.option(
        0, "Learn the vocabulary from this many training documents, a fixed-seed sample "
        "(0: all training documents, as the trainers do).", minimum=0)
    seq_length: int = config.option(128, "Tokens per sequence (the trainers' --seq_length).",
                                    minimum=8)
    num_shards: int = config.option(8, "Shards per split (use a multiple of the reading "
                                    "hosts).", minimum=1)
    num_workers: int = config.option(1, "Worker processes that tokenize and write shards.",
                                     minimum=1)
    shard_index: str = config.option(
        "", "Only these shard numbers, e.g. 0-63 or 3,7 (default: all): one machine's part "
        "of the work.")
    verify: bool = config.option(
        False, "Check every shard of --output_dir against its recorded sha256 (a bad one's "
        "record is removed, so a rerun rewrites it) and exit.")


config.define_flags(PreparationConfig)

FLAGS = flags.FLAGS
SETTING_NAMES = ("corpus", "max_documents", "eval_fraction", "layout", "tokenizer",
                 "seq_length", "num_shards", "vocab_size", "vocab_sample_documents")


def parse_shard_index(text, num_shards):
    if not text.strip():
        return list(range(num_shards))
    chosen = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                chosen.update(range(a, b + 1))
            else:
                chosen.add(int(part))
        except ValueError:
            raise TrainerError(f"--shard_index={text}: use numbers and ranges like 0-7,9")
    bad = sorted(i for i in chosen if not 0 <= i < num_shards)
    if bad:
        raise TrainerError(f"--shard_index={text} names shard {bad[0]}, outside 0-{num_shards - 1}")
    return sorted(chosen)


def settings_from_flags(f):
    layout = f.layout
    return dict(corpus=f.corpus, max_documents=f.max_documents,
                eval_fraction=(f.eval_fraction if f.eval_fraction is not None
                               else (0.1 if layout == "mlm" else 0.2)),
                layout=layout,
                tokenizer=f.tokenizer or ("wordpiece" if layout == "mlm" else "word"),
                seq_length=f.seq_length, num_shards=f.num_shards, vocab_size=f.vocab_size,
                vocab_sample_documents=f.vocab_sample_documents)


def validate(s):
    if s["layout"] == "mlm" and s["tokenizer"] != "wordpiece":
        raise TrainerError("--layout=mlm needs --tokenizer=wordpiece (bert_pretrain's)")
    if s["seq_length"] < 8:
        raise TrainerError(f"--seq_length must be >= 8, got {s['seq_length']}")
    if s["num_shards"] < 1:
        raise TrainerError("--num_shards must be >= 1")
    if not 0 < s["eval_fraction"] < 1:
        raise TrainerError(f"--eval_fraction must lie in (0, 1), got {s['eval_fraction']}")


def check_settings(output_dir, settings):
    """preparation.json: written by the first run; a later run (a resume, another
    machine) must use the same settings."""
    path = files.join(output_dir, shards_lib.SETTINGS)
    if files.exists(path):
        saved = shards_lib.read_json(path, "the preparation settings")
        diff = [k for k in SETTING_NAMES if saved.get(k) != settings[k]]
        if diff:
            k = diff[0]
            raise TrainerError(f"--output_dir={output_dir} was prepared with --{k}="
                               f"{saved.get(k)}, not {settings[k]} (use another --output_dir)")
    else:
        shards_lib.write_json(path, settings)


def sample_documents(train_docs, k):
    if not k or k >= len(train_docs):
        return train_docs
    chosen = sorted(random.Random(0).sample(range(len(train_docs)), k))
    return [train_docs[i] for i in chosen]


def vocabulary(output_dir, settings, train_docs, vocab_file):
    """output_dir/vocab.txt: kept when present (a rerun, another machine), else
    --vocab_file, else learned from the sample."""
    from trainers.lm import data as lm_data
    from trainers.lm.task import learn_vocabulary

    path = files.join(output_dir, shards_lib.VOCAB)
    given = vocab_lib.load_vocabulary(vocab_file) if vocab_file else None
    if files.exists(path):
        vocab = vocab_lib.load_vocabulary(path)
        if given is not None and given != vocab:
            raise TrainerError(f"--vocab_file={vocab_file} differs from {path} "
                               "(use another --output_dir)")
        info = path + ".json"
        source = (shards_lib.read_json(info, "the vocabulary record")["source"]
                  if files.exists(info) else "kept from an earlier run")
    elif given is not None:
        vocab, source = given, f"--vocab_file={vocab_file}"
    else:
        sample = sample_documents(train_docs, settings["vocab_sample_documents"])
        vocab = learn_vocabulary(sample, settings["tokenizer"], settings["vocab_size"])
        source = f"learned from {len(sample)} training documents"
    lm_data.check_vocabulary(vocab, settings["tokenizer"])
    if not files.exists(path):
        vocab_lib.save_vocabulary(vocab, path)
        shards_lib.write_json(path + ".json", {"source": source})
    return vocab, source


# ---------------------------------------------------------------- one shard
_WORKER = {}


def _init_worker(vocab, settings):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _WORKER.update(vocab=vocab, settings=settings, tokenizer=None)


def sequences(documents, vocab, settings, tokenizer=None):
    """The int32 rows of one shard's documents: bert_pretrain's segments or causal_lm's
    windows, by the trainers' own functions."""
    from trainers.bert import mlm
    from trainers.lm import data as lm_data

    if settings["layout"] == "mlm":
        tokenizer = tokenizer or vocab_lib.make_tokenizer(vocab)
        rows = mlm.segment_documents(documents, tokenizer, settings["seq_length"])
        pad, cls, sep = (vocab.index(t) for t in ("[PAD]", "[CLS]", "[SEP]"))
        tokens = int(((rows != pad) & (rows != cls) & (rows != sep)).sum())
        return rows, tokens
    encoded = lm_data.encode(documents, vocab, settings["tokenizer"])
    stream = lm_data.token_stream(encoded, vocab.index(lm_data.SEPARATOR))
    rows = lm_data.windows(stream, settings["seq_length"])
    return rows, int(len(rows) * settings["seq_length"])


def prepare_shard(job):
    """Tokenize and write one shard; returns its record (also saved as <shard>.json)."""
    split, index, first_doc, documents, path = job
    vocab, settings = _WORKER["vocab"], _WORKER["settings"]
    if settings["layout"] == "mlm" and _WORKER.get("tokenizer") is None:
        _WORKER["tokenizer"] = vocab_lib.make_tokenizer(vocab)
    t0 = time.time()
    rows, tokens = sequences(documents, vocab, settings, _WORKER.get("tokenizer"))
    record = shards_lib.write_shard(path, (row.tolist() for row in rows))
    record.update(split=split, index=index, documents=[first_doc, first_doc + len(documents)],
                  tokens=tokens, seconds=round(time.time() - t0, 3))
    shards_lib.write_json(path + ".json", record)
    return record


# ---------------------------------------------------------------- the run
def shard_jobs(output_dir, splits, num_shards, indices):
    jobs, done = [], []
    for split in shards_lib.SPLITS:
        docs = splits[split]
        n = len(docs)
        for i in indices:
            path = files.join(output_dir, shards_lib.shard_name(split, i, num_shards))
            record = shards_lib.shard_done(path)
            if record:
                done.append(record)
                continue
            a, b = i * n // num_shards, (i + 1) * n // num_shards
            jobs.append((split, i, a, docs[a:b], path))
    return jobs, done


def run_jobs(jobs, vocab, settings, num_workers):
    if num_workers <= 1 or len(jobs) <= 1:
        _init_worker(vocab, settings)
        for job in jobs:
            yield prepare_shard(job)
        return
    ctx = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    with ctx.Pool(min(num_workers, len(jobs)), initializer=_init_worker,
                  initargs=(vocab, settings)) as pool:
        yield from pool.imap_unordered(prepare_shard, jobs)


def write_manifest(output_dir, settings, vocab, vocab_source, splits):
    records = {}
    for split in shards_lib.SPLITS:
        shard_records = []
        for i in range(settings["num_shards"]):
            path = files.join(output_dir, shards_lib.shard_name(split, i, settings["num_shards"]))
            record = shards_lib.shard_done(path)
            if not record:
                return None
            shard_records.append({k: record[k] for k in
                                  ("file", "examples", "tokens", "bytes", "sha256", "documents")})
        records[split] = {"documents": len(splits[split]), "shards": shard_records,
                          "examples": sum(r["examples"] for r in shard_records),
                          "tokens": sum(r["tokens"] for r in shard_records)}
    width = settings["seq_length"] + (1 if settings["layout"] == "causal_lm" else 0)
    manifest = {
        "format": shards_lib.FORMAT, "version": shards_lib.VERSION,
        "layout": settings["layout"], "seq_length": settings["seq_length"], "width": width,
        "feature": shards_lib.FEATURE,
        "tokenizer": {"name": settings["tokenizer"], "lowercase": True,
                      "strip_accents": settings["tokenizer"] == "wordpiece"},
        "vocab": {"file": shards_lib.VOCAB, "sha256": shards_lib.vocab_hash(vocab),
                  "size": len(vocab), "source": vocab_source},
        "corpus": settings["corpus"], "max_documents": settings["max_documents"],
        "eval_fraction": settings["eval_fraction"], "split_seed": 0,
        "num_shards": settings["num_shards"], "splits": records,
    }
    path = files.join(output_dir, shards_lib.MANIFEST)
    shards_lib.write_json(path, manifest)
    return path


def verify(output_dir):
    manifest = shards_lib.load_manifest(output_dir)
    bad = []
    for split in shards_lib.SPLITS:
        for s in manifest["splits"][split]["shards"]:
            path = files.join(output_dir, s["file"])
            ok = files.exists(path) and shards_lib.file_sha256(path) == s["sha256"]
            if not ok:
                bad.append(path)
                if files.exists(path + ".json"):
                    files.remove(path + ".json")
    n = sum(len(manifest["splits"][s]["shards"]) for s in shards_lib.SPLITS)
    if bad:
        raise TrainerError(f"{len(bad)} of {n} shards are corrupt or missing (first: {bad[0]}); "
                           "rerun the same preparation command to rewrite them")
    print(f"verified {n} shards of {output_dir}: all match their sha256", flush=True)


def prepare(output_dir, settings, vocab_file=None, num_workers=1, shard_index=""):
    """The whole preparation (or this machine's `shard_index` part of it); returns
    {"manifest": path or None, "shards": written, "tokens", "seconds", "skipped"}."""
    validate(settings)
    indices = parse_shard_index(shard_index, settings["num_shards"])
    files.makedirs(output_dir, "--output_dir")
    check_settings(output_dir, settings)
    t0 = time.time()
    documents = corpus_lib.load_corpus(settings["corpus"], settings["max_documents"] or None)
    train, validation, test = corpus_lib.split_documents(
        documents, settings["eval_fraction"], seed=0, with_test=True)
    splits = {"train": train, "validation": validation, "test": test}
    print(f"corpus {settings['corpus']}: {len(documents)} documents (train {len(train)}, "
          f"validation {len(validation)}, test {len(test)}) in {time.time() - t0:.1f}s",
          flush=True)
    vocab, source = vocabulary(output_dir, settings, train, vocab_file)
    print(f"vocabulary: {len(vocab)} tokens ({source})", flush=True)
    jobs, done = shard_jobs(output_dir, splits, settings["num_shards"], indices)
    print(f"{len(jobs)} shard(s) to write, {len(done)} already done; "
          f"{num_workers} worker process(es)", flush=True)
    t1 = time.time()
    tokens = examples = 0
    for record in run_jobs(jobs, vocab, settings, num_workers):
        tokens += record["tokens"]
        examples += record["examples"]
        print(f"  {record['file']}: {record['examples']} sequences, {record['tokens']} tokens, "
              f"{record['seconds']:.1f}s", flush=True)
    seconds = time.time() - t1
    if jobs:
        print(f"wrote {len(jobs)} shard(s): {examples} sequences, {tokens} tokens in "
              f"{seconds:.1f}s ({tokens / max(seconds, 1e-9):.0f} tokens/s)", flush=True)
    path = write_manifest(output_dir, settings, vocab, source, splits)
    if path:
        print(f"manifest: {path}", flush=True)
    else:
        print("manifest not written yet: other shards are still to be prepared "
              "(a run that finds all shards done writes it)", flush=True)
    return {"manifest": path, "shards": len(jobs), "skipped": len(done), "tokens": tokens,
            "examples": examples, "seconds": seconds}


def main(argv):
    del argv
    f = config.from_flags(PreparationConfig, FLAGS)
    if f.verify:
        return verify(f.output_dir)
    prepare(f.output_dir, settings_from_flags(f), f.vocab_file, f.num_workers, f.shard_index)


if __name__ == "__main__":
    cli.run(main)
