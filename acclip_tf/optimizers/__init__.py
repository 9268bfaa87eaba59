"""GClip, CClip and ACClip as `keras.optimizers.Optimizer` subclasses.

A new clipping rule subclasses `ClippingOptimizer` and implements its
contract (see `acclip_tf.optimizers.base`): `slot_specs()` returning
`SlotSpec`s, the pure `transform(gradient, slots, scalars)` returning a
`Transformed`, optionally `step_scalars(...)` (a NamedTuple such as
`StepScalars`) and `clip_globally(...)` (a `GlobalClip`), and `get_config()`.

Importing this package first checks the private Keras hooks the step
overrides (`acclip_tf._compat.check_keras_hooks`): a Keras release that changed
one raises `acclip_tf._compat.KerasHookError` naming it.
"""

from acclip_tf import _compat

_compat.check_keras_hooks()

# isort: split

from acclip_tf.optimizers.acclip import ACClip
from acclip_tf.optimizers.base import (
    ClippingOptimizer,
    GlobalClip,
    SlotSpec,
    StepScalars,
    Transformed,
)
from acclip_tf.optimizers.cclip import CClip
from acclip_tf.optimizers.gclip import GClip

__all__ = [
    "ACClip",
    "CClip",
    "ClippingOptimizer",
    "GClip",
    "GlobalClip",
    "SlotSpec",
    "StepScalars",
    "Transformed",
]
