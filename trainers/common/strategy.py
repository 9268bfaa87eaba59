"""Flags -> a `tf.distribute` strategy, plus who is the chief.

Call `make_strategy` before anything else touches TensorFlow's devices: on a
CPU-only host, ``mirrored`` with ``num_devices=N`` splits the CPU into N
logical devices, which must happen before TF initialises.
"""

import json
import os
import socket
import threading
from urllib.parse import urlparse

import tensorflow as tf

from trainers.common.errors import TrainerError, first_line

TPU_CONNECT_TIMEOUT_S = 60


def _tf_config():
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise TrainerError(f"TF_CONFIG is not valid JSON: {e}")


def _num_workers(tf_config):
    cluster = tf_config.get("cluster", {})
    return sum(len(cluster.get(k, [])) for k in ("chief", "worker"))


def resolve_name(name, tf_config=None, num_gpus=None):
    """`auto` -> the concrete strategy name for this host."""
    if name != "auto":
        return name
    tf_config = _tf_config() if tf_config is None else tf_config
    if _num_workers(tf_config) > 1:
        return "multi_worker_mirrored"
    if num_gpus is None:
        num_gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if num_gpus > 1 else "one_device"


def _split_cpu(num_devices):
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices
        )
    except RuntimeError:
        # Already initialised: fine if it already has enough logical CPUs.
        pass
    found = len(tf.config.list_logical_devices("CPU"))
    if found < num_devices:
        raise TrainerError(
            f"--num_devices={num_devices} but TensorFlow already started with "
            f"{found} CPU device(s); set it before TF initialises"
        )


def _mirrored(num_devices):
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        n = num_devices or len(gpus)
        if n > len(gpus):
            raise TrainerError(f"--num_devices={n} but only {len(gpus)} GPU(s) are visible")
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(n)])
    n = num_devices or 1
    if n > 1:
        _split_cpu(n)
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])


def _check_tpu_reachable(tpu):
    """Fail fast (seconds, not a hang) when the TPU cannot be reached."""
    if tpu in (None, "", "local"):
        if not tf.config.list_physical_devices("TPU"):
            raise TrainerError(
                "--strategy=tpu: no local TPU found (pass --tpu=<name or grpc://host:port> "
                "for a remote one)"
            )
        return
    if tpu.startswith("grpc://"):
        address = urlparse(tpu)
        try:
            with socket.create_connection((address.hostname, address.port or 8470), timeout=10):
                pass
        except OSError as e:
            raise TrainerError(f"--tpu={tpu} is unreachable ({e})")


def _connect_tpu(tpu):
    """TPUClusterResolver + initialize_tpu_system, with a timeout instead of a hang."""
    result = {}

    def connect():
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu="" if tpu == "local" else tpu
            )
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            result["resolver"] = resolver
        except Exception as e:  # noqa: BLE001 - reported in one line below
            result["error"] = e

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(TPU_CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise TrainerError(f"--tpu={tpu}: no answer within {TPU_CONNECT_TIMEOUT_S}s")
    if "error" in result:
        raise TrainerError(f"--tpu={tpu}: cannot initialise the TPU system: "
                           f"{first_line(result['error'])}")
    return result["resolver"]


def make_strategy(name="auto", tpu=None, num_devices=None):
    """The strategy the flags ask for (TPU and multi-worker via their resolvers)."""
    if num_devices is not None and num_devices < 1:
        raise TrainerError(f"--num_devices must be >= 1, got {num_devices}")
    name = resolve_name(name)
    if name == "one_device":
        device = "/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        return _mirrored(num_devices)
    if name == "multi_worker_mirrored":
        if _num_workers(_tf_config()) < 1:
            raise TrainerError("--strategy=multi_worker_mirrored needs TF_CONFIG with a cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        _check_tpu_reachable(tpu)
        return tf.distribute.TPUStrategy(_connect_tpu(tpu))
    raise TrainerError(f"unknown --strategy={name!r}")


def is_chief(strategy):
    """True on the worker that writes model_dir (always true on one host)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(
        resolver, tf.distribute.cluster_resolver.TPUClusterResolver
    ):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
