"""`subprocess.run` / `subprocess.Popen` for the suite's trainer processes, started as forks
of a process that has already imported TensorFlow, Keras and the trainers' libraries.

A trainer process spends ~5 s of CPU importing TensorFlow and Keras before it reads its
first flag, and the suite starts ~90 of them (docs/benchmarks.md, "Where the CPU goes, by
process"). Here each pytest worker keeps one multiprocessing forkserver whose preload
(`PRELOAD`) does those imports once; a command
`[sys.executable, "-m", module, *args]`, `[..., "-c", code, *args]` or `[..., script, *args]`
then runs in a fork of it exactly as the interpreter would run it (`runpy`, `sys.argv`,
`cwd`, `env`, stdout/stderr on pipes, atexit handlers at the end), with subprocess's exit
status (n for `sys.exit(n)`, -N when killed by signal N).

What stays a fresh interpreter (`subprocess` itself): any other command, a command whose
`env` changes a variable read at import (`IMPORT_TIME_ENV`), e.g. KERAS_BACKEND, and every
command when ACCLIP_TF_FRESH_PROCESSES is set (to compare). Tests about a fresh
interpreter (packaging, import layout, quiet start-up, JAX without TensorFlow, README
snippets) keep using `subprocess` directly.

The preload must not start TensorFlow's runtime (a child could no longer configure its
devices or threads): each child checks that before it runs the command.
"""

import atexit
import io
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from multiprocessing import reduction

PRELOAD = [
    "tensorflow", "keras", "keras_hub", "tensorflow_text", "optuna", "matplotlib.pyplot",
    "acclip_tf", "trainers.common.runner", "trainers.common.study", "trainers.common.sweep",
    "trainers.bert.task", "trainers.lm.task", "trainers.squad.task", "trainers.vision.task",
    "trainers.noise.measurements",
]
# Read when a library is imported (in the forkserver, before the child's env applies).
IMPORT_TIME_ENV = {"KERAS_BACKEND", "KERAS_HOME", "TF_USE_LEGACY_KERAS",
                   "TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH",
                   "PYTHONHASHSEED", "MPLBACKEND", "PROCESS_CPU_LOG"}


def _check_runtime_not_started():
    """In the fork, before the program: the preload must not have started TensorFlow's
    runtime (the program could no longer configure its devices or threads)."""
    from tensorflow.python.eager import context

    started = getattr(context, "_context", None)
    if started is not None and started._context_handle is not None:
        raise RuntimeError("the forkserver's preload started TensorFlow's runtime")


_context = None
_server_env = None  # the environment the forkserver starts with (its imports saw it)
_lock = threading.Lock()


def _forkserver():
    global _context, _server_env
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([*PRELOAD, __name__])
            _context, _server_env = ctx, dict(os.environ)
    return _context


class _Fd:
    """A file descriptor that travels to the forked child (SCM_RIGHTS via the forkserver)."""

    def __init__(self, fd):
        self.fd = fd

    def __reduce__(self):
        return _detach, (reduction.DupFd(self.fd),)


def _detach(dup):
    return dup.detach()


def _child(kind, target, args, cwd, env, stdout, stderr):
    """In the fork: the interpreter's own steps for `python -m/-c/script`."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, stream in ((1, stdout), (2, stderr)):
        os.dup2(stream, fd)
        os.close(stream)
    try:
        _check_runtime_not_started()
        if kind == "-m":
            sys.argv = [target, *args]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        elif kind == "-c":
            sys.argv = ["-c", *args]
            sys.path.insert(0, "")
            exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = [target, *args]
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()


def _parse(argv):
    """(kind, target, args) for a command this module can fork, else None."""
    argv = [str(a) for a in argv]
    if len(argv) < 2 or argv[0] != sys.executable:
        return None
    if argv[1] in ("-m", "-c") and len(argv) >= 3:
        return argv[1], argv[2], argv[3:]
    if not argv[1].startswith("-"):
        return "script", argv[1], argv[2:]
    return None


def _forkable(argv, env):
    parsed = _parse(argv)
    if parsed is None or os.environ.get("ACCLIP_TF_FRESH_PROCESSES"):
        return None
    server = os.environ if _server_env is None else _server_env
    changed = {k for k in set(env) | set(server) if env.get(k) != server.get(k)}
    return None if changed & IMPORT_TIME_ENV else parsed


class Popen:
    """The part of `subprocess.Popen` the suite uses: stdout/stderr PIPE (text), DEVNULL,
    STDOUT or inherited; `poll`, `wait`, `communicate`, `send_signal`, `terminate`,
    `kill`, `returncode`, `pid`. A command it cannot fork gets a `subprocess.Popen`."""

    def __new__(cls, argv, cwd=None, env=None, stdout=None, stderr=None, text=False,
                **kw):
        env = dict(os.environ if env is None else env)
        parsed = _forkable(argv, env)
        piped = subprocess.PIPE in (stdout, stderr)
        if parsed is None or kw or (piped and not text):
            return subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr,
                                    text=text, **kw)
        return super().__new__(cls)

    def __init__(self, argv, cwd=None, env=None, stdout=None, stderr=None, text=False):
        env = dict(os.environ if env is None else env)
        kind, target, args = _parse(argv)
        self.args = list(argv)
        self.returncode = None
        self.stdout = self.stderr = None
        self._readers, self._output = None, {}
        ends = []
        for name, mode in (("stdout", stdout), ("stderr", stderr)):
            if mode == subprocess.PIPE:
                r, w = os.pipe()
                setattr(self, name, io.open(r, "r", encoding="utf-8", errors="replace"))
            elif mode == subprocess.DEVNULL:
                w = os.open(os.devnull, os.O_WRONLY)
            elif mode == subprocess.STDOUT and name == "stderr":
                w = os.dup(ends[0])
            else:
                w = os.dup(1 if name == "stdout" else 2)
            ends.append(w)
        try:
            self._process = _forkserver().Process(
                target=_child, daemon=True,
                args=(kind, target, args, os.path.abspath(cwd or os.getcwd()), env,
                      *map(_Fd, ends)))
            self._process.start()
        finally:
            for w in ends:
                os.close(w)
        self.pid = self._process.pid

    def poll(self):
        if self.returncode is None and not self._process.is_alive():
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout=None):
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, timeout=None):
        """(stdout, stderr) read to their end (None where not piped), then the exit."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._readers is None:
            def read(name, stream):
                self._output[name] = stream.read()
                stream.close()

            self._readers = [threading.Thread(target=read, args=(n, s), daemon=True)
                             for n, s in (("stdout", self.stdout), ("stderr", self.stderr))
                             if s]
            for t in self._readers:
                t.start()
        for t in self._readers:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._output.get("stdout"), self._output.get("stderr")

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def run(argv, cwd=None, env=None, capture_output=False, text=False, timeout=None,
        check=False):
    """`subprocess.run` (capture_output with text) through `Popen` above."""
    if not (capture_output and text):
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=capture_output,
                              text=text, timeout=timeout, check=check)
    p = Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    result = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    if check:
        result.check_returncode()
    return result
