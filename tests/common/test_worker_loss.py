"""A worker of a two-worker MultiWorkerMirrored run killed with SIGKILL after the first
checkpoint: the survivor ends within a bounded time, its last line naming the lost peer
and the checkpoint to resume from, with the restart status (issue 22)."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO, free_ports
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
        procs.append(subprocess.Popen(
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
