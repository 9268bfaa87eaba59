"""The ResNet trainer end to end: learning on digits, resume, ResNet50's step, losses, errors."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import preloaded
from conftest import REPO
from resnet_support import experiment, eagerly, parse_flags, plan_and_optimizer, restore_flag_defaults
from trainers import resnet_imagenet  # noqa: F401 - defines the flags
from trainers.common.errors import TrainerError
from trainers.vision import task as vision_task
from trainers.vision import models as resnet_models
from trainers.common import runner
from trainers.common.reporting import read_metrics

DIGITS_RUN = ("--dataset=digits", "--model=resnet20", "--global_batch_size=64",
              "--steps_per_loop=10", "--checkpoint_every=0", "--learning_rate=0.4",
              "--lr_schedule=cosine", "--warmup_epochs=1")


restore_defaults = pytest.fixture(autouse=True)(restore_flag_defaults)


def train(model_dir, *args):
    f = parse_flags(f"--model_dir={model_dir}", *args)
    return runner.run(vision_task.ImageClassificationTask, f)


def test_resnet20_learns_digits(tmp_path):
    """3 epochs (60 steps), XLA: validation top-1 far above the 10% of chance."""
    summary = train(tmp_path, *DIGITS_RUN, "--train_epochs=3", "--eval_every=30")
    # 1,437 training digits minus the 142 of the 10% validation fold = 1,295: 20 batches of 64.
    assert summary["final_step"] == 60 and summary["steps_per_epoch"] == 20
    assert summary["warmup_steps"] == 20
    assert summary["task"]["eval_split"] == "validation"
    assert summary["task"]["eval_examples"] == 142 and summary["task"]["train_examples"] == 1295
    assert summary["eval"]["accuracy"] > 0.6, summary["eval"]
    assert summary["eval"]["top5_accuracy"] >= summary["eval"]["accuracy"]
    assert summary["eval"]["loss"] > summary["eval"]["cross_entropy"]  # + the L2 penalty
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [0, 30, 60]
    assert records[0]["eval_accuracy"] < 0.4  # it did learn
    assert summary["images_per_second"] > 0
    assert summary["task"]["parameters"] == 274042 - 2 * 3 * 3 * 16  # one input channel
    export = tmp_path / "export"
    assert (export / "classes.txt").read_text().split() == [str(d) for d in range(10)]
    reloaded = keras.saving.load_model(export / "model.keras")
    assert reloaded.output_shape == (None, 10)


def test_resume_continues_exactly(tmp_path):
    """Two steps, then resume to four == four straight (weights bit-identical).
    Eager: the checkpoint and data-position logic is the same as in graph mode."""
    common = DIGITS_RUN + ("--model=resnet8", "--global_batch_size=16", "--steps_per_loop=2",
                           "--eval_batches=1", "--deterministic", "--checkpoint_every=2",
                           "--eval_every=0")
    with eagerly():
        straight = train(tmp_path / "straight", *common, "--train_steps=4")
        train(tmp_path / "resumed", *common, "--train_steps=2")
        resumed = train(tmp_path / "resumed", *common, "--train_steps=4")
        other = train(tmp_path / "other", *common, "--train_steps=4", "--seed=1")
        rerun = train(tmp_path / "straight", *common, "--train_steps=4")  # finished already
    assert resumed["final_step"] == 4
    # A rerun of a finished run trains nothing and keeps the run's summary.
    assert rerun["final_step"] == 4 and rerun["weights_sha256"] == straight["weights_sha256"]
    assert rerun["eval"] == straight["eval"] != {} and rerun["train"] == straight["train"]
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert other["weights_sha256"] != straight["weights_sha256"]


def test_sigterm_saves_at_the_step_and_the_rerun_resumes_bit_exactly(tmp_path, monkeypatch):
    """SIGTERM (sent to this process once step 4 of 8 is reported; checkpoints only at the
    end): the run stops after that loop with a checkpoint at step 4, summary.json says
    so, no export, `Preempted` (exit 42); the same run again resumes there and ends with
    an uninterrupted run's weights."""
    import signal

    from trainers.common.preemption import EXIT_CODE, Preempted
    from trainers.common.reporting import Reporter

    common = DIGITS_RUN + ("--model=resnet8", "--global_batch_size=16", "--steps_per_loop=2",
                           "--eval_batches=1", "--deterministic", "--checkpoint_every=0",
                           "--eval_every=0", "--train_steps=8")
    report = Reporter.loop

    def loop_then_signal(self, step, *args, **kwargs):
        report(self, step, *args, **kwargs)
        if step == 4:
            signal.raise_signal(signal.SIGTERM)

    with eagerly():
        straight = train(tmp_path / "straight", *common)
        monkeypatch.setattr(Reporter, "loop", loop_then_signal)
        with pytest.raises(Preempted, match="stopped by SIGTERM at step 4 of 8") as info:
            train(tmp_path / "preempted", *common)
        monkeypatch.setattr(Reporter, "loop", report)
        assert info.value.exit_code == EXIT_CODE
        summary = json.load(open(tmp_path / "preempted" / "summary.json"))
        assert summary["preempted"]["step"] == 4 and summary["final_step"] == 4
        assert summary["preempted"]["checkpoint"].endswith("ckpt-4")
        assert not (tmp_path / "preempted" / "export").exists()
        resumed = train(tmp_path / "preempted", *common)
    assert resumed["final_step"] == 8 and "preempted" not in resumed
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is put back


