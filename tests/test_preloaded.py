"""tests/preloaded.py behaves as `subprocess` does for the commands it forks (exit status,
output, cwd, env, signals); the fork configures TensorFlow's devices itself (the preload
did not start the runtime); a command it must not fork runs in a fresh interpreter."""

import importlib
import os
import signal
import subprocess
import sys

import pytest

import preloaded


@pytest.fixture(autouse=True)
def forking(monkeypatch):
    """These tests are about the fork, also in a run that compares with fresh processes."""
    monkeypatch.delenv("ACCLIP_TF_FRESH_PROCESSES", raising=False)


PROGRAM = r"""
import os, sys
print("out", sys.argv[1:], os.getcwd(), os.environ.get("PRELOADED_TEST"))
print("err line", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def test_exit_status_output_cwd_and_env_are_the_commands(tmp_path):
    env = dict(os.environ, PRELOADED_TEST="seen")
    got = preloaded.run([sys.executable, "-c", PROGRAM, "3", "x"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=120)
    want = subprocess.run([sys.executable, "-c", PROGRAM, "3", "x"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout,
                                                        want.stderr)
    assert got.returncode == 3 and f"['3', 'x'] {tmp_path} seen" in got.stdout


def test_a_module_and_a_script_run_as_main(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys\nprint(__name__, sys.argv[1:])\n")
    got = preloaded.run([sys.executable, str(script), "a"], capture_output=True, text=True,
                        timeout=120)
    assert (got.returncode, got.stdout) == (0, "__main__ ['a']\n")
    got = preloaded.run([sys.executable, "-m", "platform"], capture_output=True, text=True,
                        timeout=120)
    want = subprocess.run([sys.executable, "-m", "platform"], capture_output=True, text=True,
                          timeout=120)
    assert (got.returncode, got.stdout) == (0, want.stdout)


def test_a_signal_ends_the_fork_as_it_ends_a_process():
    p = preloaded.Popen([sys.executable, "-c", "import time; print('up', flush=True); "
                         "time.sleep(60)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
    assert isinstance(p, preloaded.Popen)
    assert p.stdout.readline() == "up\n" and p.poll() is None
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM


def test_the_fork_configures_its_own_devices():
    code = ("import tensorflow as tf\n"
            "cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration(cpu, [tf.config."
            "LogicalDeviceConfiguration()] * 2)\n"
            "print(len(tf.config.list_logical_devices('CPU')))\n")
    got = preloaded.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120)
    assert (got.returncode, got.stdout) == (0, "2\n"), got.stderr[-2000:]


def test_import_time_variables_and_other_commands_get_a_fresh_interpreter():
    env = dict(os.environ, KERAS_BACKEND="numpy")
    p = preloaded.Popen([sys.executable, "-c", "pass"], env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    assert isinstance(p, subprocess.Popen)
    p.communicate(timeout=120)
    p = preloaded.Popen([sys.executable, "-S", "-c", "pass"], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    assert isinstance(p, subprocess.Popen)
    p.communicate(timeout=120)


def test_every_preloaded_module_exists():
    """The forkserver skips a preload that fails to import; a misspelt one would only cost
    time, so it is caught here."""
    for name in preloaded.PRELOAD:
        importlib.import_module(name)
