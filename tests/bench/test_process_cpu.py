"""bench/process_cpu: a process started with it on PYTHONPATH records its own CPU time at
exit, under the test that started it, and the summary adds them up by test file."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_each_process_records_its_cpu_under_its_test(tmp_path):
    env = dict(os.environ, PROCESS_CPU_LOG=str(tmp_path),
               PYTHONPATH=os.path.join(ROOT, "bench", "process_cpu"))
    for test in ("tests/a/test_x.py::test_one (call)", "tests/a/test_x.py::test_two (call)",
                 "tests/b/test_y.py::test_three (setup)"):
        env["PYTEST_CURRENT_TEST"] = test
        subprocess.run([sys.executable, "-c", BUSY, "an\targ"], env=env, check=True)
    assert len(os.listdir(tmp_path)) == 3
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "process_cpu",
                                                       "summary.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("3 processes, ")
    x, y = (line.split() for line in out[1:])
    assert x[2:] == ["2", "tests/a/test_x.py"] and y[2:] == ["1", "tests/b/test_y.py"]
    assert 0.6 <= float(x[0]) < 3 and 0.3 <= float(y[0]) < 1.5  # CPU, not wall
