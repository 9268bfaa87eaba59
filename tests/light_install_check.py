"""Run by `make check-light-install` in a fresh venv holding only `pip install .`.

Not a pytest module (installing TensorFlow takes minutes). Checks that the
plain install trains with ACClip and the diagnostics callback, that none of
the extras' libraries came along, that acclip_tf.plotting and the
acclip-<program> scripts name the extra they need, and prints what it found.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import acclip_tf  # noqa: E402

assert os.path.realpath(sys.prefix) in os.path.realpath(acclip_tf.__file__), acclip_tf.__file__
print("acclip_tf", acclip_tf.__version__, "from", os.path.dirname(acclip_tf.__file__))

# TensorFlow 2.21 does not install tensorboard either: keras.callbacks.TensorBoard
# needs `pip install tensorboard` (or the [trainers] extra).
extras = ["keras_hub", "tensorflow_text", "tensorflow_datasets", "matplotlib", "sklearn",
          "tensorboard"]
present = [m for m in extras if importlib.util.find_spec(m) is not None]
assert not present, f"the light install brought {present}"
print("not installed (extras only):", ", ".join(extras))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from acclip_tf.callbacks import OptimizerDiagnostics  # noqa: E402
from acclip_tf.noise import stats  # noqa: E402, F401  (numpy/scipy)

print("tensorflow", tf.__version__, "keras", keras.__version__)
x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
y = (x.sum(axis=1) > 0).astype("int32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(2)])
model.compile(optimizer=acclip_tf.ACClip(learning_rate=0.1, track_clip_fraction=True),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
with tempfile.TemporaryDirectory() as tmp:
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[
        OptimizerDiagnostics(), keras.callbacks.CSVLogger(os.path.join(tmp, "log.csv"))])
    header = open(os.path.join(tmp, "log.csv")).readline()
assert "clip_fraction" in header and "tau_median" in header, header
print("fit: accuracy", [round(a, 3) for a in history.history["accuracy"]],
      "tau_median", [round(t, 4) for t in history.history["tau_median"]])

try:
    import acclip_tf.plotting  # noqa: F401
except ModuleNotFoundError as e:
    assert "acclip-tf[plots]" in str(e), e
    print("acclip_tf.plotting:", e)
else:
    raise AssertionError("acclip_tf.plotting imported without matplotlib")

# `--help` works without the extra (the programs import their libraries late);
# a run says which extra it needs in one line.
script = os.path.join(os.path.dirname(sys.executable), "acclip-resnet-imagenet")
with tempfile.TemporaryDirectory() as tmp:
    proc = subprocess.run([script, f"--model_dir={tmp}/run"], capture_output=True, text=True)
assert proc.returncode == 1 and "acclip-tf[trainers]" in proc.stderr, proc.stderr[-2000:]
print("acclip-resnet-imagenet:", proc.stderr.strip().splitlines()[-1])
print("light install: OK")
