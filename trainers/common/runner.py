"""The one driver every trainer calls:

flags -> strategy -> task (data) -> model -> optimizer -> loop -> checkpoints + reports.
"""

import hashlib
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from trainers.common import flags as common_flags
from trainers.common import optimizers as common_optimizers
from trainers.common import run_plan
from trainers.common import strategy as common_strategy
from trainers.common.checkpoints import Checkpoints
from trainers.common.cli import TrainerError
from trainers.common.loop import StepLoop
from trainers.common.reporting import Reporter, Throughput, read_metrics
from trainers.common.task import Task


def validate_common(f):
    if not f.model_dir:
        raise TrainerError("--model_dir is required")
    for name in ("train_steps", "global_batch_size", "steps_per_loop"):
        if getattr(f, name) < 1:
            raise TrainerError(f"--{name} must be >= 1, got {getattr(f, name)}")
    for name in ("eval_every", "checkpoint_every"):
        if getattr(f, name) < 0:
            raise TrainerError(f"--{name} must be >= 0, got {getattr(f, name)}")


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


def _truncate_metrics(model_dir, step):
    """Drop metrics.jsonl records after the restored step (a killed run wrote them)."""
    path = os.path.join(model_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    records = read_metrics(model_dir)
    with open(path, "w") as f:
        for r in records:
            if r["step"] <= step:
                f.write(json.dumps(r) + "\n")


def _setup_precision(policy):
    if policy != "none":
        keras.mixed_precision.set_dtype_policy(policy)


MODES = ("train_and_eval", "train", "eval")


def run(task_factory, f=None, mode="train_and_eval"):
    """Train the task the flags describe; returns the summary dict.

    `task_factory(flags, model_dir, is_chief)` builds the `Task` (it may read
    or write files in model_dir, e.g. a vocabulary) once the strategy exists.
    `mode`: ``train_and_eval`` (evaluate at step 0, every `eval_every` and at
    the end), ``train`` (no evaluation) or ``eval`` (evaluate the latest
    checkpoint of model_dir once; no training, no checkpoint, no export).
    """
    if mode not in MODES:
        raise TrainerError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    f = f or common_flags.flags.FLAGS
    validate_common(f)
    strategy = common_strategy.make_strategy(f.strategy, f.tpu, f.num_devices)
    chief = common_strategy.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if f.global_batch_size % replicas:
        raise TrainerError(
            f"--global_batch_size={f.global_batch_size} is not divisible by the "
            f"{replicas} replicas")
    keras.utils.set_random_seed(f.seed)
    if f.deterministic:
        tf.config.experimental.enable_op_determinism()
    _setup_precision(f.mixed_precision)
    os.makedirs(f.model_dir, exist_ok=True)
    if chief:
        common_flags.write_flags(f.model_dir, f)

    task = task_factory(f, f.model_dir, chief)
    plan = run_plan.resolve(f, task.steps_per_epoch(f.global_batch_size))
    train_steps = plan.train_steps
    with strategy.scope():
        model = task.build_model()
        optimizer, schedule, settings = common_optimizers.from_flags(
            f, train_steps, model.trainable_variables, task.weight_decay_exclude, plan)
        if f.mixed_precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    jit = use_jit(strategy, f.jit_compile)
    trainer = StepLoop(strategy, model, optimizer, task.forward, jit_compile=jit)
    trainer.build_optimizer()
    checkpoints = Checkpoints(f.model_dir, model, optimizer, is_chief=chief)
    restored = checkpoints.restore_or_initialize()
    if mode == "eval" and not restored:
        raise TrainerError(f"--mode=eval needs a checkpoint in {f.model_dir}/checkpoints "
                           "(train first)")
    step = int(optimizer.iterations.numpy())
    if chief:
        _truncate_metrics(f.model_dir, step if restored else -1)
    reporter = Reporter(f.model_dir, chief, task.example_name)
    if restored:
        print(f"resumed from {restored} at step {step}", flush=True)
    G = f.global_batch_size

    start_batch = int(checkpoints.data_position.numpy())
    train_iter = iter(strategy.distribute_datasets_from_function(
        lambda ctx: task.train_dataset(ctx, G, start_batch)))
    eval_data = strategy.distribute_datasets_from_function(
        lambda ctx: task.eval_dataset(ctx, G))
    eval_steps = task.eval_steps(G)
    if f.eval_batches:
        eval_steps = min(eval_steps, f.eval_batches)

    def evaluate(step, train_metrics):
        results = trainer.evaluate(iter(eval_data), eval_steps)
        if type(task).predict is not Task.predict:
            outputs = trainer.predict(iter(eval_data), eval_steps, task.predict)
            results.update(task.evaluate_predictions(outputs, step))
        record = {"step": step, "examples_seen": step * G}
        record.update({f"train_{k}": v for k, v in (train_metrics or {}).items()})
        record.update({f"eval_{k}": v for k, v in results.items()})
        clip = common_optimizers.clip_fraction(optimizer)
        if clip is not None and step > 0:
            record["clip_fraction"] = float(clip.numpy())
        reporter.evaluation(record)
        return record

    throughput = Throughput()
    last_eval = None
    if mode == "eval":
        last_eval = evaluate(step, None)
    elif not restored and mode == "train_and_eval":
        last_eval = evaluate(0, None)
    wall_start = time.time()
    since_eval = {}
    last_train = {}
    while mode != "eval" and step < train_steps:
        stop = next_stop(step, train_steps, f.steps_per_loop, f.eval_every, f.checkpoint_every)
        n = stop - step
        t0 = time.time()
        last_train = trainer.train(train_iter, n)
        seconds = time.time() - t0
        step = stop
        checkpoints.data_position.assign_add(n)
        throughput.add(n * G, seconds)
        for k, v in last_train.items():
            s, c = since_eval.get(k, (0.0, 0))
            since_eval[k] = (s + v * n, c + n)
        lr = float(keras.ops.convert_to_numpy(schedule(step - 1)))
        extra = {}
        clip = common_optimizers.clip_fraction(optimizer)
        if clip is not None:
            extra["clip_fraction"] = float(clip.numpy())
        reporter.loop(step, train_steps, last_train, lr, throughput.per_second,
                      throughput.eta(train_steps - step, G), extra)
        if mode == "train_and_eval" and (
                (f.eval_every and step % f.eval_every == 0) or step == train_steps):
            last_eval = evaluate(step, {k: s / c for k, (s, c) in since_eval.items()})
            since_eval = {}
        if (f.checkpoint_every and step % f.checkpoint_every == 0) or step == train_steps:
            checkpoints.save(step)

    digest = weights_digest(model)
    print(f"final weights sha256 {digest}", flush=True)
    export_dir = os.path.join(f.model_dir, "export")
    if chief and mode != "eval":
        task.export(model, export_dir)
    summary = {
        "final_step": step,
        "global_batch_size": G,
        "strategy": type(strategy).__name__,
        "num_replicas": replicas,
        "optimizer": f.optimizer,
        "optimizer_settings": settings,
        "lr_schedule": f.lr_schedule,
        "train_steps": train_steps,
        "warmup_steps": plan.warmup_steps,
        "lr_boundaries": list(plan.lr_boundaries),
        "steps_per_epoch": plan.steps_per_epoch,
        "jit_compile": jit,
        "mixed_precision": f.mixed_precision,
        "train": {k: v for k, v in last_train.items()},
        "eval": ({k[len("eval_"):]: v for k, v in last_eval.items() if k.startswith("eval_")}
                 if last_eval else {}),
        f"{task.example_name}_per_second": throughput.per_second,
        "train_seconds_this_run": time.time() - wall_start,
        "weights_sha256": digest,
        "export_dir": export_dir,
        "task": task.summary(),
    }
    previous = os.path.join(f.model_dir, "summary.json")
    if (mode == "eval" or not last_train) and os.path.exists(previous):
        # Keep the training run's facts: in eval mode replace only the evaluation;
        # a rerun of a finished run (nothing trained, nothing evaluated) keeps them all.
        with open(previous) as fh:
            kept = json.load(fh)
        summary = (dict(kept, eval=summary["eval"], task=summary["task"]) if mode == "eval"
                   else dict(kept, train_seconds_this_run=summary["train_seconds_this_run"]))
    if mode == "eval":
        summary["evaluated_checkpoint"] = restored
    path = reporter.summary(summary)
    if path:
        print(f"summary: {path}", flush=True)
    reporter.close()
    checkpoints.close()
    return summary
