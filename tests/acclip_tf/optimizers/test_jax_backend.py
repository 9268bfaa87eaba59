"""The optimizers' math is keras.ops only: it runs on Keras' JAX backend too."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("jax")


def test_numpy_reference_check_under_keras_backend_jax():
    script = os.path.join(os.path.dirname(__file__), "jax_backend_check.py")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "JAX BACKEND OK" in result.stdout