def test_sigterm_in_the_last_loop_completes_the_run_then_stops_the_process(tmp_path):
    """A signal in the run's last loop (step 8 of 8) is not lost: the run completes
    (final checkpoint, export, summary), then the signal's own handler acts (the default:
    the process ends by SIGTERM), so a program that runs trials in process (a sweep)
    does not go on to its next one."""
    import signal

    child = f"""
import signal, sys
sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
from resnet_support import eagerly, parse_flags
from trainers.common import runner
from trainers.common.reporting import Reporter
from trainers.vision import task as vision_task
report = Reporter.loop
def loop(self, step, total, *args, **kwargs):
    report(self, step, total, *args, **kwargs)
    if step == total:
        signal.raise_signal(signal.SIGTERM)
Reporter.loop = loop
f = parse_flags("--model_dir={tmp_path}", "--dataset=digits", "--model=resnet8",
                "--global_batch_size=16", "--steps_per_loop=2", "--eval_batches=1",
                "--checkpoint_every=0", "--eval_every=0", "--train_steps=8")
with eagerly():
    runner.run(vision_task.ImageClassificationTask, f)
print("the next trial would start here")
"""
    p = preloaded.run([sys.executable, "-c", child], cwd=REPO, capture_output=True,
                      text=True, timeout=600)
    assert p.returncode == -signal.SIGTERM, p.stderr[-3000:]
    assert "SIGTERM received during the last loop: the run is complete" in p.stdout
    assert "the next trial would start here" not in p.stdout
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["final_step"] == 8 and "preempted" not in summary
    assert (tmp_path / "export").is_dir()


@pytest.fixture
def metadata_server(monkeypatch):
    """A Compute Engine metadata server on 127.0.0.1 that answers the maintenance-event
    path (with the header the real one requires) with `.state`; $GCE_METADATA_HOST
    points at it."""
    import http.server
    import threading

    from trainers.common import preemption

    class Handler(http.server.BaseHTTPRequestHandler):
        state = "NONE"

        def do_GET(self):
            ok = (self.path == preemption.MAINTENANCE_PATH
                  and self.headers.get("Metadata-Flavor") == "Google")
            body = (Handler.state if ok else "not found").encode()
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{server.server_port}")
    monkeypatch.setattr(preemption, "MAINTENANCE_POLL_S", 0.05)
    yield Handler
    server.shutdown()


