"""Flags -> learning-rate schedule and optimizer.

Each optimizer has its own defaults (`DEFAULTS`); a flag left unset (None)
takes them, so ``--optimizer=adam`` and ``--optimizer=acclip`` are both
sensible without further flags. ACClip's are the paper's BERT settings
(lr 1e-4, beta_1 0.9, beta_2 0.99, epsilon 1e-5, tau 1, weight decay 1e-5);
Adam's are BERT's (lr 1e-4, 0.9 / 0.999, epsilon 1e-6).
"""

import math
import re

import keras

import acclip_tf
from trainers.common import run_plan
from trainers.common.errors import TrainerError

DEFAULTS = {
    "acclip": dict(learning_rate=1e-4, beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0,
                   tau=1.0, weight_decay=1e-5),
    "adam": dict(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.0),
    "adamw": dict(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01),
    "lamb": dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01),
    "sgd": dict(learning_rate=0.1, momentum=0.9, weight_decay=0.0),
    "gclip": dict(learning_rate=0.1, momentum=0.9, tau=1.0, weight_decay=0.0),
    "cclip": dict(learning_rate=0.1, momentum=0.9, tau=1.0, weight_decay=0.0),
}



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


def resolve_settings(name, **overrides):
    """The optimizer's defaults with the flags that were set (not None) on top."""
    if name not in DEFAULTS:
        raise TrainerError(
            f"unknown optimizer {name!r}; choose one of {', '.join(DEFAULTS)}"
        )
    settings = dict(DEFAULTS[name])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def make_optimizer(name, schedule, settings, variables=(), exclude_from_weight_decay=()):
    """Build the optimizer (not yet its slots).

    `exclude_from_weight_decay`: regular expressions searched in each of
    `variables`' `path` (e.g. `acclip_tf.BERT_WEIGHT_DECAY_EXCLUDE`); the
    matching variables are excluded by identity, which works the same for
    Keras' optimizers (whose own patterns only see `variable.name`) and ours.
    """
    s = settings
    wd = s.get("weight_decay") or None
    try:
        if name == "acclip":
            opt = acclip_tf.ACClip(
                learning_rate=schedule, beta_1=s["beta_1"], beta_2=s["beta_2"],
                epsilon=s["epsilon"], alpha=s["alpha"], initial_tau=s["tau"],
                weight_decay=wd, track_clip_fraction=True)
        elif name in ("gclip", "cclip"):
            clipped_sgd = acclip_tf.GClip if name == "gclip" else acclip_tf.CClip
            opt = clipped_sgd(learning_rate=schedule, tau=s["tau"], momentum=s["momentum"],
                              weight_decay=wd, track_clip_fraction=True)
        elif name == "adam":
            opt = keras.optimizers.Adam(learning_rate=schedule, beta_1=s["beta_1"],
                                        beta_2=s["beta_2"], epsilon=s["epsilon"],
                                        weight_decay=wd)
        elif name == "adamw":
            opt = keras.optimizers.AdamW(learning_rate=schedule, beta_1=s["beta_1"],
                                         beta_2=s["beta_2"], epsilon=s["epsilon"],
                                         weight_decay=s["weight_decay"])
        elif name == "lamb":
            opt = keras.optimizers.Lamb(learning_rate=schedule, beta_1=s["beta_1"],
                                        beta_2=s["beta_2"], epsilon=s["epsilon"],
                                        weight_decay=wd)
        elif name == "sgd":
            opt = keras.optimizers.SGD(learning_rate=schedule, momentum=s["momentum"],
                                       weight_decay=wd)
        else:
            raise TrainerError(f"unknown optimizer {name!r}; choose one of {', '.join(DEFAULTS)}")
    except ValueError as e:
        raise TrainerError(f"--optimizer={name}: {e}")
    if wd and exclude_from_weight_decay:
        excluded = excluded_variables(variables, exclude_from_weight_decay)
        if excluded:
            opt.exclude_from_weight_decay(var_list=excluded)
    return opt


def excluded_variables(variables, patterns):
    pattern = "|".join(f"(?:{p})" for p in patterns)
    return [v for v in variables if re.search(pattern, getattr(v, "path", v.name))]


def from_flags(flag_values, total_steps, variables=(), exclude_from_weight_decay=(),
               plan=None):
    """(optimizer, schedule, settings) from the common flags.

    `plan` (a `trainers.common.run_plan.RunPlan`) gives the warm-up and the step
    schedule's boundaries in steps; without it they come from the step flags.
    """
    f = flag_values
    settings = resolve_settings(
        f.optimizer,
        **{k: getattr(f, k) for k in
           ("learning_rate", "beta_1", "beta_2", "epsilon", "alpha", "tau", "momentum",
            "weight_decay")},
    )
    if not settings["learning_rate"] > 0:
        raise TrainerError(f"--learning_rate must be > 0, got {settings['learning_rate']}")
    if f.lr_scaling_batch > 0:
        settings["learning_rate"] *= f.global_batch_size / f.lr_scaling_batch
    if f.warmup_steps < 0:
        raise TrainerError(f"--warmup_steps must be >= 0, got {f.warmup_steps}")
    plan = plan or run_plan.resolve(f)
    schedule = WarmupSchedule(settings["learning_rate"], total_steps, plan.warmup_steps,
                              f.lr_schedule, plan.lr_boundaries, f.lr_decay_rate)
    # The settings this optimizer reads (a flag outside its DEFAULTS entry is ignored).
    used = {k: v for k, v in settings.items() if k in DEFAULTS[f.optimizer]}
    optimizer = make_optimizer(f.optimizer, schedule, settings, variables,
                               exclude_from_weight_decay)
    return optimizer, schedule, used


def clip_fraction(optimizer):
    """The optimizer's clip-fraction variable, or None (Keras' optimizers)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if getattr(inner, "track_clip_fraction", False):
        return getattr(inner, "clip_fraction", None)
    return None
