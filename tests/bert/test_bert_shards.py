"""`bert_pretrain --data_dir` on shards prepared here (no download): a run killed after
its first checkpoint and resumed ends with the weights of an uninterrupted run, bit
for bit (--deterministic, dropout on); two workers on 127.0.0.1 (each reading its own
shards) train in step and evaluate the held-out split exactly as one process does;
mismatched and corrupt data fail in one line.

The runs start side by side (each is mostly TF start-up), then the resume.
"""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import preloaded
from conftest import (REPO, TINY, free_ports, kill_at_first_checkpoint, model_weights,
                      run_program_cases)
from shards_helpers import mlm_settings, write_corpus

ARGS = [*TINY, "--optimizer=adam", "--learning_rate=5e-3", "--warmup_steps=2",
        "--deterministic", "--dropout=0.1", "--checkpoint_every=5", "--eval_every=0",
        "--train_steps=15", "--shuffle_buffer=32", "--eval_batches=0"]


def start(model_dir, data_dir, *extra, quiet=False, tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return preloaded.Popen(
        [sys.executable, "-m", "trainers.bert_pretrain", f"--model_dir={model_dir}",
         f"--data_dir={data_dir}", *ARGS, *extra],
        cwd=REPO, env=env, stdout=out, stderr=out, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from trainers import prepare_pretraining_data as prep

    tmp = tmp_path_factory.mktemp("bert_shards")
    corpus = write_corpus(str(tmp / "corpus"), documents=40)
    data = str(tmp / "data")
    prep.prepare(data, mlm_settings(corpus, num_shards=2, vocab_size=300))
    corrupt = str(tmp / "corrupt")
    prep.prepare(corrupt, mlm_settings(corpus, num_shards=2, vocab_size=300))
    shard = os.path.join(corrupt, "train-00000-of-00002.tfrecord")
    raw = bytearray(open(shard, "rb").read())
    raw[len(raw) // 3] ^= 0xFF  # same size: only the record CRC can tell
    open(shard, "wb").write(bytes(raw))

    straight = start(tmp / "straight", data)
    victim = start(tmp / "resumed", data, quiet=True)
    # The two bad-data runs: by the program's entry in one process (each is mostly TF
    # start-up), beside the others; a thread, so that the victim is killed on time.
    bad_cases = {"seq_length": [f"--model_dir={tmp / 'bad_seq'}", f"--data_dir={data}", *ARGS,
                                "--seq_length=64"],
                 "corrupt": [f"--model_dir={tmp / 'bad_corrupt'}", f"--data_dir={corrupt}",
                             *ARGS]}
    bad = {}
    bad_runs = threading.Thread(target=lambda: bad.update(zip(bad_cases, run_program_cases(
        "trainers.bert_pretrain", list(bad_cases.values())))))
    bad_runs.start()
    kill_at_first_checkpoint(victim, tmp / "resumed", timeout=300)
    resumed = start(tmp / "resumed", data)
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    two = [start(tmp / "two_workers", data, "--strategy=multi_worker_mirrored", tf_config={
        "cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        for i in range(2)]
    results = {}
    for name, proc in [("straight", straight), ("resumed", resumed),
                       ("worker0", two[0]), ("worker1", two[1])]:
        out, err = proc.communicate(timeout=600)
        results[name] = (proc.returncode, out, err)
    bad_runs.join(timeout=600)
    return tmp, dict(results, **bad)


def test_killed_and_resumed_from_shards_equals_uninterrupted(runs):
    tmp, results = runs
    for name in ("straight", "resumed"):
        code, out, err = results[name]
        assert code == 0, err[-3000:]
        assert f"data_dir {tmp}/data" in out
    assert "resumed from" in results["resumed"][1]
    a, b = model_weights(tmp / "straight"), model_weights(tmp / "resumed")
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_two_workers_read_their_own_shards_and_evaluate_like_one_process(runs):
    tmp, results = runs
    digests = []
    for name in ("worker0", "worker1"):
        code, out, err = results[name]
        assert code == 0, err[-3000:]
        digests.append([l for l in out.splitlines() if l.startswith("final weights")][-1])
    assert digests[0] == digests[1]  # synchronous: both workers hold the same weights
    summary = json.load(open(tmp / "two_workers" / "summary.json"))
    assert summary["num_replicas"] == 2 and summary["final_step"] == 15
    # Evaluation at step 0 (same initial weights): each worker evaluates its own held-out
    # shards, masked by example id, so the loss over the split equals one process's.
    one, two = (json.loads(open(tmp / d / "metrics.jsonl").readline())
                for d in ("straight", "two_workers"))
    assert one["step"] == two["step"] == 0
    np.testing.assert_allclose(two["eval_loss"], one["eval_loss"], rtol=1e-5)
    np.testing.assert_allclose(two["eval_accuracy"], one["eval_accuracy"], rtol=1e-5)


@pytest.mark.parametrize("name, expected", [
    ("seq_length", "was prepared with --seq_length=32, not --seq_length=64"),
    ("corrupt", "is corrupt"),
])
def test_mismatched_or_corrupt_data_fails_in_one_line(runs, name, expected):
    code, _, err = runs[1][name]
    lines = [l for l in err.strip().splitlines() if l.startswith("error: ")]
    assert code == 1 and len(lines) == 1 and expected in lines[0], err[-3000:]
    assert "Traceback" not in err
