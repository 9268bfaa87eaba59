"""Flags -> learning-rate schedule and optimizer, from the one registry.

`trainers.common.optimizer_registry.OPTIMIZERS` holds each `--optimizer` name's
factory and the shared flags it reads, each with the optimizer's own default: a
flag left unset (None) takes that default, so ``--optimizer=adam`` and
``--optimizer=acclip`` are both sensible without further flags.

Every optimizer reads the flags the same way:

* ``--weight_decay``: decoupled weight decay as Keras applies it
  (``variable -= learning_rate * weight_decay * variable`` each step), the same
  variables excluded for all (the task's `weight_decay_exclude`); 0: none.
* ``--epsilon``: every optimizer that has one (ACClip, GClip, CClip, Adam,
  AdamW, Lamb); SGD has none and refuses a given ``--epsilon``.
* ``--tau``: the GClip/CClip threshold; ACClip's initial threshold is
  ``--acclip_initial_tau``.
* A flag the optimizer does not read (e.g. ``--momentum`` for adam) is ignored,
  as a sweep passes the same flags to every optimizer.
"""

import math
import re

import keras

from trainers.common import optimizer_registry as registry
from trainers.common.errors import TrainerError


@keras.saving.register_keras_serializable(package="acclip_trainers")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak` over `warmup_steps`, then `kind`:

    * ``constant``: stays at `peak`;
    * ``linear_decay``: BERT's polynomial decay with power 1, to 0 at `total_steps`;
    * ``cosine``: half a cosine from `peak` to 0 at `total_steps`.
    * ``step``: `peak` times `decay_rate` to the number of `boundaries`
      (absolute steps) reached (Model Garden's step decay).

    `step` is the optimizer's 0-based iteration counter; step ``s`` of warm-up
    uses ``peak * (s + 1) / warmup_steps`` so the first step is not wasted.
    """

    def __init__(self, peak, total_steps, warmup_steps=0, kind="linear_decay",
                 boundaries=(), decay_rate=0.1):
        if kind not in ("constant", "linear_decay", "cosine", "step"):
            raise ValueError(f"unknown lr schedule {kind!r}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.boundaries = [int(b) for b in boundaries]
        self.decay_rate = float(decay_rate)

    def __call__(self, step):
        from keras import ops

        step = ops.cast(step, "float32")
        peak = ops.cast(self.peak, "float32")
        warmup = float(max(self.warmup_steps, 0))
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - warmup) / decay_steps, 0.0, 1.0)
        if self.kind == "constant":
            after = peak
        elif self.kind == "linear_decay":
            after = peak * (1.0 - progress)
        elif self.kind == "step":
            passed = sum(ops.cast(step >= float(b), "float32") for b in self.boundaries)
            after = peak * ops.power(self.decay_rate, passed)
        else:
            after = peak * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if warmup <= 0:
            return after
        ramp = peak * ops.minimum((step + 1.0) / warmup, 1.0)
        return ops.where(step < warmup, ramp, after)

    def get_config(self):
        return dict(peak=self.peak, total_steps=self.total_steps,
                    warmup_steps=self.warmup_steps, kind=self.kind,
                    boundaries=list(self.boundaries), decay_rate=self.decay_rate)


OPTIMIZERS = registry.OPTIMIZERS
NAMES = registry.NAMES
# Each optimizer's defaults (the settings it reads), by name.
DEFAULTS = {name: spec.defaults for name, spec in OPTIMIZERS.items()}
# The flags of the table's settings.
SETTING_FLAGS = registry.SETTINGS


def _unknown(name):
    return TrainerError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def check_applicable(name, **given):
    """Refuse a given flag that means nothing to this optimizer where silence would
    mislead: --epsilon for an optimizer without one."""
    if name not in OPTIMIZERS:
        raise _unknown(name)
    if given.get("epsilon") is not None and "epsilon" not in OPTIMIZERS[name].defaults:
        raise TrainerError(f"--epsilon does not apply to --optimizer={name} (it has no "
                           "epsilon); leave it unset")


def resolve_settings(name, family_settings=None, **overrides):
    """The optimizer's defaults, then the model family's measured settings
    (`family_settings[name]`, a task's `optimizer_settings`), then the flags that
    were set (not None)."""
    if name not in OPTIMIZERS:
        raise _unknown(name)
    settings = dict(OPTIMIZERS[name].defaults)
    settings.update((family_settings or {}).get(name, {}))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def make_optimizer(name, schedule, settings, variables=(), exclude_from_weight_decay=()):
    """Build the optimizer (not yet its slots).

    `exclude_from_weight_decay`: regular expressions searched in each of
    `variables`' `path` (e.g. `acclip_tf.BERT_WEIGHT_DECAY_EXCLUDE`); the
    matching variables are excluded by identity, which works the same for
    Keras' optimizers (whose own patterns only see `variable.name`) and ours.
    """
    if name not in OPTIMIZERS:
        raise _unknown(name)
    wd = settings.get("weight_decay") or None
    try:
        opt = OPTIMIZERS[name].factory(schedule, wd, settings)
    except (ValueError, TypeError) as e:
        raise TrainerError(f"--optimizer={name}: {e}")
    if wd and exclude_from_weight_decay:
        excluded = excluded_variables(variables, exclude_from_weight_decay)
        if excluded:
            opt.exclude_from_weight_decay(var_list=excluded)
    return opt


def excluded_variables(variables, patterns):
    pattern = "|".join(f"(?:{p})" for p in patterns)
    return [v for v in variables if re.search(pattern, getattr(v, "path", v.name))]


def config_settings(config, family_settings=None):
    """The settings of an `OptimizerConfig`: the registry's defaults, the model family's
    measured ones, the ones the config gives (the learning rate before lr_scaling_batch)."""
    given = config.given_settings()
    check_applicable(config.optimizer, **given)
    if "tau" in given and "acclip_initial_tau" in OPTIMIZERS[config.optimizer].defaults:
        # --tau set ACClip's initial threshold before it got its own flag: say so.
        print(f"note: --tau is the gclip/cclip threshold; --optimizer={config.optimizer} "
              "ignores it (its initial threshold is --acclip_initial_tau)", flush=True)
    return resolve_settings(config.optimizer, family_settings, **given)


def used_settings(name, settings):
    """The settings the optimizer `name` reads (a flag outside its table entry is ignored)."""
    return {k: v for k, v in settings.items() if k in OPTIMIZERS[name].defaults}


def run_settings(config, family_settings=None):
    """The settings an `OptimizerConfig`'s optimizer runs with and reads (what
    --show_optimizer_settings prints and a sweep's --family_settings runs)."""
    return used_settings(config.optimizer, config_settings(config, family_settings))


def build(config, plan, global_batch_size, variables=(), exclude_from_weight_decay=(),
          family_settings=None):
    """(optimizer, schedule, settings) of an `OptimizerConfig`.

    `plan` (a `trainers.common.run_plan.RunPlan`) gives the run's length, the warm-up and
    the step schedule's boundaries in steps. `family_settings` ({optimizer: {setting:
    value}}, a task's `optimizer_settings`) replaces the registry's defaults for that
    model family where a sweep measured better ones; settings the config gives still win.
    """
    settings = config_settings(config, family_settings)
    if config.lr_scaling_batch > 0:
        settings["learning_rate"] *= global_batch_size / config.lr_scaling_batch
    schedule = WarmupSchedule(settings["learning_rate"], plan.train_steps, plan.warmup_steps,
                              config.lr_schedule, plan.lr_boundaries, config.lr_decay_rate)
    used = used_settings(config.optimizer, settings)
    optimizer = make_optimizer(config.optimizer, schedule, settings, variables,
                               exclude_from_weight_decay)
    return optimizer, schedule, used


def clip_fraction(optimizer):
    """The optimizer's clip-fraction variable, or None (Keras' optimizers)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if getattr(inner, "track_clip_fraction", False):
        return getattr(inner, "clip_fraction", None)
    return None
