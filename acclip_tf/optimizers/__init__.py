"""GClip, CClip and ACClip as `keras.optimizers.Optimizer` subclasses."""

from acclip_tf.optimizers.acclip import ACClip
from acclip_tf.optimizers.base import ClippingOptimizer
from acclip_tf.optimizers.cclip import CClip
from acclip_tf.optimizers.gclip import GClip

__all__ = ["ACClip", "CClip", "ClippingOptimizer", "GClip"]
