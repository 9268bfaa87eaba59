"""acclip-tf: clipped optimizers for heavy-tailed gradient noise (Keras 3 / TF).

Implements "Why are Adaptive Methods Good for Attention Models?"
(Zhang, Karimireddy, Veit, Kim, Reddi, Kumar, Sra; NeurIPS 2020):

    import acclip_tf
    model.compile(optimizer=acclip_tf.ACClip(), loss=...)

`acclip_tf.callbacks.OptimizerDiagnostics` puts the optimizers' diagnostics
(clip fraction, GClip's norm, skipped steps, ACClip's thresholds) into
`model.fit`'s logs. `acclip_tf.noise` measures gradient noise and its tail
index (`acclip_tf.noise.stats` needs only numpy/scipy); figures are in
`acclip_tf.plotting` (it needs matplotlib: the ``[plots]`` extra).

`__version__` below is the package's only version number (setup.cfg reads it).

Everything here is imported on first use (PEP 562), so that
``import acclip_tf.noise.stats`` loads neither Keras nor TensorFlow. The
optimizer classes are registered with Keras (as ``acclip_tf>ACClip`` etc.)
when `acclip_tf.optimizers` is imported, which any use of `acclip_tf.ACClip`
does; to load a saved ``.keras`` file in a fresh process, ``import
acclip_tf.optimizers`` first.
"""

import importlib

__version__ = "0.1.0"

# Regular expressions (matched against `variable.path`) that BERT excludes
# from weight decay: LayerNorm gamma/beta and all biases.
BERT_WEIGHT_DECAY_EXCLUDE = ("layer_norm", "layernorm", "bias")

# name -> the module that defines it (imported on first access).
_LAZY = {
    "ACClip": "acclip_tf.optimizers",
    "CClip": "acclip_tf.optimizers",
    "ClippingOptimizer": "acclip_tf.optimizers",
    "GClip": "acclip_tf.optimizers",
    "PolynomialThreshold": "acclip_tf.schedules",
}
_SUBMODULES = ("callbacks", "clipping", "noise", "optimizers", "plotting", "schedules")

__all__ = [
    "ACClip",
    "BERT_WEIGHT_DECAY_EXCLUDE",
    "CClip",
    "ClippingOptimizer",
    "GClip",
    "PolynomialThreshold",
    "callbacks",
    "clipping",
    "noise",
    "schedules",
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"acclip_tf.{name}")
    else:
        raise AttributeError(f"module 'acclip_tf' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
