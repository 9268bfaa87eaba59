"""Configs -> the run's length in steps: train steps, warm-up, step-schedule boundaries.

Each length can be given in steps or in epochs (`train_steps` / `train_epochs` of the
`RunConfig`, `warmup_steps` / `warmup_epochs` and `lr_decay_steps` / `lr_decay_epochs`
of the `OptimizerConfig`). Epochs need the task's `steps_per_epoch`. An epoch length
that is set (not None, not empty) decides; which of a pair the command line gave is
settled at the edge (`config.from_flags`).
"""

import dataclasses

from trainers.common.errors import TrainerError


@dataclasses.dataclass(frozen=True)
class RunPlan:
    train_steps: int
    warmup_steps: int
    lr_boundaries: tuple
    steps_per_epoch: object  # int or None


def _to_steps(epochs, steps_per_epoch, name):
    if steps_per_epoch is None:
        raise TrainerError(f"--{name} needs a task with a known epoch size; give steps instead")
    return int(round(float(epochs) * steps_per_epoch))


def _numbers(values, name, kind):
    try:
        return [kind(v) for v in values]
    except ValueError:
        raise TrainerError(f"--{name} must be a comma-separated list of numbers, got {values}")


def resolve(run, optimizer, steps_per_epoch=None):
    """The `RunPlan` of a `RunConfig` and an `OptimizerConfig`; `steps_per_epoch` from
    `Task.steps_per_epoch`."""
    train_steps = run.train_steps
    if run.train_epochs is not None:
        train_steps = max(1, _to_steps(run.train_epochs, steps_per_epoch, "train_epochs"))

    warmup_steps = optimizer.warmup_steps
    if optimizer.warmup_epochs is not None:
        warmup_steps = _to_steps(optimizer.warmup_epochs, steps_per_epoch, "warmup_epochs")

    boundaries = _numbers(optimizer.lr_decay_steps, "lr_decay_steps", int)
    if optimizer.lr_decay_epochs:
        epochs = _numbers(optimizer.lr_decay_epochs, "lr_decay_epochs", float)
        boundaries = [_to_steps(e, steps_per_epoch, "lr_decay_epochs") for e in epochs]
    if any(b <= 0 for b in boundaries) or list(boundaries) != sorted(set(boundaries)):
        raise TrainerError(f"the step schedule's boundaries must be increasing and > 0, "
                           f"got {boundaries} steps")
    if optimizer.lr_schedule == "step" and not boundaries:
        raise TrainerError("--lr_schedule=step needs --lr_decay_steps or --lr_decay_epochs")
    return RunPlan(int(train_steps), int(warmup_steps), tuple(boundaries), steps_per_epoch)