def test_a_maintenance_notice_stops_the_run_like_sigterm(tmp_path, monkeypatch,
                                                         metadata_server):
    """--maintenance_events=on: the VM's metadata turns to TERMINATE_ON_HOST_MAINTENANCE
    once step 4 of 8 is reported; the run stops after that loop with a checkpoint at step
    4 and `Preempted` (exit 42), as on SIGTERM (whose test checks the bit-exact resume)."""
    import time

    from trainers.common.preemption import EXIT_CODE, Preempted
    from trainers.common.reporting import Reporter

    report = Reporter.loop

    def loop_then_notice(self, step, *args, **kwargs):
        report(self, step, *args, **kwargs)
        if step == 4:
            metadata_server.state = "TERMINATE_ON_HOST_MAINTENANCE"
            time.sleep(1.0)  # 20 polls

    monkeypatch.setattr(Reporter, "loop", loop_then_notice)
    with eagerly(), pytest.raises(Preempted, match=r"stopped by a maintenance notice "
                                  r"\(TERMINATE_ON_HOST_MAINTENANCE\) at step 4 of 8") as info:
        train(tmp_path, DIGITS_RUN[0], "--model=resnet8", "--global_batch_size=16",
              "--steps_per_loop=2", "--eval_batches=1", "--checkpoint_every=0",
              "--eval_every=0", "--train_steps=8", "--maintenance_events=on")
    assert info.value.exit_code == EXIT_CODE
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["preempted"]["step"] == 4
    assert summary["preempted"]["checkpoint"].endswith("ckpt-4")


def test_maintenance_watch_is_on_where_asked_and_quiet_where_nobody_answers(
        metadata_server, monkeypatch, capsys):
    from trainers.common import preemption

    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert preemption.PreemptionWatch(one_device, "auto")._maintenance is None  # not a TPU
    assert preemption.PreemptionWatch(one_device, "off")._maintenance is None
    with preemption.PreemptionWatch(one_device, "on") as watch:  # the server says NONE
        watch._maintenance._thread.join(0.5)  # ten polls
        assert watch._maintenance._thread.is_alive() and watch.signal is None
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # nothing listens
    stops = []
    watch = preemption.MaintenanceWatch(stops.append).start()
    watch._thread.join(10)
    assert not watch._thread.is_alive() and stops == []
    assert "no Compute Engine metadata server answered" in capsys.readouterr().out


def test_an_unreadable_image_in_a_folder_is_one_error_naming_it(tmp_path):
    """A file with an image's name that is no image (here: text) stops the run with a
    TrainerError naming that file, wherever the pipeline meets it."""
    from resnet_support import make_folder

    root = make_folder(str(tmp_path / "imgs"))
    bad = os.path.join(root, "train", "dog", "1.png")
    with open(bad, "w") as f:
        f.write("<html>not an image</html>")
    with pytest.raises(TrainerError, match=rf"^{bad}: unreadable input file"):
        train(tmp_path / "run", f"--dataset=folder:{root}", "--model=resnet8",
              "--image_size=16", "--global_batch_size=9", "--train_steps=2",
              "--steps_per_loop=1", "--eval_every=0", "--checkpoint_every=0",
              "--nojit_compile", "--warmup_epochs=0", "--lr_schedule=constant")


def test_resnet50_builds_and_takes_a_training_step(tmp_path):
    """keras.applications.ResNet50 through the task and the common loop, one SGD step on
    two 32x32 images (eagerly: the traced first step costs ~35 s on this CPU)."""
    from trainers.common.loop import StepLoop

    f = parse_flags(f"--model_dir={tmp_path}", "--dataset=synthetic", "--model=resnet50",
                    "--image_size=32", "--num_classes=10", "--global_batch_size=2",
                    "--train_steps=1")
    task = vision_task.ImageClassificationTask(experiment(f))
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = task.build_model()
        _, optimizer = plan_and_optimizer(f, task, model.trainable_variables)
    reference = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    assert model.count_params() == reference.count_params()
    before = [v.numpy().copy() for v in model.trainable_variables]
    trainer = StepLoop(strategy, model, optimizer, task.forward, jit_compile=False)
    trainer.build_optimizer()
    data = strategy.distribute_datasets_from_function(lambda ctx: task.train_dataset(ctx, 2, 0))
    with eagerly():
        metrics = trainer.train(iter(data), 1)
    assert int(optimizer.iterations.numpy()) == 1
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > metrics["cross_entropy"] > 0
    moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    assert all(moved)


