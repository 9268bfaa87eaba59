"""Where the test suite's CPU goes, by process: with this folder on PYTHONPATH, every Python
process (pytest's workers and each trainer they start) writes one line to
``$PROCESS_CPU_LOG/<pid>.tsv`` at exit: its own CPU seconds (user + sys), wall seconds,
the xdist worker, the test that was running (PYTEST_CURRENT_TEST, inherited) and argv.
A process killed by a signal writes nothing.

    PROCESS_CPU_LOG=/tmp/cpu PYTHONPATH=bench/process_cpu \\
        .venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests
    python bench/process_cpu/summary.py /tmp/cpu
"""

import atexit
import os
import sys
import time

_START = time.time()


def _record():
    t = os.times()
    argv = " ".join(" ".join(sys.argv).split()[:40])  # one line, no tabs
    line = "\t".join([f"{t.user + t.system:.2f}", f"{time.time() - _START:.2f}",
                      os.environ.get("PYTEST_XDIST_WORKER", ""),
                      os.environ.get("PYTEST_CURRENT_TEST", ""), argv])
    try:
        with open(os.path.join(os.environ["PROCESS_CPU_LOG"], f"{os.getpid()}.tsv"), "w") as f:
            f.write(line + "\n")
    except OSError:
        pass


if os.environ.get("PROCESS_CPU_LOG"):
    atexit.register(_record)
