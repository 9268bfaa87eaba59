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

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def two_replicas():
    """One MirroredStrategy over the two logical CPUs, shared by all tests.

    A second MirroredStrategy in the same process restarts the collective
    instance keys of the first and its all-reduces then collide ("Shape
    mismatch in the collective instance"), so tests share this one.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        pytest.skip("two logical CPU devices are not configured")
    return tf.distribute.MirroredStrategy(devices)
