"""A sweep's trial: one run of a trainer with the trial's settings, and what the sweep
reads back from it (its curves from metrics.jsonl).

`InProcessTrials` runs the trial in this process: `runner.train` on the base experiment
with the trial's values, its evaluations reported as they happen (so a pruner can stop
it), and no process start-up (TensorFlow's import is most of a trial's fixed cost; the
corpus' cached text reads in milliseconds once it is). One device: the strategy of a sweep
process is made once, so a multi-worker, mirrored or TPU trial runs as a subprocess
(`SubprocessTrials`: the trainer program, its metrics.jsonl read as it grows).

Both write the trial to ``model_dir/<name>`` with its output in ``trainer.log`` there, and
return the same raw result: `read_curves` + exit_code, message, wall_seconds,
steps_trained. A run that ends on a non-finite value is a divergence (exit_code 1), not an
error.
"""

import contextlib
import json
import shlex
import subprocess
import threading
import time

from trainers.common import child_signals
from trainers.common import files
from trainers.common import sweep as sweep_lib
from trainers.common.errors import RESTART_EXIT_CODE, Interrupted, TrainerError
from trainers.common.reporting import read_metrics

CURVE_PREFIXES = {"held_out": "eval_", "fixed_train": "fixed_train_"}


def metric_keys(metric):
    """{objective: the metrics.jsonl key of its `metric`}."""
    return {objective: prefix + metric for objective, prefix in CURVE_PREFIXES.items()}


def read_curves(run_dir, metric="loss", objective="held_out"):
    """A run's curves from its metrics.jsonl: ``curve`` (the objective's), both metrics'
    curves, the last clip fraction and the last training loss (summary.json)."""
    keys = metric_keys(metric)
    key = keys[objective]
    records = (read_metrics(run_dir)
               if files.exists(files.join(run_dir, "metrics.jsonl")) else [])
    if records and not any(key in r for r in records):
        hint = ("set --fixed_train_examples in the trainer's settings"
                if objective == "fixed_train" else "check --metric")
        raise TrainerError(f"no {key} in {run_dir}/metrics.jsonl ({hint})")
    curves = {name: [[r["step"], r[k]] for r in records if k in r] for name, k in keys.items()}
    clips = [r["clip_fraction"] for r in records if "clip_fraction" in r]
    summary_path = files.join(run_dir, "summary.json")
    summary = (json.loads(files.read_text(summary_path))
               if files.exists(summary_path) else {}) or {}
    return dict(curve=curves[objective], held_out_curve=curves["held_out"],
                fixed_train_curve=curves["fixed_train"],
                clip_fraction=clips[-1] if clips else None,
                train_loss=(summary.get("train") or {}).get("loss"),
                train_seconds=summary.get("train_seconds_this_run"))


class InProcessTrials:
    """Trials of `task_class` in this process: `base` (an `ExperimentConfig`) with each
    trial's values, written to ``model_dir/<name>``, chosen on `objective`'s `metric`."""

    def __init__(self, task_class, base, model_dir, metric="loss", objective="held_out"):
        self.task_class, self.base, self.model_dir = task_class, base, model_dir
        self.metric, self.objective = metric, objective
        self.key = metric_keys(metric)[objective]
        self.calls = 0

    def run_dir(self, name):
        return files.join(self.model_dir, name)

    def run(self, name, values, report=None):
        """Train the trial `name` with `values` ({setting: value}); `report(step, value)`
        after each evaluation (it may raise to stop the trial: a pruner). Returns the raw
        result (see the module's docstring); the trainer's printed lines go to its log."""
        import keras

        from trainers.common import runner

        self.calls += 1
        run_dir = self.run_dir(name)
        experiment = self.base.with_values(model_dir=run_dir, **values)

        def on_evaluation(record):
            if report is not None and self.key in record:
                report(record["step"], record[self.key])

        start = time.time()
        code, message = 0, ""
        files.makedirs(run_dir, "a trial's directory")
        try:
            with files.open_file(files.join(run_dir, "trainer.log"), "a") as log, \
                    contextlib.redirect_stdout(log):
                runner.train(self.task_class, experiment, on_evaluation=on_evaluation)
        except Exception as e:  # noqa: BLE001 - a divergence is a result; the rest raises
            if not sweep_lib.NON_FINITE.search(str(e)) or isinstance(e, KeyboardInterrupt):
                raise
            code, message = 1, " ".join(str(e).split())[:300]
        finally:
            keras.backend.clear_session()  # the trial's model and traced steps
        raw = read_curves(run_dir, self.metric, self.objective)
        raw.update(exit_code=code, message=message, wall_seconds=time.time() - start,
                   steps_trained=raw["curve"][-1][0] if raw["curve"] else 0)
        return raw