def test_losses_and_top_k_against_references():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 12)).astype(np.float32)
    labels = rng.integers(0, 12, 200).astype(np.int32)
    ranks = vision_task.top_rank(tf.constant(logits), tf.constant(labels)).numpy()
    for k in (1, 5):
        assert np.mean(ranks < k) == pytest.approx(
            top_k_accuracy_score(labels, logits, k=k, labels=np.arange(12)))
    ce = vision_task.classification_losses(tf.constant(logits), tf.constant(labels),
                                               0.1).numpy()
    target = np.full((200, 12), 0.1 / 12)
    target[np.arange(200), labels] += 0.9
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(ce, -(target * log_p).sum(-1), rtol=1e-5)


def test_l2_penalty_skips_batch_norm_and_biases(tmp_path):
    f = parse_flags(f"--model_dir={tmp_path}", "--dataset=digits", "--model=resnet20",
                    "--l2_weight_decay=0.01")
    task = vision_task.ImageClassificationTask(experiment(f))
    model = task.build_model()
    names = [v.path for v in task.decayed]
    assert len(names) == 22 and all(n.endswith("kernel") for n in names)  # 21 convs + dense
    batch = {"image": tf.zeros([4, 8, 8, 1]), "label": tf.constant([0, 1, 2, 3]),
             "weight": tf.constant([1.0, 1.0, 1.0, 0.0])}
    out = task.forward(model, batch, training=False)
    squares = sum(float(np.sum(np.square(v.numpy()))) for v in task.decayed)
    assert float(out["loss"][0] - out["cross_entropy"][0]) == pytest.approx(
        3 * 0.5 * 0.01 * squares, rel=1e-5)
    assert float(out["loss"][1]) == 3.0


def test_cifar_resnet_depths():
    assert resnet_models.cifar_resnet(20, (32, 32, 3), 10).count_params() == 274042
    with pytest.raises(TrainerError, match="6n\\+2"):
        resnet_models.build("resnet21", 32, 3, 10)
    with pytest.raises(TrainerError, match="image_size >= 32"):
        resnet_models.build("resnet50", 8, 1, 10)


def test_cli_reports_missing_imagenet_in_one_line(tmp_path):
    result = preloaded.run(
        [sys.executable, "-m", "trainers.resnet_imagenet", f"--model_dir={tmp_path / 'run'}",
         f"--tfds_data_dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --dataset=tfds:imagenet2012 is not prepared")
    assert os.path.join(str(tmp_path), "downloads", "manual") in last
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [last]


@pytest.mark.parametrize("optimizer,precision", [("acclip", "none"), ("adam", "none"),
                                                 ("gclip", "none"), ("sgd", "mixed_bfloat16")])
def test_other_optimizers_and_mixed_precision_take_steps(tmp_path, optimizer, precision):
    try:
        with eagerly():
            summary = train(tmp_path, "--dataset=digits", "--model=resnet8", "--train_steps=2",
                            "--steps_per_loop=1", "--global_batch_size=16", "--eval_batches=1",
                            "--checkpoint_every=0", f"--optimizer={optimizer}",
                            f"--mixed_precision={precision}")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert summary["final_step"] == 2 and summary["optimizer"] == optimizer
    assert np.isfinite(summary["train"]["loss"]) and np.isfinite(summary["eval"]["loss"])
