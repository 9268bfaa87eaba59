"""Flags -> the run's length in steps: train steps, warm-up, step-schedule boundaries.

Each length can be given in steps or in epochs (`--train_steps` /
`--train_epochs`, `--warmup_steps` / `--warmup_epochs`, `--lr_decay_steps` /
`--lr_decay_epochs`). Epochs need the task's `steps_per_epoch`. Of a pair, the
one given on the command line wins over one left at its default (so a trainer
may default to epochs and a user still pass `--train_steps=100`); giving both
is an error; when neither is given, the epoch flag's default is used if it has
one.
"""

import dataclasses

from trainers.common.errors import TrainerError


@dataclasses.dataclass(frozen=True)
class RunPlan:
    train_steps: int
    warmup_steps: int
    lr_boundaries: tuple
    steps_per_epoch: object  # int or None


def _explicit(f, name):
    return not f[name].using_default_value


def _use_epochs(f, steps_name, epochs_name):
    """Whether the (set) epoch flag decides rather than the steps flag."""
    if _explicit(f, steps_name) and _explicit(f, epochs_name):
        raise TrainerError(f"give --{steps_name} or --{epochs_name}, not both")
    return not _explicit(f, steps_name)


def _to_steps(epochs, steps_per_epoch, name):
    if steps_per_epoch is None:
        raise TrainerError(f"--{name} needs a task with a known epoch size; give steps instead")
    return int(round(float(epochs) * steps_per_epoch))


def _numbers(values, name, kind):
    try:
        return [kind(v) for v in values]
    except ValueError:
        raise TrainerError(f"--{name} must be a comma-separated list of numbers, got {values}")


def resolve(f, steps_per_epoch=None):
    """The `RunPlan` the flags ask for; `steps_per_epoch` from `Task.steps_per_epoch`."""
    train_steps = f.train_steps
    if f.train_epochs is not None and _use_epochs(f, "train_steps", "train_epochs"):
        if not f.train_epochs > 0:
            raise TrainerError(f"--train_epochs must be > 0, got {f.train_epochs}")
        train_steps = max(1, _to_steps(f.train_epochs, steps_per_epoch, "train_epochs"))

    warmup_steps = f.warmup_steps
    if f.warmup_epochs is not None and _use_epochs(f, "warmup_steps", "warmup_epochs"):
        if f.warmup_epochs < 0:
            raise TrainerError(f"--warmup_epochs must be >= 0, got {f.warmup_epochs}")
        warmup_steps = _to_steps(f.warmup_epochs, steps_per_epoch, "warmup_epochs")

    boundaries = _numbers(f.lr_decay_steps, "lr_decay_steps", int)
    if f.lr_decay_epochs and _use_epochs(f, "lr_decay_steps", "lr_decay_epochs"):
        epochs = _numbers(f.lr_decay_epochs, "lr_decay_epochs", float)
        boundaries = [_to_steps(e, steps_per_epoch, "lr_decay_epochs") for e in epochs]
    if any(b <= 0 for b in boundaries) or list(boundaries) != sorted(set(boundaries)):
        raise TrainerError(f"the step schedule's boundaries must be increasing and > 0, "
                           f"got {boundaries} steps")
    if f.lr_schedule == "step" and not boundaries:
        raise TrainerError("--lr_schedule=step needs --lr_decay_steps or --lr_decay_epochs")
    return RunPlan(int(train_steps), int(warmup_steps), tuple(boundaries), steps_per_epoch)
