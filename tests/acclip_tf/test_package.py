"""The package itself: lazy imports, `python -OO`, the public names."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(*args, code):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, *args, "-c", code], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_noise_stats_imports_neither_tensorflow_nor_keras():
    out = _python(code=(
        "import sys, acclip_tf.noise.stats, acclip_tf.noise\n"
        "import numpy as np\n"
        "acclip_tf.noise.tail_statistics(np.arange(1.0, 40.0) ** 1.5)\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"))
    assert out.strip() == "[]"


def test_import_and_use_without_docstrings():
    # -OO strips docstrings: the keyword-docs templating must not touch None.
    out = _python("-OO", code=(
        "import acclip_tf\n"
        "for cls in (acclip_tf.ACClip, acclip_tf.CClip, acclip_tf.GClip):\n"
        "    cls()\n"
        "import acclip_tf.noise.measure\n"
        "print('OK')\n"))
    assert out.strip().endswith("OK")


def test_public_names_resolve_lazily():
    import acclip_tf
    from acclip_tf import noise

    for name in acclip_tf.__all__:
        assert getattr(acclip_tf, name) is not None
    from acclip_tf.optimizers import ACClip

    assert acclip_tf.ACClip is ACClip
    for name in noise.__all__:
        assert callable(getattr(noise, name)), name
    assert noise.gradient_noise_norms is noise.measure.gradient_noise_norms
    with pytest.raises(AttributeError):
        acclip_tf.no_such_name
    with pytest.raises(AttributeError):
        noise.no_such_name
