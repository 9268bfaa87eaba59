"""The one driver every trainer calls, in four named steps:

    build     flags -> strategy -> task (data) -> model -> optimizer -> step loop
    restore   the latest checkpoint of model_dir, if any
    schedule  train in loops of --steps_per_loop, evaluating and checkpointing on schedule
    finish    export (chief) and summary.json

`run` strings them together; each step is a function of the `Session` the
first one builds, so a new program can reuse them in another order.
"""

import dataclasses
import hashlib
import json
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from trainers.common import config
from trainers.common import files
from trainers.common import flags as common_flags
from trainers.common import optimizers as common_optimizers
from trainers.common import run_plan
from trainers.common import strategy as common_strategy
from trainers.common.checkpoints import Checkpoints
from trainers.common.errors import TrainerError, unreadable_file
from trainers.common.loop import StepLoop
from trainers.common.preemption import Preempted, PreemptionWatch, lost_worker
from trainers.common.reporting import Reporter, Throughput, read_metrics
from trainers.common.task import PredictionEvaluation

MODES = ("train_and_eval", "train", "eval")


def next_stop(step, train_steps, steps_per_loop, *periods):
    """The step at which the loop starting at `step` ends: at most `steps_per_loop`
    later, and never past an eval/checkpoint boundary or the last step."""
    stop = min(step + steps_per_loop, train_steps)
    for period in periods:
        if period and period > 0:
            stop = min(stop, (step // period + 1) * period)
    return stop


def weights_digest(model):
    """sha256 of all model weights' bytes (identical weights <=> identical digest)."""
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return digest.hexdigest()


def use_jit(strategy, requested):
    """XLA per replica, except on several logical CPUs of one host.

    TF cannot run a compiled function on the second logical CPU (its XLA
    device is the physical CPU: "Trying to access resource ... located in
    device CPU:1 from device CPU:0"); GPUs and TPUs are unaffected.
    """
    if not requested:
        return False
    devices = [d.upper() for d in strategy.extended.worker_devices]
    if len(devices) > 1 and all("CPU" in d for d in devices):
        print("note: --jit_compile is off: XLA cannot place a compiled step on several "
              "logical CPUs of one host", flush=True)
        return False
    return True


def program_name():
    """The running program's module name (``python -m trainers.bert_pretrain`` ->
    ``trainers.bert_pretrain``), or the script's file name."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return spec.name
    return files.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "unknown"


def _truncate_metrics(model_dir, step):
    """Drop metrics.jsonl records after the restored step (a killed run wrote them)."""
    path = files.join(model_dir, "metrics.jsonl")
    if not files.exists(path):
        return
    records = read_metrics(model_dir)
    files.write_text_atomically(
        path, "".join(json.dumps(r) + "\n" for r in records if r["step"] <= step))


def _setup_precision(policy):
    if policy != "none":
        keras.mixed_precision.set_dtype_policy(policy)


@dataclasses.dataclass
class Session:
    """What `build` makes and the later steps use: the experiment and what was built
    from it."""
    experiment: config.ExperimentConfig
    mode: str
    strategy: object
    chief: bool
    task: object
    plan: object
    model: object
    optimizer: object
    schedule: object
    settings: dict
    jit: bool
    loop: StepLoop
    checkpoints: Checkpoints
    reporter: Reporter = None
    restored: str = None
    step: int = 0
    on_evaluation: object = None  # called with each evaluation's record (a sweep's pruner)

    @property
    def run(self):
        return self.experiment.run

    @property
    def optimizer_config(self):
        return self.experiment.optimizer

    @property
    def global_batch_size(self):
        return self.run.global_batch_size

    def close(self):
        """Close the run's files (a run that ends early by an exception)."""
        if self.reporter is not None:
            self.reporter.close()
        self.checkpoints.close()


@dataclasses.dataclass
class Progress:
    """What the train/eval schedule leaves for the summary."""
    step: int
    last_train: dict
    last_eval: dict
    throughput: Throughput
    seconds: float
    preempted: str = None  # the signal that stopped the run early (after a checkpoint)


# ---------------------------------------------------------------- 1. build
def build(task_class, experiment, mode, flag_values=None):
    """Strategy, seeds, config.json (and flags.txt, when the run came from flags), the
    task, its model, the optimizer, the step loop and the checkpoint manager."""
    run, optimizer_config = experiment.run, experiment.optimizer
    strategy = common_strategy.make_strategy(run.strategy, run.tpu, run.num_devices)
    chief = common_strategy.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if run.global_batch_size % replicas:
        raise TrainerError(
            f"--global_batch_size={run.global_batch_size} is not divisible by the "
            f"{replicas} replicas")
    keras.utils.set_random_seed(run.seed)
    if run.deterministic:
        tf.config.experimental.enable_op_determinism()
    _setup_precision(run.mixed_precision)
    files.makedirs(run.model_dir)
    if chief:
        if flag_values is not None:
            common_flags.write_flags(run.model_dir, flag_values)
        common_flags.write_config(run.model_dir, experiment, flag_values)

    task = task_class(experiment, run.model_dir, chief)
    plan = run_plan.resolve(run, optimizer_config,
                            task.steps_per_epoch(run.global_batch_size))
    with strategy.scope():
        model = task.build_model()
        optimizer, schedule, settings = common_optimizers.build(
            optimizer_config, plan, run.global_batch_size, model.trainable_variables,
            task.weight_decay_exclude, task.optimizer_settings)
        if run.mixed_precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    jit = use_jit(strategy, run.jit_compile)
    loop = StepLoop(strategy, model, optimizer, task.forward, jit_compile=jit)
    loop.build_optimizer()
    checkpoints = Checkpoints(run.model_dir, model, optimizer, is_chief=chief)
    return Session(experiment=experiment, mode=mode, strategy=strategy, chief=chief, task=task, plan=plan, model=model,
                   optimizer=optimizer, schedule=schedule, settings=settings, jit=jit,
                   loop=loop, checkpoints=checkpoints)


# ---------------------------------------------------------------- 2. restore
def restore(s):
    """Resume from model_dir's latest checkpoint (if any); drop the metrics a killed run
    wrote after it; open the reporter."""
    s.restored = s.checkpoints.restore_latest()
    if s.mode == "eval" and not s.restored:
        raise TrainerError(f"--mode=eval needs a checkpoint in {s.run.model_dir}/checkpoints "
                           "(train first)")
    s.step = int(s.optimizer.iterations.numpy())
    if s.chief:
        _truncate_metrics(s.run.model_dir, s.step if s.restored else -1)
    s.reporter = Reporter(s.run.model_dir, s.chief, s.task.example_name)
    if s.restored:
        print(f"resumed from {s.restored} at step {s.step}", flush=True)
    return s


# ---------------------------------------------------------------- 3. schedule
def _clip_fraction(optimizer):
    clip = common_optimizers.clip_fraction(optimizer)
    return None if clip is None else float(clip.numpy())


FIXED_TRAIN = "fixed_train_"  # metrics.jsonl prefix of the fixed training examples' metrics


def evaluate(s, eval_data, eval_steps, step, train_metrics, fixed_train=None):
    """One evaluation (plus the task's prediction pass, if it declares one, and the fixed
    training examples, `fixed_train` = (data, steps), if asked for) -> the record
    written to metrics.jsonl."""
    results = s.loop.evaluate(iter(eval_data), eval_steps)
    if isinstance(s.task, PredictionEvaluation):
        outputs = s.loop.predict(iter(eval_data), eval_steps, s.task.predict)
        results.update(s.task.evaluate_predictions(outputs, step))
    results.update(s.task.derived_metrics(results))
    record = {"step": step, "examples_seen": step * s.global_batch_size}
    record.update({f"train_{k}": v for k, v in (train_metrics or {}).items()})
    record.update({f"eval_{k}": v for k, v in results.items()})
    if fixed_train:
        fixed = s.loop.evaluate(iter(fixed_train[0]), fixed_train[1])
        fixed.update(s.task.derived_metrics(fixed))
        record.update({f"{FIXED_TRAIN}{k}": v for k, v in fixed.items()})
    clip = _clip_fraction(s.optimizer)
    if clip is not None and step > 0:
        record["clip_fraction"] = clip
    s.reporter.evaluation(record)
    if s.on_evaluation is not None:
        s.on_evaluation(record)
    return record


def train_and_evaluate(s, watch=None):
    """Loops of --steps_per_loop up to train_steps, evaluating (train_and_eval) and
    checkpointing on their schedules; in eval mode only the one evaluation. With a
    `PreemptionWatch`, a signal stops the loop at the next boundary after a checkpoint."""
    run, G, task = s.run, s.global_batch_size, s.task
    train_steps = s.plan.train_steps
    start_batch = int(s.checkpoints.data_position.numpy())
    train_iter = iter(s.strategy.distribute_datasets_from_function(
        lambda ctx: task.train_dataset(ctx, G, start_batch)))
    eval_data = s.strategy.distribute_datasets_from_function(
        lambda ctx: task.eval_dataset(ctx, G))
    eval_steps = task.eval_steps(G)
    if run.eval_batches:
        eval_steps = min(eval_steps, run.eval_batches)
    fixed = None
    if run.fixed_train_examples:
        count = run.fixed_train_examples
        fixed = (s.strategy.distribute_datasets_from_function(
            lambda ctx: task.fixed_train_dataset(ctx, G, count)),
            task.fixed_train_steps(G, count))

    step = s.step
    throughput = Throughput()
    last_eval = None
    if s.mode == "eval":
        last_eval = evaluate(s, eval_data, eval_steps, step, None, fixed)
    elif not s.restored and s.mode == "train_and_eval":
        last_eval = evaluate(s, eval_data, eval_steps, 0, None, fixed)
    wall_start = time.time()
    since_eval = {}
    last_train = {}
    while s.mode != "eval" and step < train_steps:
        stop = next_stop(step, train_steps, run.steps_per_loop, run.eval_every,
                         run.checkpoint_every)
        n = stop - step
        t0 = time.time()
        last_train = s.loop.train(train_iter, n)
        seconds = time.time() - t0
        step = stop
        s.checkpoints.data_position.assign_add(n)
        throughput.add(n * G, seconds)
        for k, v in last_train.items():
            total, count = since_eval.get(k, (0.0, 0))
            since_eval[k] = (total + v * n, count + n)
        lr = float(keras.ops.convert_to_numpy(s.schedule(step - 1)))
        extra = {}
        clip = _clip_fraction(s.optimizer)
        if clip is not None:
            extra["clip_fraction"] = clip
        s.reporter.loop(step, train_steps, last_train, lr, throughput.per_second,
                        throughput.eta(train_steps - step, G), extra)
        if s.mode == "train_and_eval" and (
                (run.eval_every and step % run.eval_every == 0) or step == train_steps):
            last_eval = evaluate(s, eval_data, eval_steps, step,
                                 {k: t / c for k, (t, c) in since_eval.items()}, fixed)
            since_eval = {}
        saved = (run.checkpoint_every and step % run.checkpoint_every == 0) or step == train_steps
        if saved:
            s.checkpoints.save(step)
        if watch is not None and step < train_steps and watch.requested():
            if not saved:
                s.checkpoints.save(step)
            return Progress(step=step, last_train=last_train, last_eval=last_eval,
                            throughput=throughput, seconds=time.time() - wall_start,
                            preempted=watch.signal)
    return Progress(step=step, last_train=last_train, last_eval=last_eval,
                    throughput=throughput, seconds=time.time() - wall_start)


# ---------------------------------------------------------------- 4. finish
def _prefixed(record, prefix):
    """{name: value} of `record`'s keys that start with `prefix` (prefix removed)."""
    return {k[len(prefix):]: v for k, v in (record or {}).items() if k.startswith(prefix)}


def finish(s, progress):
    """Export the model (chief, not in eval mode), write summary.json, close files."""
    run, task = s.run, s.task
    digest = weights_digest(s.model)
    print(f"final weights sha256 {digest}", flush=True)
    export_dir = (files.join(run.model_dir, "export")
                  if run.export and not progress.preempted else None)
    if s.chief and s.mode != "eval" and export_dir:
        task.export(s.model, export_dir)
    last_eval = progress.last_eval
    summary = {
        "final_step": progress.step,
        "global_batch_size": s.global_batch_size,
        "strategy": type(s.strategy).__name__,
        "num_replicas": s.strategy.num_replicas_in_sync,
        "optimizer": s.optimizer_config.optimizer,
        "optimizer_settings": s.settings,
        "lr_schedule": s.optimizer_config.lr_schedule,
        "train_steps": s.plan.train_steps,
        "warmup_steps": s.plan.warmup_steps,
        "lr_boundaries": list(s.plan.lr_boundaries),
        "steps_per_epoch": s.plan.steps_per_epoch,
        "jit_compile": s.jit,
        "mixed_precision": run.mixed_precision,
        "train": dict(progress.last_train),
        "eval": _prefixed(last_eval, "eval_"),
        "fixed_train": _prefixed(last_eval, FIXED_TRAIN),
        f"{task.example_name}_per_second": progress.throughput.per_second,
        "train_seconds_this_run": progress.seconds,
        "weights_sha256": digest,
        "export_dir": export_dir,
        "task": task.summary(),
    }
    previous = files.join(run.model_dir, "summary.json")
    if (s.mode == "eval" or not progress.last_train) and files.exists(previous):
        # Keep the training run's facts: in eval mode replace only the evaluation;
        # a rerun of a finished run (nothing trained, nothing evaluated) keeps them all.
        kept = json.loads(files.read_text(previous))
        summary = (dict(kept, eval=summary["eval"], fixed_train=summary["fixed_train"],
                        task=summary["task"]) if s.mode == "eval"
                   else dict(kept, train_seconds_this_run=summary["train_seconds_this_run"]))
    if s.mode == "eval":
        summary["evaluated_checkpoint"] = s.restored
    if progress.preempted:
        summary["preempted"] = dict(signal=progress.preempted, step=progress.step,
                                    checkpoint=s.checkpoints.latest())
    path = s.reporter.summary(summary)
    if path:
        print(f"summary: {path}", flush=True)
    s.reporter.close()
    s.checkpoints.close()
    if progress.preempted:
        raise Preempted(
            f"stopped by {progress.preempted} at step {progress.step} of "
            f"{s.plan.train_steps}: checkpoint {summary['preempted']['checkpoint']} saved; "
            "rerun the same command to resume")
    return summary


def show_optimizer_settings(task_class, optimizer_config):
    """--show_optimizer_settings: one JSON line {"optimizer": ..., <setting>: value}; the
    family's settings are the task class's `optimizer_settings` (nothing is built)."""
    settings = common_optimizers.run_settings(
        optimizer_config, getattr(task_class, "optimizer_settings", None))
    line = {"optimizer": optimizer_config.optimizer, **settings}
    print(json.dumps(line), flush=True)
    return line


def train(task_class, experiment, mode="train_and_eval", flag_values=None,
          on_evaluation=None):
    """Train the task `experiment` (a `config.ExperimentConfig` whose task is a
    `task_class.config_class`) describes; returns the summary dict. No absl needed: a
    notebook or another program builds the config and calls this.

    `task_class(experiment, model_dir, is_chief)` builds the `Task` (it may read or write
    files in model_dir, e.g. a vocabulary) once the strategy exists. `mode`:
    ``train_and_eval`` (evaluate at step 0, every `eval_every` and at the end), ``train``
    (no evaluation) or ``eval`` (evaluate the latest checkpoint of model_dir once; no
    training, no checkpoint, no export). `flag_values`: the parsed flags the experiment
    came from (`run`), recorded as flags.txt. `on_evaluation(record)`: called after each
    evaluation with its metrics.jsonl record; an exception it raises (a sweep's pruner
    stopping the trial) ends the run, its files closed, and propagates.
    """
    if mode not in MODES:
        raise TrainerError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(experiment.task, task_class.config_class):
        raise TrainerError(f"{task_class.__name__} needs a {task_class.config_class.__name__}, "
                           f"got {type(experiment.task).__name__}")
    # --deterministic is process-wide TF state: put it back after the run, so a later run
    # or model in this process (a sweep's next in-process trial, a notebook's Keras
    # fit(jit_compile=True), which Keras refuses under op determinism) is unaffected.
    from tensorflow.python.framework import config as tf_config  # public API: enable only

    deterministic_before = tf_config.is_op_determinism_enabled()
    try:
        return _train(task_class, experiment, mode, flag_values, on_evaluation)
    finally:
        if not deterministic_before:
            tf_config.disable_op_determinism()


def _train(task_class, experiment, mode, flag_values, on_evaluation):
    session = restore(build(task_class, experiment, mode, flag_values))
    session.on_evaluation = on_evaluation
    with PreemptionWatch(session.strategy, session.run.maintenance_events) as watch:
        try:
            progress = train_and_evaluate(session, watch)
        except tf.errors.OpError as e:
            session.close()
            known = (unreadable_file(e)
                     or lost_worker(session.strategy, e, session.checkpoints.latest()))
            if known is None:
                raise
            raise known from e
        except BaseException:
            session.close()
            raise
    summary = finish(session, progress)
    if watch.signum is not None and progress.preempted is None:
        # The signal came during the last loop: the run is complete (checkpoint, export,
        # summary), and the signal still means "stop this process" (an in-process sweep
        # must not start its next trial): its own handler, restored, acts on it now.
        print(f"{watch.signal} received during the last loop: the run is complete; "
              "stopping", flush=True)
        signal.raise_signal(watch.signum)
    return summary


def run(task_class, f=None, mode="train_and_eval"):
    """`train` the experiment the parsed flags `f` describe (with ``--config``: that run's
    config.json, the flags given on the command line on top); returns the summary dict
    (or, with ``--show_optimizer_settings``, the settings line)."""
    f = f or common_flags.flags.FLAGS
    base = config.read_record(f.config) if f.config else None  # --config: a run's record
    if f.show_optimizer_settings:  # the optimizer's section alone (no --model_dir needed)
        base = dict(task_class.run_defaults, **(base or {}))
        return show_optimizer_settings(task_class,
                                       config.from_flags(config.OptimizerConfig, f, base))
    experiment = config.experiment_from_flags(program_name(), task_class, f, base)
    return train(task_class, experiment, mode, f)