class SubprocessTrials:
    """Trials as trainer processes: ``command --model_dir=model_dir/<name> <trainer_args>
    --<setting>=<value>...`` (the trial's settings last: an arm's options win). With
    `report`, the parent reads the run's metrics.jsonl as it grows (every `poll_seconds`)
    and stops the process when `report` raises (a pruner)."""

    def __init__(self, command, model_dir, trainer_args, metric="loss", objective="held_out",
                 poll_seconds=1.0):
        self.command, self.model_dir = list(command), model_dir
        self.trainer_args = list(trainer_args)
        self.metric, self.objective, self.poll_seconds = metric, objective, poll_seconds
        self.key = metric_keys(metric)[objective]

    def run_dir(self, name):
        return files.join(self.model_dir, name)

    def argv(self, name, values):
        def flag(key, value):
            if isinstance(value, bool):
                return f"--{key}" if value else f"--no{key}"
            return f"--{key}={value if isinstance(value, str) else repr(value)}"

        return (self.command + [f"--model_dir={self.run_dir(name)}"] + self.trainer_args
                + [flag(k, v) for k, v in values.items()])

    def _reporter(self, run_dir, report):
        """A function that reports the evaluations metrics.jsonl gained since it last ran."""
        path = files.join(run_dir, "metrics.jsonl")
        last = [None]

        def poll():
            if report is None or not files.exists(path):
                return
            lines = files.read_text(path, errors="replace").split("\n")[:-1]  # whole lines
            for record in (json.loads(line) for line in lines if line.strip()):
                if record.get(self.key) is not None and (last[0] is None
                                                         or record["step"] > last[0]):
                    last[0] = record["step"]
                    report(record["step"], record[self.key])

        return poll

    def run(self, name, values, report=None):
        """Run the trial `name` with `values`; the raw result (see the module's docstring).
        A trainer that fails for another reason than a non-finite value is a TrainerError."""
        run_dir = self.run_dir(name)
        files.makedirs(run_dir, "a trial's directory")
        before = read_curves(run_dir, self.metric, self.objective)["curve"]
        start_step = before[-1][0] if before else 0  # a retried trial resumes its run
        log_path = files.join(run_dir, "trainer.log")
        cmd = self.argv(name, values)
        poll = self._reporter(run_dir, report)
        start = time.time()
        with files.open_file(log_path, "a") as log:
            log.write(f"$ {shlex.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            copy = threading.Thread(target=_copy_lines, args=(proc.stdout, log))
            copy.start()
            try:
                with child_signals.signals_passed_to(proc) as received:
                    while _running(proc, self.poll_seconds):
                        poll()
                    poll()  # the evaluations of its last moments
            except BaseException:  # pruned (or interrupted): stop the trainer
                proc.kill()
                raise
            finally:
                proc.wait()
                copy.join()
        code = proc.returncode
        message = ""
        if received or code == RESTART_EXIT_CODE:
            # The trainer saved its run and stopped: the sweep stops too, and its next run
            # reruns this trial, which resumes (a trial that had just finished, ends).
            what = f"signal {received[0]}" if received else f"exit {code}"
            raise Interrupted(f"trial {name} stopped before its end ({what}); its log: "
                              f"{log_path}; rerun the same command to resume")
        if code:
            tail = files.read_text(log_path, errors="replace")[-4000:]
            lines = [line for line in tail.splitlines() if line.strip()]
            if not sweep_lib.NON_FINITE.search(tail):
                raise TrainerError(f"trial {name} failed (exit {code}): "
                                   f"{lines[-1] if lines else 'no output'}; its log: {log_path}")
            message = next((line for line in reversed(lines) if sweep_lib.NON_FINITE.search(line)),
                           "")
        raw = read_curves(run_dir, self.metric, self.objective)
        if not code and not raw["curve"]:
            raise TrainerError(f"trial {name} recorded no {self.key} in {run_dir}/metrics.jsonl; "
                               f"its log: {log_path}")
        steps = raw["curve"][-1][0] if raw["curve"] else start_step
        raw.update(exit_code=code, message=message.strip()[:300],
                   wall_seconds=time.time() - start, steps_trained=max(steps - start_step, 0))
        return raw


def _running(proc, seconds):
    """Whether `proc` still runs after waiting up to `seconds` for it to end."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        return True


def _copy_lines(stream, log):
    for line in stream:
        log.write(line.decode("utf-8", "replace"))
        log.flush()
