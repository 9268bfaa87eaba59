"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 == one process.

Each worker feeds its own half of every global batch. Both must end with
identical weights, equal to a one-device run on the whole global batch.
"""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

import preloaded
import multi_worker_problem as problem
from conftest import free_ports

HERE = os.path.dirname(os.path.abspath(__file__))


def test_two_workers_equal_one_process(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                         "task": {"type": "worker", "index": index}}))
        processes.append(preloaded.Popen(
            [sys.executable, os.path.join(HERE, "multi_worker_check.py"),
             str(tmp_path / f"w{index}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for p in processes:
        try:
            outputs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in processes:
                q.kill()
            raise
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]

    results = [np.load(tmp_path / f"w{i}.npz") for i in range(2)]
    for name in problem.OPTIMIZERS:
        reference, norm = problem.train(tf.distribute.OneDeviceStrategy("/cpu:0"), name)
        for i, expected in enumerate(reference):
            np.testing.assert_array_equal(results[0][f"{name}/{i}"], results[1][f"{name}/{i}"])
            np.testing.assert_allclose(results[0][f"{name}/{i}"], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(results[0][f"{name}/norm"]), norm, rtol=1e-5)
