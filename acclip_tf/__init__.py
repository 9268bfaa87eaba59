"""acclip-tf: clipped optimizers for heavy-tailed gradient noise (Keras 3 / TF).

Implements "Why are Adaptive Methods Good for Attention Models?"
(Zhang, Karimireddy, Veit, Kim, Reddi, Kumar, Sra; NeurIPS 2020):

    import acclip_tf
    model.compile(optimizer=acclip_tf.ACClip(), loss=...)

`acclip_tf.noise` measures gradient noise and its tail index; figures are in
`acclip_tf.plotting` (imported on demand: it loads matplotlib).
"""

from acclip_tf import clipping
from acclip_tf import noise
from acclip_tf import schedules
from acclip_tf.optimizers import ACClip, CClip, ClippingOptimizer, GClip
from acclip_tf.schedules import PolynomialThreshold

__version__ = "0.1.0"

# Regular expressions (matched against `variable.path`) that BERT excludes
# from weight decay: LayerNorm gamma/beta and all biases.
BERT_WEIGHT_DECAY_EXCLUDE = ("layer_norm", "layernorm", "bias")

__all__ = [
    "ACClip",
    "BERT_WEIGHT_DECAY_EXCLUDE",
    "CClip",
    "ClippingOptimizer",
    "GClip",
    "PolynomialThreshold",
    "clipping",
    "noise",
    "schedules",
]
