"""--sync_batch_norm: two replicas (two logical CPUs, MirroredStrategy) train a ResNet exactly
as one device does on the same global batches; without it they do not (per-replica statistics)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import preloaded
from resnet_support import experiment, parse_flags, plan_and_optimizer, restore_flag_defaults
from trainers import resnet_imagenet  # noqa: F401 - defines the flags
from trainers.common.loop import StepLoop
from trainers.vision import models as resnet_models
from trainers.vision import task as vision_task

restore_defaults = pytest.fixture(autouse=True)(restore_flag_defaults)

BATCH = 16
STEPS = 3


def train(strategy, model_dir, sync, initial=None):
    """STEPS steps of GClip on digits under `strategy`; all model weights after them
    (moving statistics included) and the initial weights."""
    f = parse_flags(f"--model_dir={model_dir}", "--dataset=digits", "--model=resnet8",
                    "--optimizer=gclip", "--tau=0.5", "--learning_rate=0.2",
                    "--lr_scaling_batch=0", "--lr_schedule=constant", "--warmup_epochs=0",
                    f"--global_batch_size={BATCH}", f"--train_steps={STEPS}", "--augment=none",
                    f"--sync_batch_norm={sync}")
    task = vision_task.ImageClassificationTask(experiment(f))
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = task.build_model()
        if initial is not None:
            model.set_weights(initial)
        _, optimizer = plan_and_optimizer(f, task, model.trainable_variables)
    start = [w.numpy().copy() for w in model.weights]
    loop = StepLoop(strategy, model, optimizer, task.forward, jit_compile=False)
    loop.build_optimizer()
    data = strategy.distribute_datasets_from_function(
        lambda ctx: task.train_dataset(ctx, BATCH, 0))
    loop.train(iter(data), STEPS)
    return {w.path: w.numpy() for w in model.weights}, start


def test_two_replicas_with_sync_batch_norm_equal_one_device(two_replicas, tmp_path):
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    one, initial = train(one_device, tmp_path / "one", True)
    two, _ = train(two_replicas, tmp_path / "two", True, initial)
    assert one.keys() == two.keys()
    moved = 0
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
        moved += not np.allclose(one[name], initial[list(one).index(name)])
    assert moved == len(one)  # every weight and moving statistic changed
    # Without synchronization each replica normalises with its own 8 examples: the
    # batch-norm offsets (and all that follows) end elsewhere.
    unsynced_two, _ = train(two_replicas, tmp_path / "two_u", False, initial)
    far = [n for n in one if not np.allclose(unsynced_two[n], one[n], rtol=1e-3, atol=1e-4)]
    assert len(far) > len(one) // 2, far


def test_resnet50_is_rebuilt_with_synchronized_batch_norm():
    plain = resnet_models.build("resnet50", 32, 3, 10)
    synced = resnet_models.build("resnet50", 32, 3, 10, sync_batch_norm=True)
    bns = [l for l in synced.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 53 and all(l.synchronized for l in bns)
    assert not any(getattr(l, "synchronized", False) for l in plain.layers)
    assert synced.count_params() == plain.count_params()
    assert [l.name for l in synced.layers][1:] == [l.name for l in plain.layers][1:]
    assert synced.name == plain.name == "resnet50"
    assert [w.shape for w in synced.weights] == [w.shape for w in plain.weights]
    cifar = resnet_models.build("resnet20", 8, 1, 10, sync_batch_norm=True)
    assert all(l.synchronized for l in cifar.layers
               if isinstance(l, keras.layers.BatchNormalization))


def test_multi_worker_with_sync_batch_norm_equals_one_process(tmp_path):
    """Two workers on 127.0.0.1 (one CPU replica each) == one process, same global batches."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO, free_ports, model_weights

    args = ["--dataset=digits", "--model=resnet8", "--optimizer=gclip", "--tau=0.5",
            "--learning_rate=0.2", "--lr_scaling_batch=0", "--lr_schedule=constant",
            "--warmup_epochs=0", f"--global_batch_size={BATCH}", "--train_steps=4",
            "--steps_per_loop=2", "--checkpoint_every=4", "--eval_every=0", "--eval_batches=1",
            "--augment=none", "--sync_batch_norm", "--nojit_compile", "--deterministic"]
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = {}
    for name, index in (("one", None), ("w0", 0), ("w1", 1)):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        run_args = [f"--model_dir={tmp_path / ('one' if index is None else 'two')}", *args]
        if index is None:
            run_args.append("--strategy=one_device")
        else:
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                           "task": {"type": "worker", "index": index}})
            run_args.append("--strategy=multi_worker_mirrored")
        procs[name] = preloaded.Popen([sys.executable, "-m", "trainers.resnet_imagenet",
                                       *run_args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
    for name, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, (name, err[-3000:])
    summary = json.load(open(tmp_path / "two" / "summary.json"))
    assert summary["num_replicas"] == 2 and summary["task"]["sync_batch_norm"] is True
    one, two = model_weights(tmp_path / "one"), model_weights(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) > 20
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
