"""Signals to a program that runs a child process (a sweep's trial, an evidence stage's
sweep): a SIGTERM is passed on, so the child saves its work and exits with the restart
status. Light: no TensorFlow, for the orchestrating programs."""

import contextlib
import signal
import threading


@contextlib.contextmanager
def signals_passed_to(proc):
    """While `proc` runs, SIGTERM to this process is passed on to it (the trainer saves a
    checkpoint and stops) and SIGINT is only recorded (a terminal's Ctrl-C reaches the
    trainer by itself; a second one would stop it at once); yields the list of the signals
    received. Main thread only (elsewhere: nothing is installed)."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def forward(signum, frame):
        received.append(signal.Signals(signum).name)
        if proc.poll() is None and signum == signal.SIGTERM:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
