"""A sweep's trial: one run of a trainer with the trial's settings, and what the sweep
reads back from it (its curves from metrics.jsonl).

`InProcessTrials` runs the trial in this process: `runner.train` on the base experiment
with the trial's values, its evaluations reported as they happen (so a pruner can stop
it), and no process start-up (TensorFlow's import is most of a trial's fixed cost; the
corpus' cached text reads in milliseconds once it is). One device: the strategy of a sweep process is made once, so a multi-worker
or TPU trial runs as a subprocess (`trainers.sweep`'s `SubprocessRunner`).
"""

import json
import time

from trainers.common import files
from trainers.common import runner
from trainers.common import sweep as sweep_lib
from trainers.common.errors import TrainerError
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
                train_loss=(summary.get("train") or {}).get("loss"))


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
        result the sweep protocol reads (`read_curves` + exit_code, message, seconds). A
        run that ends on a non-finite value is a divergence (exit_code 1), not an error."""
        import keras

        self.calls += 1
        run_dir = self.run_dir(name)
        experiment = self.base.with_values(model_dir=run_dir, **values)

        def on_evaluation(record):
            if report is not None and self.key in record:
                report(record["step"], record[self.key])

        start = time.time()
        code, message = 0, ""
        try:
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
