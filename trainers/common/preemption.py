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

A lost peer (a worker killed or crashed under MultiWorkerMirrored) makes the next
collective fail within seconds (TensorFlow's heartbeats); `lost_worker` turns that error
into one line naming the peer and the last checkpoint, with the same restart status.
"""

import re
import signal
import threading

import tensorflow as tf

from trainers.common.errors import TrainerError

EXIT_CODE = 42
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(TrainerError):
    """The run stopped on a signal after saving a checkpoint (exit `EXIT_CODE`)."""

    exit_code = EXIT_CODE


class PreemptionWatch:
    """Records SIGTERM/SIGINT (main thread only) and tells the loop, all workers agreed,
    whether to stop. A context manager: the previous handlers come back on exit."""

    def __init__(self, strategy):
        self.strategy = strategy
        self.signal = None
        self._previous = {}
        self._agree = tf.function(self._agree_fn)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now, the default way
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.signal = signal.Signals(signum).name
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


class WorkerLost(TrainerError):
    """A peer of a multi-worker run stopped (killed, preempted, crashed): this worker ends
    too, with one line and the restart status; rerunning every worker resumes."""

    exit_code = EXIT_CODE


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
