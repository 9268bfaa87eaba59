"""acclip_tf._compat: the import-time check of the private Keras hooks.

Each test simulates a Keras release that changed one hook (removed it,
changed its parameters, stopped calling it) and checks the one message that
names the hook and the Keras version; one subprocess checks that
`import acclip_tf.optimizers` itself runs the check.
"""

import os
import subprocess
import sys
import textwrap

import keras
import pytest
from keras.src.backend.tensorflow.optimizer import TFOptimizer
from keras.src.optimizers.base_optimizer import BaseOptimizer

from acclip_tf import _compat


def _message(excinfo):
    return str(excinfo.value)


def test_the_installed_keras_passes():
    assert _compat.check_keras_hooks() is None


@pytest.mark.parametrize("name", ["_backend_update_step", "_clip_gradients",
                                  "_apply_weight_decay", "_use_weight_decay"])
def test_a_missing_hook_is_named_with_the_keras_version(monkeypatch, name):
    monkeypatch.delattr(BaseOptimizer, name)
    with pytest.raises(_compat.KerasHookError) as excinfo:
        _compat.check_keras_hooks()
    message = _message(excinfo)
    assert f"BaseOptimizer.{name}`" in message and "no longer exists" in message
    assert f"Keras {keras.__version__}" in message
    assert "\n" not in message


def test_a_changed_signature_is_named(monkeypatch):
    monkeypatch.setattr(BaseOptimizer, "_backend_update_step",
                        lambda self, grads, trainable_variables: None)
    with pytest.raises(_compat.KerasHookError, match=r"_backend_update_step` now takes "
                       r"\(self, grads, trainable_variables\) instead of \(self, grads, "
                       r"trainable_variables, learning_rate\)"):
        _compat.check_keras_hooks()


def test_apply_that_stops_calling_the_hooks_is_named(monkeypatch):
    def _backend_apply_gradients(self, grads, trainable_variables):
        self._backend_update_step(grads, trainable_variables, self.learning_rate)

    monkeypatch.setattr(BaseOptimizer, "_backend_apply_gradients", _backend_apply_gradients)
    with pytest.raises(_compat.KerasHookError, match="_backend_apply_gradients` no longer "
                       "calls `self._clip_gradients"):
        _compat.check_keras_hooks()


def test_a_missing_tensorflow_piece_is_named(monkeypatch):
    monkeypatch.delattr(TFOptimizer, "_all_reduce_sum_gradients")
    with pytest.raises(_compat.KerasHookError, match="TFOptimizer._all_reduce_sum_gradients"):
        _compat.check_keras_hooks()


def test_the_skip_variable_turns_the_check_off(monkeypatch):
    monkeypatch.delattr(BaseOptimizer, "_clip_gradients")
    monkeypatch.setenv(_compat.SKIP_VARIABLE, "1")
    assert _compat.check_keras_hooks() is None


def test_importing_the_optimizers_runs_the_check():
    # A fresh process: Keras "loses" a hook before acclip_tf.optimizers is imported.
    code = textwrap.dedent("""
        import os
        from keras.src.optimizers.base_optimizer import BaseOptimizer
        del BaseOptimizer._clip_gradients
        import acclip_tf
        try:
            acclip_tf.ACClip()
        except ImportError as e:
            print("ERROR:", type(e).__name__, e)
        os.environ["ACCLIP_TF_SKIP_KERAS_CHECK"] = "1"
        import acclip_tf.optimizers
        print("SKIPPED:", acclip_tf.optimizers.ACClip.__name__)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop(_compat.SKIP_VARIABLE, None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    error = next(l for l in lines if l.startswith("ERROR:"))
    assert "KerasHookError" in error and "BaseOptimizer._clip_gradients`" in error
    assert f"Keras {keras.__version__}" in error
    assert "SKIPPED: ACClip" in lines
