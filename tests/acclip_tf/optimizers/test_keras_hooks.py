"""Version guard: the private Keras / TF hooks the optimizers rely on.

`acclip_tf.optimizers.base.ClippingOptimizer` overrides `_backend_update_step`,
`_clip_gradients` and `_apply_weight_decay`, and `_tf_distribute` calls
`TFOptimizer._all_reduce_sum_gradients`, `TFOptimizer._distribution_strategy`
and `tf.__internal__.distribute.interim.maybe_merge_call`. If a Keras release
changes any of them, these tests fail loudly (and setup.cfg pins the tested
Keras range).
"""

import configparser
import inspect
import os

import keras
import tensorflow as tf
from keras.src.backend.tensorflow.optimizer import TFOptimizer
from keras.src.optimizers.base_optimizer import BaseOptimizer

import acclip_tf


def _keras_range():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(os.path.dirname(__file__), "..", "..", "..", "setup.cfg"))
    line = next(l for l in cfg["options"]["install_requires"].split("\n")
                if l.strip().startswith("keras>="))
    low, high = line.strip()[len("keras>="):].split(",<")
    return tuple(int(p) for p in low.split(".")), tuple(int(p) for p in high.split("."))


def test_keras_version_is_in_the_pinned_range():
    version = tuple(int(p) for p in keras.__version__.split(".")[:2])
    low, high = _keras_range()
    assert low <= version < high, (keras.__version__, low, high)


def test_base_apply_calls_the_overridden_hooks_in_order():
    source = inspect.getsource(BaseOptimizer._backend_apply_gradients)
    positions = [source.find(s) for s in ("self._clip_gradients(grads)",
                                          "self._apply_weight_decay(trainable_variables)",
                                          "self._backend_update_step(")]
    assert -1 not in positions and positions == sorted(positions), positions
    signature = inspect.signature(BaseOptimizer._backend_update_step)
    assert list(signature.parameters) == ["self", "grads", "trainable_variables",
                                          "learning_rate"]


def test_tf_optimizer_private_pieces_exist():
    assert "_all_reduce_sum_gradients" in vars(TFOptimizer)
    assert list(inspect.signature(TFOptimizer._all_reduce_sum_gradients).parameters) == [
        "self", "grads_and_vars"]
    assert "_distribution_strategy" in inspect.getsource(TFOptimizer.__init__)
    assert callable(tf.__internal__.distribute.interim.maybe_merge_call)
    assert issubclass(acclip_tf.ACClip, TFOptimizer)


def test_our_overrides_are_in_place():
    for name in ("_backend_update_step", "_clip_gradients", "_apply_weight_decay",
                 "_use_weight_decay"):
        assert name in vars(acclip_tf.ClippingOptimizer), name
