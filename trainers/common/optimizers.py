"""Flags -> learning-rate schedule and optimizer, from one table.

`OPTIMIZERS` maps each `--optimizer` name to its class and the shared flags it
reads, each with the optimizer's own default: a flag left unset (None) takes
that default, so ``--optimizer=adam`` and ``--optimizer=acclip`` are both
sensible without further flags. ACClip's are the paper's BERT settings
(lr 1e-4, beta_1 0.9, beta_2 0.99, epsilon 1e-5, initial tau 1, weight decay
1e-5); Adam's are BERT's (lr 1e-4, 0.9 / 0.999, epsilon 1e-6).

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

import dataclasses
import math
import re
from typing import Callable

import keras

import acclip_tf
from trainers.common import run_plan
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


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One row of the table: `make(learning_rate, weight_decay, settings)` builds the
    optimizer; `defaults` names the shared flags it reads, with its own defaults."""
    make: Callable
    defaults: dict


def _acclip(normalize):
    def make(lr, wd, s):
        # `normalize` only when asked, so plain acclip works with any acclip_tf.
        extra = {"normalize": True} if normalize else {}
        return acclip_tf.ACClip(
            learning_rate=lr, beta_1=s["beta_1"], beta_2=s["beta_2"], epsilon=s["epsilon"],
            alpha=s["alpha"], initial_tau=s["acclip_initial_tau"], weight_decay=wd,
            track_clip_fraction=True, **extra)
    return make


def _clipped_sgd(cls):
    def make(lr, wd, s):
        return cls(learning_rate=lr, tau=s["tau"], momentum=s["momentum"], epsilon=s["epsilon"],
                   weight_decay=wd, track_clip_fraction=True)
    return make


def _keras_adaptive(cls):
    def make(lr, wd, s):
        # Keras' AdamW refuses weight_decay=None; 0.0 decays nothing, as None does.
        wd = 0.0 if wd is None and cls is keras.optimizers.AdamW else wd
        return cls(learning_rate=lr, beta_1=s["beta_1"], beta_2=s["beta_2"],
                   epsilon=s["epsilon"], weight_decay=wd)
    return make


_ACCLIP_DEFAULTS = dict(learning_rate=1e-4, beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0,
                        acclip_initial_tau=1.0, weight_decay=1e-5)
_ADAM_DEFAULTS = dict(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                      weight_decay=0.0)
_CLIPPED_SGD_DEFAULTS = dict(learning_rate=0.1, momentum=0.9, tau=1.0, epsilon=0.0,
                             weight_decay=0.0)

OPTIMIZERS = {
    "sgd": OptimizerEntry(
        lambda lr, wd, s: keras.optimizers.SGD(learning_rate=lr, momentum=s["momentum"],
                                               weight_decay=wd),
        dict(learning_rate=0.1, momentum=0.9, weight_decay=0.0)),
    "gclip": OptimizerEntry(_clipped_sgd(acclip_tf.GClip), _CLIPPED_SGD_DEFAULTS),
    "cclip": OptimizerEntry(_clipped_sgd(acclip_tf.CClip), _CLIPPED_SGD_DEFAULTS),
    "acclip": OptimizerEntry(_acclip(normalize=False), _ACCLIP_DEFAULTS),
    # ACClip(normalize=True): the ICLR-2020 reference code's mod=1 (clipped momentum over
    # sqrt(beta_2 * v) + epsilon).
    "acclip_norm": OptimizerEntry(_acclip(normalize=True), _ACCLIP_DEFAULTS),
    "adam": OptimizerEntry(_keras_adaptive(keras.optimizers.Adam), _ADAM_DEFAULTS),
    "adamw": OptimizerEntry(_keras_adaptive(keras.optimizers.AdamW),
                            dict(_ADAM_DEFAULTS, weight_decay=0.01)),
    "lamb": OptimizerEntry(_keras_adaptive(keras.optimizers.Lamb),
                           dict(_ADAM_DEFAULTS, learning_rate=1e-3, weight_decay=0.01)),
}
NAMES = tuple(OPTIMIZERS)
# Each optimizer's defaults (the table's second column), by name.
DEFAULTS = {name: entry.defaults for name, entry in OPTIMIZERS.items()}
# The flags of the table, besides --learning_rate and --weight_decay.
SETTING_FLAGS = ("learning_rate", "beta_1", "beta_2", "epsilon", "alpha", "tau",
                 "acclip_initial_tau", "momentum", "weight_decay")


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
        opt = OPTIMIZERS[name].make(schedule, wd, settings)
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


def settings_from_flags(f, family_settings=None):
    """The optimizer's settings from the common flags: its defaults, the model family's
    measured ones, the flags that were set (the learning rate before --lr_scaling_batch)."""
    given = {k: getattr(f, k, None) for k in SETTING_FLAGS}
    check_applicable(f.optimizer, **given)
    if given["tau"] is not None and "acclip_initial_tau" in OPTIMIZERS[f.optimizer].defaults:
        # --tau set ACClip's initial threshold before it got its own flag: say so.
        print(f"note: --tau is the gclip/cclip threshold; --optimizer={f.optimizer} ignores it "
              "(its initial threshold is --acclip_initial_tau)", flush=True)
    return resolve_settings(f.optimizer, family_settings, **given)


def used_settings(name, settings):
    """The settings the optimizer `name` reads (a flag outside its table entry is ignored)."""
    return {k: v for k, v in settings.items() if k in OPTIMIZERS[name].defaults}


def from_flags(flag_values, total_steps, variables=(), exclude_from_weight_decay=(),
               plan=None, family_settings=None):
    """(optimizer, schedule, settings) from the common flags.

    `plan` (a `trainers.common.run_plan.RunPlan`) gives the warm-up and the step
    schedule's boundaries in steps; without it they come from the step flags.
    `family_settings` ({optimizer: {setting: value}}, a task's
    `optimizer_settings`) replaces the table's defaults for that model family
    where a sweep measured better ones; set flags still win.
    """
    f = flag_values
    settings = settings_from_flags(f, family_settings)
    if not settings["learning_rate"] > 0:
        raise TrainerError(f"--learning_rate must be > 0, got {settings['learning_rate']}")
    if f.lr_scaling_batch > 0:
        settings["learning_rate"] *= f.global_batch_size / f.lr_scaling_batch
    if f.warmup_steps < 0:
        raise TrainerError(f"--warmup_steps must be >= 0, got {f.warmup_steps}")
    plan = plan or run_plan.resolve(f)
    schedule = WarmupSchedule(settings["learning_rate"], total_steps, plan.warmup_steps,
                              f.lr_schedule, plan.lr_boundaries, f.lr_decay_rate)
    used = used_settings(f.optimizer, settings)
    optimizer = make_optimizer(f.optimizer, schedule, settings, variables,
                               exclude_from_weight_decay)
    return optimizer, schedule, used


def clip_fraction(optimizer):
    """The optimizer's clip-fraction variable, or None (Keras' optimizers)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if getattr(inner, "track_clip_fraction", False):
        return getattr(inner, "clip_fraction", None)
    return None
