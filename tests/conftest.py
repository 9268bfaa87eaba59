"""Test-session setup shared by all tests.

Two logical CPU devices let MirroredStrategy run two replicas on this
machine; they must be configured before TensorFlow initialises its devices,
so it happens here, at import, before any test module runs TF code.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
    )
except RuntimeError:  # already initialised by an earlier import: keep going
    pass
