"""Faults of a two-worker MultiWorkerMirrored run (issue 22): a worker killed with SIGKILL
(the survivor ends within a bounded time, its last line naming the lost peer and the
checkpoint to resume from, with the restart status), and SIGTERM to one worker (both
stop at one step with a checkpoint and resume)."""

import json
import os
import signal
import subprocess
import sys
import time

import preloaded
from conftest import REPO, free_ports, sigterm_after_line
from shards_helpers import write_corpus

from trainers.common.preemption import EXIT_CODE

LM = ["--num_layers=1", "--hidden_dim=16", "--num_heads=2", "--intermediate_dim=32",
      "--seq_length=16", "--global_batch_size=8", "--tokenizer=word", "--vocab_size=100",
      "--train_steps=100000", "--steps_per_loop=5", "--checkpoint_every=10", "--eval_every=0",
      "--strategy=multi_worker_mirrored", "--nojit_compile"]


def test_a_killed_peer_ends_the_survivor_in_one_line(tmp_path):
    corpus = write_corpus(str(tmp_path / "corpus"))
    model_dir = tmp_path / "run"
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(tf_config))
        procs.append(preloaded.Popen(
            [sys.executable, "-m", "trainers.causal_lm", f"--model_dir={model_dir}",
             f"--corpus={corpus}", *LM], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True))
    survivor, victim = procs
    state = model_dir / "checkpoints" / "checkpoint"
    deadline = time.time() + 300
    while not state.exists() and survivor.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert survivor.poll() is None and state.exists(), "no checkpoint before the kill"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = time.time()
    _, err = survivor.communicate(timeout=120)  # bounded: no hang
    waited = time.time() - killed
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert survivor.returncode == EXIT_CODE, err[-3000:]
    assert last.startswith(f"error: lost worker 1 ({workers[1]})"), last
    latest = open(state).read().split('"')[1]  # model_checkpoint_path: "ckpt-N"
    assert f"checkpoint {model_dir / 'checkpoints' / latest}" in last, last
    assert "restart every worker with the same command" in last
    assert waited < 60, waited


def test_sigterm_to_one_worker_stops_both_at_one_step_and_both_resume(tmp_path):
    """SIGTERM to the non-chief worker only: the workers agree (an all-reduce) and both
    stop after the same loop with one checkpoint at that step, exit 42; the same two
    commands resume there and finish with identical weights on both workers."""
    corpus = write_corpus(str(tmp_path / "corpus"))
    model_dir = tmp_path / "run"
    args = [f"--model_dir={model_dir}", f"--corpus={corpus}", *LM[:-4], "--train_steps=40",
            "--steps_per_loop=5", "--checkpoint_every=0", "--eval_every=0",
            "--strategy=multi_worker_mirrored", "--nojit_compile", "--deterministic"]
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]

    def start_workers():
        procs = []
        for index in range(2):
            tf_config = {"cluster": {"worker": workers},
                         "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(tf_config))
            procs.append(preloaded.Popen(
                [sys.executable, "-m", "trainers.causal_lm", *args], cwd=REPO, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return procs

    chief, other = start_workers()
    sigterm_after_line(chief, "step 10/40 ", target=other)
    outs = [p.communicate(timeout=120) for p in (chief, other)]
    assert [p.returncode for p in (chief, other)] == [EXIT_CODE, EXIT_CODE], outs[0][1][-2000:]
    lasts = [err.strip().splitlines()[-1] for _, err in outs]
    stopped = json.load(open(model_dir / "summary.json"))["preempted"]["step"]
    assert 10 <= stopped < 40
    # The chief was not signalled: it stops at the agreed step too, and says why.
    assert lasts[0].startswith(f"error: stopped by a peer's signal at step {stopped} of 40")
    assert lasts[1].startswith(f"error: stopped by SIGTERM at step {stopped} of 40"), lasts
    assert open(model_dir / "checkpoints" / "checkpoint").read().count(f"ckpt-{stopped}")

    procs = start_workers()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:]
    digests = [[l for l in out.splitlines() if l.startswith("final weights sha256")][-1]
               for out, _ in outs]
    assert digests[0] == digests[1]
    assert all(f"at step {stopped}" in out for out, _ in outs)
    assert json.load(open(model_dir / "summary.json"))["final_step"] == 40
