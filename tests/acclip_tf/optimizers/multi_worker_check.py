"""One worker of a two-process MultiWorkerMirroredStrategy run (see test_multi_worker.py).

    python multi_worker_check.py OUT.npz   (TF_CONFIG set by the caller)

Each worker takes its own half of every global batch (different data per
worker), trains once with each optimizer of multi_worker_problem.OPTIMIZERS
through a custom `strategy.run` loop, and saves the final weights and GClip's
global norm.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The shared helpers (numpy_reference, multi_worker_problem) live in tests/; the
# repository root goes before it, so that `import acclip_tf` finds the package and
# not the folder tests/acclip_tf (a namespace package that would shadow it).
_TESTS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path[:0] = [os.path.dirname(_TESTS), _TESTS]

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import multi_worker_problem as problem  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
assert strategy.num_replicas_in_sync == 2
worker = strategy.cluster_resolver.task_id
arrays = {}
for name in problem.OPTIMIZERS:
    weights, norm = problem.train(strategy, name, shard=(worker, 2))
    arrays[f"{name}/norm"] = norm
    arrays.update({f"{name}/{i}": w for i, w in enumerate(weights)})
np.savez(sys.argv[1], **arrays)
