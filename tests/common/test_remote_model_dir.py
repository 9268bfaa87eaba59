"""A remote model_dir (here TensorFlow's in-memory ram://, one per process) leaves nothing
in the working directory, for every program that writes a run: each trainer runs as its own
program (side by side) in an empty working directory, trains, evaluates and exports; and
gradient_noise measures a run stored on ram:// (trained in the same process: ram:// is
per process) and writes its figures there."""

import os
import subprocess
import sys

import pytest

import preloaded
from conftest import TINY
from shards_helpers import write_corpus
from squad_helpers import HANDWRITTEN

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
        "squad_finetune": ["--num_layers=1", "--hidden_dim=32", "--num_heads=2",
                           "--intermediate_dim=64", "--global_batch_size=8",
                           f"--train_file={HANDWRITTEN}", f"--predict_file={HANDWRITTEN}",
                                  "--max_seq_length=32", "--doc_stride=16",
                                  "--max_query_length=8", "--vocab_size=120"],
        "gradient_noise": LM + [f"--corpus={corpus}"],
    }
    procs = {}
    for name, args in programs.items():
        cwd = tmp_path / f"cwd_{name}"
        cwd.mkdir()
        cmd = [sys.executable, "-m", f"trainers.{name}", f"--model_dir=ram://runs/{name}",
               *COMMON, *args]
        if name == "gradient_noise":
            cmd = [sys.executable, "-c", MEASURE_A_RAM_RUN, "--model_dir=ram://runs/lm",
                   *COMMON, *args]
        procs[name] = (cwd, preloaded.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")))
    for name, (cwd, p) in procs.items():
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"{name}:\n{out[-3000:]}"
        assert "summary: ram://runs/" in out, name  # it trained and wrote its summary
        assert not list(cwd.iterdir()), (name, list(cwd.iterdir()))
    assert "measured ram://runs/noise: causal_lm_noise.json" in out


# A causal LM run on ram:// (in this process), then gradient_noise as its command line
# runs it, on that run, writing to ram://: every file through tf.io.gfile.
MEASURE_A_RAM_RUN = """
import sys
from absl import flags
from trainers import gradient_noise
from trainers.common import config, files, runner
from trainers.lm.task import CausalLMTask
runner.train(CausalLMTask, config.experiment_from_args("trainers.causal_lm", CausalLMTask,
                                                         sys.argv[1:]))
gradient_noise.define_flags()
flags.FLAGS(["gradient_noise", "--model=causal_lm", "--pretrain_dir=ram://runs/lm",
             "--output_dir=ram://runs/noise", "--num_batches=16", "--batch_size=4",
             "--reference_dim=10"])
gradient_noise.main([])
print("measured ram://runs/noise: " + " ".join(
    sorted(files.basename(p) for p in files.glob("ram://runs/noise/*.json"))))
"""
