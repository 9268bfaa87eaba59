"""The private Keras hooks the optimizers override, checked at import time.

`acclip_tf.optimizers.base.ClippingOptimizer` runs its whole step on the
aggregated gradient by overriding private methods of Keras'
`BaseOptimizer` (`_backend_update_step`, `_clip_gradients`,
`_apply_weight_decay`, `_use_weight_decay`) and, on the TensorFlow backend,
calls private pieces of `TFOptimizer` and TensorFlow
(`acclip_tf/optimizers/_tf_distribute.py`). A Keras release that renames or
reshapes one of them would not raise anything by itself: the override would
simply stop being called and the optimizer would silently do something else
(clip before the all-reduce, decay twice, ...). So instead of capping Keras at
the tested minor release, `import acclip_tf.optimizers` runs
`check_keras_hooks()`, which raises `KerasHookError` naming the hook and the
installed Keras version when any of them changed.

Set the environment variable ``ACCLIP_TF_SKIP_KERAS_CHECK=1`` to import
anyway (at your own risk; the tests in tests/acclip_tf/optimizers say whether
the step is still right).
"""

import inspect
import os

TESTED_KERAS = "3.15"
SKIP_VARIABLE = "ACCLIP_TF_SKIP_KERAS_CHECK"

# BaseOptimizer methods that ClippingOptimizer overrides or calls, with their
# parameters (None: only their existence is checked).
BASE_HOOKS = {
    "_backend_update_step": ["self", "grads", "trainable_variables", "learning_rate"],
    "_clip_gradients": ["self", "grads"],
    "_apply_weight_decay": ["self", "variables"],
    "_use_weight_decay": ["self", "variable"],
    "_backend_apply_gradients": None,
    "_overwrite_variable_with_gradient": None,
    "_get_variable_index": None,
    "_var_key": None,
    "add_variable_from_reference": None,
}
# `_backend_apply_gradients` must call these, in this order: the overrides only
# take effect through these calls.
APPLY_CALLS = (
    "self._clip_gradients(grads)",
    "self._apply_weight_decay(trainable_variables)",
    "self._backend_update_step(",
)
TF_OPTIMIZER_HOOKS = {"_all_reduce_sum_gradients": ["self", "grads_and_vars"]}


class KerasHookError(ImportError):
    """A private Keras hook the optimizers rely on changed in this Keras release."""


def _fail(keras_version, hook, problem):
    raise KerasHookError(
        f"acclip_tf.optimizers cannot run on Keras {keras_version}: the private Keras hook "
        f"`{hook}` {problem}. The optimizers override it to clip after the all-reduce "
        f"(tested with Keras {TESTED_KERAS}). Install a Keras release where it is "
        f"unchanged (pip install 'keras~={TESTED_KERAS}.0'), or set {SKIP_VARIABLE}=1 "
        "to import anyway at your own risk."
    )


def _parameters(function):
    return list(inspect.signature(function).parameters)


def check_keras_hooks():
    """Raise `KerasHookError` if a hook in `BASE_HOOKS` etc. changed; else None."""
    if os.environ.get(SKIP_VARIABLE, "") not in ("", "0"):
        return
    import keras
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    version = keras.__version__
    for name, parameters in BASE_HOOKS.items():
        hook = f"keras.src.optimizers.base_optimizer.BaseOptimizer.{name}"
        function = getattr(BaseOptimizer, name, None)
        if not callable(function):
            _fail(version, hook, "no longer exists")
        if parameters is not None and _parameters(function) != parameters:
            _fail(version, hook, f"now takes ({', '.join(_parameters(function))}) "
                                 f"instead of ({', '.join(parameters)})")
    try:
        source = inspect.getsource(BaseOptimizer._backend_apply_gradients)
    except (OSError, TypeError):  # no source shipped: cannot look, do not block
        source = None
    if source is not None:
        positions = [source.find(call) for call in APPLY_CALLS]
        if -1 in positions or positions != sorted(positions):
            _fail(
                version,
                "keras.src.optimizers.base_optimizer.BaseOptimizer._backend_apply_gradients",
                "no longer calls " + ", then ".join(f"`{c.rstrip('(')}`" for c in APPLY_CALLS)
                + " in this order",
            )
    if keras.backend.backend() == "tensorflow":
        _check_tensorflow_hooks(version)


def _check_tensorflow_hooks(version):
    import tensorflow as tf
    from keras.src.backend.tensorflow.optimizer import TFOptimizer

    for name, parameters in TF_OPTIMIZER_HOOKS.items():
        hook = f"keras.src.backend.tensorflow.optimizer.TFOptimizer.{name}"
        function = vars(TFOptimizer).get(name)
        if not callable(function):
            _fail(version, hook, "no longer exists")
        if _parameters(function) != parameters:
            _fail(version, hook, f"now takes ({', '.join(_parameters(function))}) "
                                 f"instead of ({', '.join(parameters)})")
    try:
        init_source = inspect.getsource(TFOptimizer.__init__)
    except (OSError, TypeError):
        init_source = None
    if init_source is not None and "_distribution_strategy" not in init_source:
        _fail(version, "keras.src.backend.tensorflow.optimizer.TFOptimizer._distribution_strategy",
              "is no longer set in TFOptimizer.__init__")
    interim = getattr(getattr(getattr(tf, "__internal__", None), "distribute", None),
                      "interim", None)
    if not callable(getattr(interim, "maybe_merge_call", None)):
        _fail(version, "tf.__internal__.distribute.interim.maybe_merge_call",
              f"no longer exists (TensorFlow {tf.__version__})")
