"""Helpers of the ResNet trainer's tests: flags parsed in-process, tiny image folders."""

import contextlib
import os

import numpy as np


def parse_flags(*args):
    """absl's FLAGS parsed from a fresh ResNet trainer command line (`args`)."""
    from absl import flags

    from trainers import resnet_imagenet  # noqa: F401 - defines the flags

    f = flags.FLAGS
    f.unparse_flags()
    f(["resnet_imagenet", *args])
    return f


def experiment(f):
    """The `ExperimentConfig` of parsed flags, as the runner builds it (the task's
    recipe under the flags given)."""
    from trainers.common import config
    from trainers.vision.task import ImageClassificationTask

    return config.experiment_from_flags("trainers.resnet_imagenet", ImageClassificationTask, f)


def configs(f):
    """(RunConfig, OptimizerConfig) of parsed flags, as the runner builds them."""
    e = experiment(f)
    return e.run, e.optimizer


def plan_and_optimizer(f, task, variables=()):
    """(RunPlan, optimizer) of parsed flags and a task, as the runner builds them."""
    from trainers.common import optimizers, run_plan

    run, opt = configs(f)
    plan = run_plan.resolve(run, opt, task.steps_per_epoch(run.global_batch_size))
    optimizer, _, _ = optimizers.build(opt, plan, run.global_batch_size, variables,
                                       task.weight_decay_exclude, task.optimizer_settings)
    return plan, optimizer


def restore_flag_defaults():
    """Generator fixture body: leave absl's FLAGS unparsed after a test."""
    from absl import flags

    yield
    flags.FLAGS.unparse_flags()


def write_png(path, array):
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(np.asarray(array, np.uint8)))


# One solid colour per class, so a decoded pixel tells its class.
COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "eel": (30, 30, 200)}


def make_folder(root, classes=COLOURS, train_per_class=4, val_per_class=2, sizes=((20, 30), (24, 24))):
    """root/{train,val}/<class>/<i>.png, solid-colour images of varying sizes."""
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name in classes:
            for i in range(count):
                h, w = sizes[i % len(sizes)]
                image = np.broadcast_to(np.array(COLOURS[name], np.uint8), (h, w, 3))
                write_png(os.path.join(root, split, name, f"{i}.png"), image)
    return root


@contextlib.contextmanager
def eagerly():
    """Run tf.functions eagerly: the same code without minutes of graph building
    (ResNet50's first traced step takes ~35 s on a 2-core CPU)."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)
