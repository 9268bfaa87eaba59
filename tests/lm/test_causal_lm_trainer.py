"""`python -m trainers.causal_lm` end to end, in subprocesses, on a corpus this test
writes (no download): the held-out loss drops, reports carry loss, perplexity,
accuracy and the clip fraction, the export loads back (--noexport skips it), two replicas end with
the weights of one device, and a run stopped halfway (its own --train_steps)
and resumed ends with the weights of the uninterrupted one, bit for bit (under
--deterministic). Dropout is off (two replicas draw other masks than one
device); the resume of the dropout RNG is covered by the BERT trainer's test.

Three runs start side by side, then the resume (each is mostly TF start-up).
"""

import json
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import preloaded
from conftest import assert_same_weights, model_weights, run_program_cases, sigterm_after_line

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 16
TINY = ["--num_layers=1", "--hidden_dim=32", "--num_heads=2", "--intermediate_dim=64",
        "--seq_length=16", "--global_batch_size=8", "--steps_per_loop=4",
        "--eval_fraction=0.4", "--nojit_compile", "--tokenizer=word", "--vocab_size=100"]


def write_corpus(directory, documents=12, seed=0):
    """A few KB of template sentences, blank-line separated documents."""
    r = random.Random(seed)
    subj = ["the cat", "a dog", "the old man", "my sister", "the bird", "our teacher"]
    verb = ["sees", "likes", "follows", "finds", "helps", "watches"]
    obj = ["the river", "a small house", "the green field", "the market", "a red ball"]
    docs = []
    for _ in range(documents):
        paras = [" ".join(f"{r.choice(subj).capitalize()} {r.choice(verb)} {r.choice(obj)}."
                          for _ in range(6)) for _ in range(3)]
        docs.append("\n".join(paras))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    return f"files:{directory}/*.txt"


def start(model_dir, corpus, *extra):
    args = [f"--model_dir={model_dir}", f"--corpus={corpus}", *TINY, *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return preloaded.Popen([sys.executable, "-m", "trainers.causal_lm", *args], cwd=REPO,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs, check=True):
    results = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=400)
        if check and p.returncode != 0:
            raise AssertionError(f"{name} failed ({p.returncode}):\n{err[-4000:]}")
        results[name] = (p.returncode, out, err)
    return results


RUN_ARGS = [f"--train_steps={STEPS}", "--eval_every=8", "--checkpoint_every=8",
            "--optimizer=gclip", "--learning_rate=0.3", "--tau=0.5", "--dropout=0",
            "--lr_schedule=constant", "--deterministic"]


