"""Gradient noise: its measurement and its tail statistics.

* `acclip_tf.noise.stats` (numpy/scipy only): tail indices (``stable_tail_index``,
  ``hill_tail_index``), ``tail_statistics``, ``variance_vs_sample_size``,
  synthetic references and ``noise_norms_from_gradients``.
* `acclip_tf.noise.tails` (numpy/scipy only): location- and scale-invariant tail
  estimators on excesses over a high threshold (generalized-Pareto fit, Pickands,
  moment), Hill plots, bootstrap intervals and the calibrated heavy / light /
  cannot-tell rule ``classify_tail`` (import it as a module).
* `acclip_tf.noise.measure` (TensorFlow): ``gradient_noise_norms``, the
  per-minibatch gradients of a Keras model and their noise norms.

Every public name of both is available here as ``acclip_tf.noise.X``; the
TensorFlow half is imported on first use, so ``import acclip_tf.noise`` and
``import acclip_tf.noise.stats`` load neither TensorFlow nor Keras.
"""

import importlib

from acclip_tf.noise.stats import *  # noqa: F401,F403
from acclip_tf.noise.stats import __all__ as _stats_all

_MEASURE = ("GradientNoiseSample", "gradient_noise_norms")

__all__ = sorted([*_stats_all, *_MEASURE])


def __getattr__(name):
    if name in _MEASURE or name == "measure":
        measure = importlib.import_module("acclip_tf.noise.measure")
        return measure if name == "measure" else getattr(measure, name)
    raise AttributeError(f"module 'acclip_tf.noise' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_MEASURE) | {"measure"})
