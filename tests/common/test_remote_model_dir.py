"""A remote model_dir (here TensorFlow's in-memory ram://, one per process) leaves nothing
in the working directory, for every trainer that takes a --model_dir: each runs as its own
program (side by side) in an empty working directory, trains, evaluates and exports."""

import os
import subprocess
import sys

import pytest

from conftest import TINY
from shards_helpers import write_corpus

LM = ["--num_layers=1", "--hidden_dim=16", "--num_heads=2", "--intermediate_dim=32",
      "--seq_length=16", "--global_batch_size=8", "--tokenizer=word", "--vocab_size=100",
      "--fixed_train_examples=8", "--frequency_buckets=2"]
COMMON = ["--train_steps=2", "--steps_per_loop=1", "--eval_every=2", "--checkpoint_every=1",
          "--nojit_compile"]


def test_every_trainer_leaves_the_working_directory_empty(tmp_path, small_vocab):
    corpus = write_corpus(str(tmp_path / "corpus"))
    programs = {
        "causal_lm": LM + [f"--corpus={corpus}"],
        "bert_pretrain": TINY + [f"--corpus={corpus}", f"--vocab_file={small_vocab}",
                                 "--fixed_train_examples=8"],
        "resnet_imagenet": ["--dataset=digits", "--model=resnet8", "--global_batch_size=16",
                            "--eval_batches=1"],
    }
    procs = {}
    for name, args in programs.items():
        cwd = tmp_path / f"cwd_{name}"
        cwd.mkdir()
        cmd = [sys.executable, "-m", f"trainers.{name}", f"--model_dir=ram://runs/{name}",
               *COMMON, *args]
        procs[name] = (cwd, subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")))
    for name, (cwd, p) in procs.items():
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"{name}:\n{out[-3000:]}"
        assert "summary: ram://runs/" in out, name  # it trained and wrote its summary
        assert not list(cwd.iterdir()), (name, list(cwd.iterdir()))