def records(model_dir):
    return [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("causal_lm")
    corpus = write_corpus(tmp / "corpus")
    # One configuration for all runs: a clipped optimizer (its state must resume
    # too) and a constant learning rate (the schedule must not depend on
    # --train_steps, which the interrupted run sets to half).
    args = RUN_ARGS
    dirs = {name: tmp / name for name in ("one", "two", "resumed")}
    fixed = ["--fixed_train_examples=12", "--frequency_buckets=3"]
    finish({
        "one": start(dirs["one"], corpus, *args, *fixed, "--strategy=one_device"),
        "two": start(dirs["two"], corpus, *args, *fixed, "--strategy=mirrored",
                     "--num_devices=2", "--noexport"),
        "resumed": start(dirs["resumed"], corpus, *args, f"--train_steps={STEPS // 2}"),
    })
    resumed = finish({"resumed": start(dirs["resumed"], corpus, *args)})["resumed"]
    return dirs, resumed, corpus


def test_held_out_loss_drops_and_reports_perplexity_and_accuracy(runs):
    dirs, _, _ = runs
    recs = records(dirs["one"])
    assert [r["step"] for r in recs] == [0, 8, 16]
    first, last = recs[0], recs[-1]
    assert last["eval_loss"] < first["eval_loss"] - 0.3, recs
    assert last["eval_accuracy"] > first["eval_accuracy"]
    for r in recs:
        assert r["eval_perplexity"] == pytest.approx(math.exp(r["eval_loss"]), rel=1e-4)
    assert "train_loss" in last and 0.0 <= last["clip_fraction"] <= 1.0  # gclip tracks it
    summary = json.load(open(dirs["one"] / "summary.json"))
    assert summary["eval"]["loss"] == pytest.approx(last["eval_loss"])
    task = summary["task"]
    assert task["eval_split"] == "validation" and task["tokenizer"] == "word"
    assert task["vocab_size"] <= 100 and task["train_sequences"] > 8
    assert (dirs["one"] / "vocab.txt").exists()


def test_fixed_training_examples_and_frequency_buckets_are_reported(runs):
    dirs, _, _ = runs
    recs = records(dirs["one"])
    assert all("fixed_train_loss" in r and "fixed_train_loss_bucket2" in r for r in recs)
    assert recs[-1]["fixed_train_loss"] < recs[0]["fixed_train_loss"] - 0.3
    for r in recs:  # the buckets' losses, weighted by their token counts, make up the loss
        buckets = [r[f"eval_loss_bucket{k}"] for k in range(3)]
        assert min(buckets) <= r["eval_loss"] <= max(buckets)
    summary = json.load(open(dirs["one"] / "summary.json"))
    assert summary["fixed_train"]["loss"] == pytest.approx(recs[-1]["fixed_train_loss"])
    # Two replicas read the same fixed examples: the same losses up to summation order.
    two = records(dirs["two"])
    for a, b in zip(recs, two):
        assert a["fixed_train_loss"] == pytest.approx(b["fixed_train_loss"], rel=1e-4)
    assert not any("fixed_train_loss" in r for r in records(dirs["resumed"]))


def test_noexport_skips_the_export(runs):
    dirs, _, _ = runs
    assert (dirs["one"] / "export").is_dir()
    assert not (dirs["two"] / "export").exists()
    assert json.load(open(dirs["two"] / "summary.json"))["export_dir"] is None


def test_export_loads_back_with_the_trained_weights(runs):
    from trainers.lm.model import load_exported

    dirs, _, _ = runs
    model, vocab, config = load_exported(str(dirs["one"]))
    assert vocab == (dirs["one"] / "vocab.txt").read_text().split()
    assert config["task"] == "causal_lm" and config["num_layers"] == 1
    trained = list(model_weights(dirs["one"]).values())
    for w in model.weights:
        value = np.asarray(w.numpy())
        assert any(t.shape == value.shape and np.array_equal(t, value) for t in trained), w.path
    tokens = np.ones([2, 16], np.int32)
    logits = model({"token_ids": tokens, "padding_mask": tokens})
    assert logits.shape == (2, 16, len(vocab))


def test_two_replicas_equal_one_device(runs):
    dirs, _, _ = runs
    summary = json.load(open(dirs["two"] / "summary.json"))
    assert summary["num_replicas"] == 2 and summary["strategy"] == "MirroredStrategy"
    assert_same_weights(dirs["one"], dirs["two"], exact=False)


def test_interrupted_and_resumed_equals_uninterrupted_bit_for_bit(runs):
    dirs, resumed, _ = runs
    assert "resumed from" in resumed[1]
    assert [r["step"] for r in records(dirs["resumed"])] == [0, STEPS // 2, STEPS]
    assert_same_weights(dirs["one"], dirs["resumed"], exact=True)
    digests = [json.load(open(dirs[n] / "summary.json"))["weights_sha256"]
               for n in ("one", "resumed")]
    assert digests[0] == digests[1]


def test_a_run_repeats_from_its_config_json(runs, tmp_path):
    """`--config=<run>/config.json` (plus overriding flags) is the same run: the typed
    configs written out and read back, ending with the recorded run's weights (sha256,
    both --deterministic). A config.json that is not one is one error line."""
    dirs, _, _ = runs
    again = tmp_path / "again"
    proc = preloaded.run(
        [sys.executable, "-m", "trainers.causal_lm", f"--config={dirs['one']}/config.json",
         f"--model_dir={again}", "--noexport"], cwd=REPO, capture_output=True, text=True,
        timeout=400, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.load(open(dirs["one"] / "summary.json"))
    assert json.load(open(again / "summary.json"))["weights_sha256"] == one["weights_sha256"]
    recorded = json.load(open(dirs["one"] / "config.json"))
    repeated = json.load(open(again / "config.json"))
    assert repeated["task"] == recorded["task"] and repeated["optimizer"] == recorded["optimizer"]
    assert repeated["run"] == dict(recorded["run"], model_dir=str(again), export=False)
    assert recorded["task"]["frequency_buckets"] == 3 and recorded["optimizer"]["tau"] == 0.5

    from trainers.common import config
    from trainers.lm.config import LMConfig

    experiment = config.ExperimentConfig.from_dict(recorded, LMConfig)  # programmatically
    assert experiment.task.frequency_buckets == 3 and experiment.run.train_steps == STEPS
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(config.TrainerError, match="not a config.json"):
        config.read_record(str(tmp_path / "bad.json"))



TRAIN_FROM_PYTHON = """
import sys
from trainers.common import config, runner
from trainers.lm.config import LMConfig
from trainers.lm.task import CausalLMTask
experiment = config.ExperimentConfig.from_json(sys.argv[1], LMConfig).replace(
    run={"model_dir": sys.argv[2], "export": False})
summary = runner.train(CausalLMTask, experiment)
print("sha256", summary["weights_sha256"])
"""


def test_a_run_repeats_as_a_python_call_without_flags(runs, tmp_path):
    """`runner.train(task_class, ExperimentConfig)`, what a notebook calls (no absl
    parsing, no flags.txt), is the recorded run: the same weights (sha256)."""
    dirs, _, _ = runs
    again = tmp_path / "python"
    proc = preloaded.run(
        [sys.executable, "-c", TRAIN_FROM_PYTHON, str(dirs["one"] / "config.json"), str(again)],
        cwd=REPO, capture_output=True, text=True, timeout=400,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.load(open(dirs["one"] / "summary.json"))
    assert f"sha256 {one['weights_sha256']}" in proc.stdout
    assert not (again / "flags.txt").exists()
    assert "flags" not in json.load(open(again / "config.json"))

def test_bad_model_size_is_a_trainer_error():
    from trainers.common.cli import TrainerError
    from trainers.lm.model import model_config

    with pytest.raises(TrainerError, match="--model_size='huge'"):
        model_config("huge")
    with pytest.raises(TrainerError, match="not divisible"):
        model_config("tiny", hidden_dim=30, num_heads=4)
    assert model_config("paper") == dict(num_layers=6, hidden_dim=512, num_heads=8,
                                         intermediate_dim=2048)


def test_show_optimizer_settings_prints_the_family_values_and_trains_nothing(tmp_path):
    from trainers.lm.task import CausalLMTask

    (code, out, _), (code2, out2, _), (code3, _, err) = [
        (code, out.strip().splitlines(), err) for code, out, err in run_program_cases(
            "trainers.causal_lm", [["--show_optimizer_settings", *extra] for extra in (
                ["--optimizer=cclip", f"--model_dir={tmp_path / 'run'}"],
                ["--optimizer=adam", "--learning_rate=0.5"],  # a flag given wins
                ["--optimizer=sgd", "--epsilon=1e-3"])])]
    family = CausalLMTask.optimizer_settings["cclip"]
    assert code == 0 and len(out) == 1
    assert json.loads(out[0]) == {"optimizer": "cclip", "learning_rate": family["learning_rate"],
                                  "tau": family["tau"], "momentum": 0.9, "epsilon": 0.0,
                                  "weight_decay": 0.0}
    assert not (tmp_path / "run").exists()
    assert code2 == 0 and json.loads(out2[-1])["learning_rate"] == 0.5
    assert code3 != 0 and err.strip().splitlines()[-1].startswith("error: --epsilon")


def test_sigterm_saves_at_the_step_and_the_rerun_resumes_bit_exactly(runs, tmp_path):
    """SIGTERM after a random loop: a checkpoint at the step where it stopped (a loop
    boundary, not a checkpoint_every one), exit 42, no export; the same command resumes
    and ends with the uninterrupted run's weights (sha256)."""
    from trainers.common.preemption import EXIT_CODE

    dirs, _, corpus = runs
    model_dir = tmp_path / "preempted"
    after = random.choice([4, 8])  # the signal comes once this step's line is printed
    p = start(model_dir, corpus, *RUN_ARGS)
    sigterm_after_line(p, f"step {after}/{STEPS} ")
    out, err = p.communicate(timeout=400)
    assert p.returncode == EXIT_CODE, err[-3000:]
    summary = json.load(open(model_dir / "summary.json"))
    stopped = summary["preempted"]["step"]
    assert after <= stopped < STEPS and summary["final_step"] == stopped
    assert summary["preempted"]["signal"] == "SIGTERM"
    assert summary["preempted"]["checkpoint"].endswith(f"ckpt-{stopped}")
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: stopped by SIGTERM at step {stopped} of {STEPS}")
    assert "rerun the same command" in last
    assert not (model_dir / "export").exists()
    resumed = finish({"again": start(model_dir, corpus, *RUN_ARGS)})["again"]
    assert "resumed from" in resumed[1] and f"at step {stopped}" in resumed[1]
    final = json.load(open(model_dir / "summary.json"))
    assert final["final_step"] == STEPS and "preempted" not in final
    one = json.load(open(dirs["one"] / "summary.json"))
    assert final["weights_sha256"] == one["weights_sha256"]
