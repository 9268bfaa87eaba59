"""Trainer memory and start-up against corpus size, and input throughput, for prepared
shards (docs/benchmarks.md, "Pretraining data").

    python bench/data_scaling.py --data_dir=DIR --work_dir=/tmp/scaling --scales=1,10,100

DIR is a directory prepared by trainers.prepare_pretraining_data (--layout=mlm).
Scale k makes a directory whose training split is k copies of DIR's training shards
(hard links; the manifest lists every copy as its own shard), so the trainer sees a
corpus k times larger: the excerpt's documents repeated, not new text. For each scale
it runs a short `bert_pretrain --data_dir` and records the wall time to the first
training step line and the peak RSS of the process (`wait4`). Then it measures the
input pipeline alone (sequences/s of masked per-replica batches from the shards, no
model). One JSON line per measurement on stdout.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINER = ["--num_layers=2", "--hidden_dim=128", "--num_heads=2", "--intermediate_dim=512",
           "--max_predictions_per_seq=20", "--global_batch_size=32", "--steps_per_loop=5",
           "--train_steps=10", "--eval_every=0", "--eval_batches=1", "--optimizer=adam",
           "--learning_rate=1e-3", "--dropout=0"]


def scaled(data_dir, work_dir, k):
    """A prepared directory whose training split is k copies of data_dir's."""
    if k == 1:
        return data_dir
    out = os.path.join(work_dir, f"x{k}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(data_dir, "manifest.json")) as f:
        manifest = json.load(f)
    train = manifest["splits"]["train"]
    shards = []
    for copy in range(k):
        for s in train["shards"]:
            name = f"copy{copy:04d}-{s['file']}"
            if not os.path.exists(os.path.join(out, name)):
                os.link(os.path.join(data_dir, s["file"]), os.path.join(out, name))
            shards.append(dict(s, file=name))
    for split in ("validation", "test"):
        for s in manifest["splits"][split]["shards"]:
            if not os.path.exists(os.path.join(out, s["file"])):
                os.link(os.path.join(data_dir, s["file"]), os.path.join(out, s["file"]))
    if not os.path.exists(os.path.join(out, "vocab.txt")):
        os.link(os.path.join(data_dir, "vocab.txt"), os.path.join(out, "vocab.txt"))
    manifest["splits"]["train"] = dict(
        train, shards=shards, documents=train["documents"] * k,
        examples=train["examples"] * k, tokens=train["tokens"] * k)
    manifest["num_shards"] = len(shards)
    manifest["corpus"] = f"{manifest['corpus']} (training shards x{k})"
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return out


def run_trainer(model_dir, extra):
    """(seconds to the first step line, total seconds, peak RSS MiB, last step line)."""
    cmd = [sys.executable, "-m", "trainers.bert_pretrain", f"--model_dir={model_dir}",
           *TRAINER, *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    first = None
    last = ""
    for line in proc.stdout:
        if line.startswith("step ") and first is None:
            first = time.time() - t0
        if line.startswith("step "):
            last = line.strip()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"trainer failed: {' '.join(cmd)}")
    return first, time.time() - t0, usage.ru_maxrss / 1024, last


def input_throughput(data_dir, batches=200, global_batch_size=32):
    import tensorflow as tf

    from trainers.bert import mlm
    from trainers.common.text import shards as shards_lib
    from trainers.common.text import vocab as vocab_lib

    manifest = shards_lib.load_manifest(data_dir)
    vocab = vocab_lib.load_vocabulary(os.path.join(data_dir, "vocab.txt"))
    data = mlm.ShardedMaskedLMData(data_dir, manifest, "validation", vocab, 0, 20)
    ds = data.train_dataset(None, global_batch_size, 0)
    it = iter(ds)
    for _ in range(5):
        next(it)
    t0 = time.time()
    for _ in range(batches):
        tf.nest.map_structure(lambda t: t.numpy(), next(it))
    seconds = time.time() - t0
    return batches * global_batch_size / seconds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data_dir", required=True)
    p.add_argument("--work_dir", required=True)
    p.add_argument("--scales", default="1,10,100")
    p.add_argument("--in_memory_corpus", default="",
                   help="Also run the in-memory path on this --corpus (same vocabulary).")
    a = p.parse_args()
    os.makedirs(a.work_dir, exist_ok=True)
    with open(os.path.join(a.data_dir, "manifest.json")) as f:
        seq = json.load(f)["seq_length"]
    for k in [int(x) for x in a.scales.split(",") if x.strip()]:
        d = scaled(a.data_dir, a.work_dir, k)
        with open(os.path.join(d, "manifest.json")) as f:
            train = json.load(f)["splits"]["train"]
        first, total, rss, last = run_trainer(os.path.join(a.work_dir, f"run_x{k}"),
                                              [f"--data_dir={d}", f"--seq_length={seq}"])
        print(json.dumps({"path": "shards", "scale": k, "train_sequences": train["examples"],
                          "train_tokens": train["tokens"], "shards": len(train["shards"]),
                          "seconds_to_first_step": round(first, 1),
                          "seconds_total": round(total, 1), "peak_rss_mib": round(rss),
                          "last_step": last}), flush=True)
    if a.in_memory_corpus:
        first, total, rss, last = run_trainer(
            os.path.join(a.work_dir, "run_in_memory"),
            [f"--corpus={a.in_memory_corpus}", f"--vocab_file={a.data_dir}/vocab.txt",
             f"--seq_length={seq}"])
        print(json.dumps({"path": "in-memory", "corpus": a.in_memory_corpus,
                          "seconds_to_first_step": round(first, 1),
                          "seconds_total": round(total, 1), "peak_rss_mib": round(rss),
                          "last_step": last}), flush=True)
    print(json.dumps({"input_pipeline_sequences_per_second":
                      round(input_throughput(a.data_dir)), "global_batch_size": 32,
                      "note": "masked per-replica batches from the shards, one pipeline, "
                              "no model"}), flush=True)


if __name__ == "__main__":
    main()
