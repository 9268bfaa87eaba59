"""The BERT trainer end to end, in subprocesses: learning, distribution, resume, bad input.

One-device, two-replica and two-worker runs of the same config must end
with the same weights (the global batch is the same; only the float
summation order differs), and a killed-and-resumed run must end with the
weights of an uninterrupted one, bit for bit, under --deterministic.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import preloaded
from conftest import (REPO, TINY, assert_same_weights, free_ports, kill_at_first_checkpoint,
                      model_weights, run_program_cases, run_trainer, sigterm_after_line)

STEPS = 20


def base_args(model_dir, corpus, vocab, *extra):
    return [f"--model_dir={model_dir}", f"--corpus={corpus}", f"--vocab_file={vocab}",
            *TINY, f"--train_steps={STEPS}", "--eval_every=10", "--checkpoint_every=10",
            "--optimizer=adam", "--learning_rate=5e-3", "--warmup_steps=2", *extra]


def digest(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("final weights sha256 ")]
    assert lines, stdout[-2000:]
    return lines[-1].split()[-1]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, small_corpus, small_vocab):
    model_dir = tmp_path_factory.mktemp("one_device")
    proc = run_trainer(base_args(model_dir, small_corpus, small_vocab, "--strategy=one_device",
                                 "--jit_compile"))  # the trainer's default: XLA
    return model_dir, proc


def test_tiny_run_lowers_held_out_loss_and_writes_reports(one_device):
    model_dir, proc = one_device
    records = [json.loads(l) for l in open(model_dir / "metrics.jsonl")]
    assert [r["step"] for r in records] == [0, 10, 20]
    first, last = records[0]["eval_loss"], records[-1]["eval_loss"]
    assert last < first - 0.25, records  # 6.35 = ln(vocab) at init
    assert records[-1]["eval_accuracy"] > records[0]["eval_accuracy"]
    summary = json.load(open(model_dir / "summary.json"))
    assert summary["final_step"] == STEPS and summary["sequences_per_second"] > 0
    assert summary["eval"]["loss"] == pytest.approx(last)
    flags_txt = open(model_dir / "flags.txt").read()
    assert "--optimizer=adam" in flags_txt and f"--train_steps={STEPS}" in flags_txt
    config = json.load(open(model_dir / "config.json"))
    assert config["program"] == "trainers.bert_pretrain"
    assert config["flags"]["optimizer"] == "adam" and config["flags"]["train_steps"] == STEPS
    assert config["flags"]["seq_length"] == 32 and config["flags"]["model_size"] == "tiny"
    assert "logtostderr" not in config["flags"] and "flagfile" not in config["flags"]
    assert (model_dir / "vocab.txt").exists() and os.listdir(model_dir / "tensorboard")
    progress = [l for l in proc.stdout.splitlines() if l.startswith("step ")]
    assert len(progress) == 4 and "sequences/s" in progress[-1] and "ETA" in progress[-1]


def test_export_loads_for_finetuning(one_device):
    from trainers.bert.model import load_pretrained

    model_dir, _ = one_device
    backbone, tokenizer, config = load_pretrained(str(model_dir))
    trained = list(model_weights(model_dir).values())
    for w in backbone.weights:
        value = np.asarray(w.numpy())
        assert any(t.shape == value.shape and np.array_equal(t, value) for t in trained), w.path
    assert tokenizer.vocabulary_size() == config["vocab_size"] == backbone.vocabulary_size


def test_mirrored_two_cpus_equals_one_device(one_device, tmp_path, small_corpus, small_vocab):
    model_dir, _ = one_device
    run_trainer(base_args(tmp_path, small_corpus, small_vocab,
                          "--strategy=mirrored", "--num_devices=2"))
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["num_replicas"] == 2 and summary["strategy"] == "MirroredStrategy"
    assert_same_weights(model_dir, tmp_path)


def test_multi_worker_equals_one_process(one_device, tmp_path, small_corpus, small_vocab):
    model_dir, _ = one_device
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(tf_config))
        args = base_args(tmp_path, small_corpus, small_vocab, "--strategy=multi_worker_mirrored")
        procs.append(preloaded.Popen([sys.executable, "-m", "trainers.bert_pretrain", *args],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-4000:]
        outs.append(out)
    assert digest(outs[0]) == digest(outs[1])  # both workers: identical weights
    summary = json.load(open(tmp_path / "summary.json"))  # written by the chief only
    assert summary["num_replicas"] == 2
    assert_same_weights(model_dir, tmp_path)


RESUME_ARGS = ["--deterministic", "--dropout=0.1", "--checkpoint_every=5", "--eval_every=0",
               "--train_steps=15"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, small_corpus, small_vocab):
    """An uninterrupted run that the interrupted ones must end equal to."""
    model_dir = tmp_path_factory.mktemp("straight")
    run_trainer(base_args(model_dir, small_corpus, small_vocab, *RESUME_ARGS))
    return model_dir


def test_sigterm_saves_at_the_step_and_the_rerun_resumes_bit_exactly(straight, tmp_path,
                                                                     small_corpus, small_vocab):
    """SIGTERM once step 5 of 15 is reported (checkpoints only at the end): a checkpoint at
    the step where it stopped (5 or 10: the signal may land just after step 5's check),
    exit 42, the one-line message; the same command resumes and ends with the
    uninterrupted run's weights. (Signalled after step 10, the run could reach its last
    step first and finish normally: there is no stop to make after the last loop.)"""
    from trainers.common.preemption import EXIT_CODE

    args = base_args(tmp_path, small_corpus, small_vocab, *RESUME_ARGS, "--checkpoint_every=0")
    after = 5
    p = preloaded.Popen([sys.executable, "-m", "trainers.bert_pretrain", *args], cwd=REPO,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sigterm_after_line(p, f"step {after}/15 ")
    _, err = p.communicate(timeout=300)
    assert p.returncode == EXIT_CODE, err[-3000:]
    stopped = json.load(open(tmp_path / "summary.json"))["preempted"]["step"]
    assert after <= stopped < 15
    assert err.strip().splitlines()[-1].startswith(
        f"error: stopped by SIGTERM at step {stopped} of 15: checkpoint ")
    proc = run_trainer(args)
    assert f"at step {stopped}" in proc.stdout
    assert_same_weights(straight, tmp_path, exact=True)


def test_kill_and_resume_equals_uninterrupted(straight, tmp_path, small_corpus, small_vocab):
    args = RESUME_ARGS

    resumed = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "trainers.bert_pretrain",
           *base_args(resumed, small_corpus, small_vocab, *args)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    victim = preloaded.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    kill_at_first_checkpoint(victim, resumed, timeout=240)

    proc = run_trainer(base_args(resumed, small_corpus, small_vocab, *args))
    assert "resumed from" in proc.stdout
    assert_same_weights(straight, resumed, exact=True)


# Bad input that needs a running trainer (data, TF runtime) runs in subprocesses; flag
# values are checked in-process below (tests/common/test_common.py has the shared ones).
BAD_INPUTS = {
    "missing_files": (["--corpus=files:/nonexistent/*.txt"], "matches no files"),
    "tiny_corpus": (["--corpus=TINY_CORPUS"], "fewer than one batch"),
    "tpu": (["--strategy=tpu", "--tpu=grpc://127.0.0.1:CLOSED_PORT"], "unreachable"),
}


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory, small_vocab):
    """All bad-input runs, by the program's entry in one process (each is mostly TF
    start-up); the unreachable TPU last."""
    tmp = tmp_path_factory.mktemp("bad")
    tiny = tmp / "tiny.txt"
    tiny.write_text("One short document about nothing much.\n\nAnother short one.\n")
    (port,) = free_ports(1)  # closed again: nothing listens there
    cases = []
    for name, (extra, _) in BAD_INPUTS.items():
        extra = [e.replace("TINY_CORPUS", f"files:{tiny}").replace("CLOSED_PORT", str(port))
                 for e in extra]
        cases.append([f"--model_dir={tmp / name}", f"--vocab_file={small_vocab}", *TINY,
                      "--train_steps=2", *extra])
    results = run_program_cases("trainers.bert_pretrain", cases)
    return {name: (code, err) for name, (code, _, err) in zip(BAD_INPUTS, results, strict=True)}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line(name, bad_input_runs):
    returncode, stderr = bad_input_runs[name]
    expected = BAD_INPUTS[name][1]
    assert returncode != 0
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert lines[-1].startswith("error: ") and expected in lines[-1], stderr[-2000:]
    assert "Traceback" not in stderr


def test_bad_flag_values_fail_in_one_line_in_process(capsys):
    from absl import flags

    from trainers.bert import model as bert_model
    from trainers.common import cli
    from trainers.common import flags as common_flags

    common_flags.define_common_flags()
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.run(lambda argv: None, argv=["prog", "--optimizer=adagrad"])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and "--optimizer=adagrad" in err[-1]
    finally:
        flags.FLAGS.unparse_flags()

    def main(argv):
        bert_model.model_config("huge")

    with pytest.raises(SystemExit):
        cli.run(main, argv=["prog"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "--model_size='huge'" in err[-1]
    flags.FLAGS.unparse_flags()


def test_sweep_runs_the_real_trainer_at_its_family_setting(tmp_path, small_corpus, small_vocab):
    """`trainers.sweep --family_settings` (what replaced trainers.compare) on the real BERT
    trainer, its trial a trainer process: the BERT-family rate of the task class, run on
    the test split, the table and the plot from the run's own metrics."""
    from trainers.bert.task import BertPretrainTask

    trainer_flags = " ".join([f"--corpus={small_corpus}", f"--vocab_file={small_vocab}", *TINY,
                              f"--train_steps={STEPS}", "--eval_every=10", "--eval_fraction=0.4"])
    args = [f"--model_dir={tmp_path}", "--program=bert_pretrain", "--optimizers=acclip",
            "--family_settings", "--seeds=1", "--trials=subprocess",
            f"--trainer_flags={trainer_flags}"]
    run_trainer(args, module="trainers.sweep", timeout=600)
    lr = BertPretrainTask.optimizer_settings["acclip"]["learning_rate"]
    [trial] = [d for d in (tmp_path / "acclip").iterdir() if (d / "summary.json").exists()]
    summary = json.load(open(trial / "summary.json"))
    assert summary["optimizer"] == "acclip"
    assert summary["optimizer_settings"]["learning_rate"] == lr
    records = [json.loads(l) for l in open(trial / "metrics.jsonl")]
    assert [r["step"] for r in records] == [0, 10, 20]
    results = json.load(open(tmp_path / "results.json"))
    assert results["finals"]["acclip"]["held_out"]["mean"] == pytest.approx(
        records[-1]["eval_loss"])
    table = open(tmp_path / "results.md").read()
    assert "acclip" in table and f"{records[-1]['eval_loss']:.4f}" in table
    assert (tmp_path / "results.png").stat().st_size > 10_000
