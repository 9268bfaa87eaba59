"""The one registry of the optimizers a trainer can run: `--optimizer NAME` -> its entry.

Each entry is data (Optax's "an optimizer is a value"): its name, the factory that
builds it, the settings it reads with its own defaults (the parameters that apply
to it), the scale of its learning rate, where a sweep's rate grid starts, and its
threshold grid when a sweep searches one. The flags, the optimizer factory
(`trainers.common.optimizers`) and the sweep all read this table; a model family's
measured settings live with its task (`Task.optimizer_settings`).

No TensorFlow or Keras at import (the flag modules import this): a factory imports
what it builds when it is called. Adding an optimizer is one entry here.

Defaults: ACClip's are the paper's BERT settings (lr 1e-4, beta_1 0.9, beta_2 0.99,
epsilon 1e-5, initial tau 1, weight decay 1e-5); Adam's are BERT's (lr 1e-4,
0.9 / 0.999, epsilon 1e-6).
"""

import dataclasses
from typing import Callable, Optional

# The scale of an optimizer's step, hence of its learning rate.
GRADIENT_SCALE = "gradient"  # steps ~ lr * gradient: SGD-like rates (0.01 .. 1)
NORMALISED = "normalised"  # steps ~ lr per coordinate: Adam-like rates (1e-4 .. 1e-2)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer: `factory(learning_rate, weight_decay, settings)` builds it from
    `defaults` (the settings it reads, each with its default) as resolved for a run."""
    name: str
    factory: Callable
    defaults: dict
    lr_scale: str
    # Centre of a sweep's default learning-rate grid (the edge extension corrects a poor
    # one): the probe of issue 10 (a 2-layer causal LM: SGD 0.1 converged and 0.3
    # diverged, Adam 1e-3, ACClip 0.3, normalised ACClip 1e-3).
    lr_centre: float
    # The clipping threshold a sweep searches (`tau`), with its default grid; None: none.
    tau_grid: Optional[tuple] = None
    # In the paper's comparison (a sweep's default --optimizers); False: a baseline the
    # trainers offer (AdamW, Lamb) that the paper does not compare.
    compared: bool = True

    def applies(self, setting):
        """Whether this optimizer reads `setting` (e.g. "epsilon", "momentum")."""
        return setting in self.defaults


def _sgd(lr, wd, s):
    import keras

    return keras.optimizers.SGD(learning_rate=lr, momentum=s["momentum"], weight_decay=wd)


def _clipped_sgd(class_name):
    def make(lr, wd, s):
        import acclip_tf

        return getattr(acclip_tf, class_name)(
            learning_rate=lr, tau=s["tau"], momentum=s["momentum"], epsilon=s["epsilon"],
            weight_decay=wd, track_clip_fraction=True)
    return make


def _acclip(normalize):
    def make(lr, wd, s):
        import acclip_tf

        # `normalize` only when asked, so plain acclip works with any acclip_tf.
        extra = {"normalize": True} if normalize else {}
        return acclip_tf.ACClip(
            learning_rate=lr, beta_1=s["beta_1"], beta_2=s["beta_2"], epsilon=s["epsilon"],
            alpha=s["alpha"], initial_tau=s["acclip_initial_tau"], weight_decay=wd,
            track_clip_fraction=True, **extra)
    return make


def _keras_adaptive(class_name):
    def make(lr, wd, s):
        import keras

        cls = getattr(keras.optimizers, class_name)
        # Keras' AdamW refuses weight_decay=None; 0.0 decays nothing, as None does.
        wd = 0.0 if wd is None and class_name == "AdamW" else wd
        return cls(learning_rate=lr, beta_1=s["beta_1"], beta_2=s["beta_2"],
                   epsilon=s["epsilon"], weight_decay=wd)
    return make


_ACCLIP = dict(learning_rate=1e-4, beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0,
               acclip_initial_tau=1.0, weight_decay=1e-5)
_ADAM = dict(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.0)
_CLIPPED_SGD = dict(learning_rate=0.1, momentum=0.9, tau=1.0, epsilon=0.0, weight_decay=0.0)

_SPECS = (
    OptimizerSpec("sgd", _sgd, dict(learning_rate=0.1, momentum=0.9, weight_decay=0.0),
                  GRADIENT_SCALE, 0.1),
    # GClip clips the global gradient norm (default tau 1); CClip each coordinate, whose
    # gradients are much smaller (~1e-3 in the probe), so its grid sits two decades lower.
    OptimizerSpec("gclip", _clipped_sgd("GClip"), _CLIPPED_SGD, GRADIENT_SCALE, 0.1,
                  tau_grid=(0.1, 1.0, 10.0)),
    OptimizerSpec("cclip", _clipped_sgd("CClip"), _CLIPPED_SGD, GRADIENT_SCALE, 0.1,
                  tau_grid=(1e-3, 1e-2, 1e-1)),
    # Algorithm 1 as printed: a step on the gradient's scale.
    OptimizerSpec("acclip", _acclip(normalize=False), _ACCLIP, GRADIENT_SCALE, 0.3),
    # ACClip(normalize=True): the ICLR-2020 reference code's mod=1 (clipped momentum over
    # sqrt(beta_2 * v) + epsilon).
    OptimizerSpec("acclip_norm", _acclip(normalize=True), _ACCLIP, NORMALISED, 1e-3),
    OptimizerSpec("adam", _keras_adaptive("Adam"), _ADAM, NORMALISED, 1e-3),
    OptimizerSpec("adamw", _keras_adaptive("AdamW"), dict(_ADAM, weight_decay=0.01),
                  NORMALISED, 1e-3, compared=False),
    OptimizerSpec("lamb", _keras_adaptive("Lamb"),
                  dict(_ADAM, learning_rate=1e-3, weight_decay=0.01), NORMALISED, 1e-2,
                  compared=False),
)

OPTIMIZERS = {spec.name: spec for spec in _SPECS}
NAMES = tuple(OPTIMIZERS)
# Every setting some optimizer reads (the flags of the same names).
SETTINGS = tuple(dict.fromkeys(k for spec in _SPECS for k in spec.defaults))
# The paper's comparison, in its order (a sweep's default).
COMPARED = tuple(spec.name for spec in _SPECS if spec.compared)
# What --optimizer runs when not given: the paper's.
DEFAULT = "acclip"
# The optimizers whose threshold (`tau`) a sweep searches.
TAU_OPTIMIZERS = tuple(spec.name for spec in _SPECS if spec.tau_grid)


def readers(setting):
    """', '-joined names of the optimizers that read `setting` (for the flags' help)."""
    return ", ".join(spec.name for spec in _SPECS if spec.applies(setting))
