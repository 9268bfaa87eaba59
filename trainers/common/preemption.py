"""Preemption: SIGTERM (a preemptible VM's or a scheduler's notice) or SIGINT stops a
run at the next loop boundary with a checkpoint at that step, on every worker.

The handler only records the signal; the training loop asks `requested()` after each
host loop (every --steps_per_loop steps). Under MultiWorkerMirrored (or TPU) strategies
the workers agree through a one-number all-reduce (SUM of the workers' flags), so all of
them stop after the same loop and save the same step, even when the signal reached them
at different times. TensorFlow's own `PreemptionCheckpointHandler` does this for
MultiWorkerMirrored and TPU strategies only and wraps the step function; this loop runs on
every strategy, so it does the same agreement itself.

The program then exits with `EXIT_CODE` (42, the status TensorFlow's preemption handling
uses on Borg and Cloud TPU to ask for a restart); rerunning the same command resumes from
that checkpoint, bit-exactly under --deterministic. A second signal while stopping ends
the program at once with the default action. Grace period needed: one host loop
(steps_per_loop x seconds per step) plus one checkpoint save.

Cloud maintenance notices take the same path (`MaintenanceWatch`, --maintenance_events):
a Compute Engine VM (Cloud TPU VMs included) announces a host maintenance that will stop
it in its metadata, ``instance/maintenance-event`` = TERMINATE_ON_HOST_MAINTENANCE, about
60 s ahead (the notice TensorFlow's own GCE watcher polls); a thread polls it every
`MAINTENANCE_POLL_S` seconds and, on that value, stops the run as a signal would. The
metadata server is ``metadata.google.internal`` or ``$GCE_METADATA_HOST``
(google-auth's variable).

A lost peer (a worker killed or crashed under MultiWorkerMirrored) makes the next
collective fail within seconds (TensorFlow's heartbeats); `lost_worker` turns that error
into one line naming the peer and the last checkpoint, with the same restart status.
"""

import os
import re
import signal
import threading
import urllib.error
import urllib.request

import tensorflow as tf

from trainers.common.errors import RESTART_EXIT_CODE, Interrupted

EXIT_CODE = RESTART_EXIT_CODE
SIGNALS = (signal.SIGTERM, signal.SIGINT)
MAINTENANCE_PATH = "/computeMetadata/v1/instance/maintenance-event"
MAINTENANCE_STOP = "TERMINATE_ON_HOST_MAINTENANCE"  # MIGRATE_ON_...: the VM keeps running
MAINTENANCE_POLL_S = 5.0


class Preempted(Interrupted):
    """The run stopped on a signal after saving a checkpoint (exit `EXIT_CODE`)."""


def maintenance_event(host=None, timeout=2.0):
    """The VM's pending maintenance event from the Compute Engine metadata server ("NONE",
    MAINTENANCE_STOP, ...), or None when the server does not answer."""
    host = host or os.environ.get("GCE_METADATA_HOST", "metadata.google.internal")
    request = urllib.request.Request(f"http://{host}{MAINTENANCE_PATH}",
                                     headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode().strip()
    except (urllib.error.URLError, OSError, ValueError):
        return None


class MaintenanceWatch:
    """A daemon thread that polls `maintenance_event` and calls `on_stop(event)` once
    when the VM is about to be stopped for maintenance. A server that does not answer
    the first poll is not a cloud VM's: the watch says so once and ends."""

    def __init__(self, on_stop, interval=None):
        self.on_stop = on_stop
        self.interval = MAINTENANCE_POLL_S if interval is None else interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="maintenance-watch",
                                        daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._done.set()

    def _poll(self):
        answered = False
        while not self._done.is_set():
            event = maintenance_event()
            if event is None and not answered:
                print("note: --maintenance_events: no Compute Engine metadata server "
                      "answered; maintenance notices are not watched", flush=True)
                return
            answered = answered or event is not None
            if event == MAINTENANCE_STOP:
                self.on_stop(event)
                return
            self._done.wait(self.interval)


class PreemptionWatch:
    """Records SIGTERM/SIGINT (main thread only) and, with `maintenance` on, a cloud VM's
    maintenance notice, and tells the loop, all workers agreed, whether to stop. A
    context manager: the previous handlers come back on exit."""

    def __init__(self, strategy, maintenance="off"):
        # maintenance: config.MAINTENANCE_EVENTS (auto: on under a TPU strategy)
        self.strategy = strategy
        self.signal = None
        self.signum = None  # the signal received, when it was one (not a notice)
        self._previous = {}
        self._agree = tf.function(self._agree_fn)
        if maintenance == "auto":
            maintenance = "on" if isinstance(strategy, tf.distribute.TPUStrategy) else "off"
        self._maintenance = MaintenanceWatch(self._notice) if maintenance == "on" else None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        if self._maintenance is not None:
            self._maintenance.start()
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if self._maintenance is not None:
            self._maintenance.stop()
        return False

    def _notice(self, event):
        if self.signal is None:
            self.signal = f"a maintenance notice ({event})"
            print(f"{event}: the VM stops soon: stopping after this loop with a checkpoint",
                  flush=True)

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now, the default way
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.signal = signal.Signals(signum).name
        self.signum = signum
        print(f"{self.signal} received: stopping after this loop with a checkpoint",
              flush=True)

    def _agree_fn(self, flag):
        per_replica = self.strategy.run(lambda x: tf.identity(x), args=(flag,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def requested(self):
        """Whether any worker has been signalled (a collective: every worker calls it at
        the same loop boundary)."""
        local = tf.constant(0.0 if self.signal is None else 1.0)
        agreed = float(self._agree(local).numpy()) > 0
        if agreed and self.signal is None:
            self.signal = "a peer's signal"
        return agreed


class WorkerLost(Interrupted):
    """A peer of a multi-worker run stopped (killed, preempted, crashed): this worker ends
    too, with one line and the restart status; rerunning every worker resumes."""


# How TensorFlow's collectives name a task that stopped answering.
_TASK = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")
# The errors a collective raises when a peer is gone.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
               tf.errors.CancelledError, tf.errors.InternalError,
               tf.errors.DeadlineExceededError)


def lost_worker(strategy, error, checkpoint):
    """`WorkerLost` for a collective's `error` under a multi-worker strategy (naming the
    peer, its address, this run's last checkpoint and what to do), else None."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(error, PEER_ERRORS) or resolver is None or resolver.task_type is None:
        return None
    cluster = resolver.cluster_spec().as_dict()
    me = (resolver.task_type, int(resolver.task_id))
    peers = [(job, int(task)) for job, task in _TASK.findall(str(error))
             if (job, int(task)) != me]
    if peers:
        job, task = peers[0]
        addresses = cluster.get(job, [])
        address = f" ({addresses[task]})" if task < len(addresses) else ""
        who = f"{job} {task}{address}"
    else:
        who = "a peer worker"
    resume = (f"checkpoint {checkpoint}" if checkpoint else "no checkpoint yet (it starts over)")
    return WorkerLost(f"lost {who}: the collective failed ({type(error).__name__}); "
                      f"last {resume}; restart every worker with the same command to resume")
