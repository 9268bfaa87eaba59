"""The pieces of `python -m trainers.gradient_noise` (see that program's docstring):
the measured runs' tasks and checkpoints, the measurement itself and the written
figures and JSON.

BERT and ResNet are measured through the trainers' own tasks (`trainers.noise.tasks`):
the model is ``task.build_model()``, the minibatches come from the task's data and
the loss of a minibatch is ``task.forward``'s training loss (`TaskObjective`).

Tail statistics: every measured sample (and every reference) gets
`acclip_tf.noise.tails.tail_report` (the calibrated heavy / light / cannot-tell
rule on the excesses over the top 10 %, its GPD shape ``xi`` with a bootstrap
interval), printed as one line by `verdict_line` next to the rule's calibrated
error rates at the nearest calibrated sample size (`calibrated_error_rates`,
from docs/figures/tail_rule_calibration.json). The older
`acclip_tf.noise.tail_statistics` (stable and raw-value Hill indices,
max/median, kurtosis) stay in the JSON as ``statistics``: they are valid for a
scalar heavy-tailed sample without a bulk, not for norms that sit on one.
"""

import json
import math

import keras
import numpy as np
import tensorflow as tf

from acclip_tf import noise
from acclip_tf import plotting
from acclip_tf.noise import tails
from trainers.common import files
from trainers.common import checkpoints as checkpoints_lib
from trainers.common.errors import TrainerError
from trainers.noise import ablation
from trainers.noise import groups as groups_lib
from trainers.noise import objective
from trainers.noise import tasks
from trainers.vision.task import ImageClassificationTask

MODELS = ("bert", "attention_ablation", "resnet", "causal_lm")


# ---------------------------------------------------------------- checkpoints
def checkpoint_paths(pretrain_dir):
    """{step: path} of the checkpoints a trainer run kept (``ckpt-<step>``)."""
    state = tf.train.get_checkpoint_state(files.join(pretrain_dir, "checkpoints"))
    paths = list(state.all_model_checkpoint_paths) if state else []
    out = {}
    for path in paths:
        suffix = path.rsplit("-", 1)[-1]
        if suffix.isdigit():
            out[int(suffix)] = path
    return dict(sorted(out.items()))


def select_checkpoints(available, spec, pretrain_dir):
    """[(step, path)] that ``--checkpoints`` names (``all``/empty: every one kept)."""
    listed = ", ".join(map(str, available)) or "none"
    if spec in (None, "", "all"):
        return list(available.items())
    steps = []
    for item in spec.split(","):
        item = item.strip()
        if not item.isdigit():
            raise TrainerError(f"--checkpoints={spec!r}: {item!r} is not a step number "
                               "(use comma-separated steps or 'all')")
        step = int(item)
        if step not in available:
            raise TrainerError(f"checkpoint step {step} not found in {pretrain_dir}/checkpoints "
                               f"(available steps: {listed})")
        steps.append(step)
    return [(s, available[s]) for s in sorted(set(steps))]


# ---------------------------------------------------------------- measurement
def measure(cells, num_batches, strategy=None, training=False):
    """{label: GradientNoiseSample} for an iterable of (label, model_fn, loss_fn, dataset).

    ``training`` is passed to the model: False for BERT (dropout off), True
    for ResNet (batch normalisation on batch statistics, as in training).

    ``model_fn()`` builds the model (called under the strategy's scope), so
    only one model is alive at a time. Every loss divides by the global batch's
    weight (`trainers.noise.objective`), so the replicas' gradients are summed.
    """
    samples = {}
    for label, model_fn, loss_fn, dataset in cells:
        print(f"measuring {label}: {num_batches} minibatches, two passes ...", flush=True)
        if strategy is None:
            model = model_fn()
        else:
            with strategy.scope():
                model = model_fn()
        samples[label] = noise.gradient_noise_norms(
            model, loss_fn, dataset, num_batches=num_batches, strategy=strategy,
            training=training, cross_replica=objective.CROSS_REPLICA)
        print(verdict_line(label, tails.tail_report(samples[label].noise_norms, seed=0),
                           calibrated_error_rates(samples[label].num_batches)), flush=True)
        del model
        keras.backend.clear_session()
    return samples


def measure_groups(cells, num_batches, training=False):
    """(samples, groups) like `measure`, with the noise norm of every parameter group.

    One pair of passes per cell (`trainers.noise.groups.group_noise_norms`); the
    samples' norms are the groups' total, so they equal `measure`'s. No strategy.
    ``groups``: {label: {"noise": {group: norms}, "variables": [(path, group, size)]}}.
    """
    samples, by_label = {}, {}
    for label, model_fn, loss_fn, dataset in cells:
        print(f"measuring {label} by parameter group: {num_batches} minibatches, two passes ...",
              flush=True)
        model = model_fn()
        noise_norms, grad_norms, table = groups_lib.group_noise_norms(
            model, loss_fn, dataset.take(num_batches), training=training)
        total = noise_norms.pop("total")
        total_grad = grad_norms.pop("total")
        gbar = float(np.sqrt(max(0.0, np.mean(total_grad ** 2) - np.mean(total ** 2))))
        samples[label] = noise.GradientNoiseSample(
            noise_norms=total, gradient_norms=total_grad, full_gradient_norm=gbar,
            num_batches=int(total.size))
        by_label[label] = {"noise": noise_norms, "variables": table}
        rates = calibrated_error_rates(total.size)
        print(verdict_line(label, tails.tail_report(total, seed=0), rates), flush=True)
        for group, x in noise_norms.items():
            if np.all(x > 0):
                print(verdict_line(f"{label} / {group}", tails.tail_report(x, seed=0), rates),
                      flush=True)
        del model
        keras.backend.clear_session()
    return samples, by_label


def selected_checkpoints(f):
    """[(step, path)] of --checkpoints in --pretrain_dir (none without it)."""
    if not f.pretrain_dir:
        return []
    return select_checkpoints(checkpoint_paths(f.pretrain_dir), f.checkpoints, f.pretrain_dir)


def task_cells(task, seed, selected, include_init, dataset, facts):
    """The (label, model_fn, loss_fn, dataset) cells of ``init`` and each checkpoint.

    Each model is ``task.build_model()`` after ``set_random_seed(seed)`` (the init a
    trainer run with that seed starts from), with a checkpoint's weights restored;
    ``facts["parameters"]`` records its size.
    """
    def build(path=None):
        def model_fn():
            keras.utils.set_random_seed(seed)
            model = task.build_model()
            if path is not None:
                checkpoints_lib.restore_weights(model, path)
            facts["parameters"] = int(model.count_params())
            return objective.TaskObjective(task, model)
        return model_fn

    batches = objective.task_batches(dataset)
    cells = [("init", build(), objective.passthrough, batches)] if include_init else []
    cells += [(f"step {step}", build(path), objective.passthrough, batches)
              for step, path in selected]
    return cells


# ---------------------------------------------------------------- BERT
def bert_measurements(f, strategy):
    """(cells, settings, facts) for --model=bert (init and/or checkpoints).

    The minibatches are ``BertPretrainTask.train_dataset`` from batch 0: those a
    bert_pretrain run with this seed and batch size trains on first, cached after
    ``--num_batches`` so both passes see the same masks and order.
    """
    del strategy
    experiment = tasks.bert_experiment(f)
    selected = selected_checkpoints(f)
    if f.pretrain_dir and not selected and not f.include_init:
        raise TrainerError(f"{f.pretrain_dir}/checkpoints holds no checkpoint and "
                           "--noinclude_init leaves nothing to measure")
    if not f.pretrain_dir and not f.include_init:
        raise TrainerError("--noinclude_init needs --pretrain_dir (nothing else to measure)")
    task = tasks.bert_task(f, experiment)
    dataset = task.train_dataset(None, f.batch_size, 0).take(f.num_batches).cache()
    facts = dict(task.facts, pretrain_dir=f.pretrain_dir, epochs_covered=round(
        f.num_batches * f.batch_size / len(task.data.train_segments), 3))
    cells = task_cells(task, experiment.run.seed, selected, f.include_init, dataset, facts)
    program = tasks.BERT_PROGRAMS[0] if f.pretrain_dir else "trainers.gradient_noise"
    return cells, tasks.settings_of(tasks.settings(experiment), tasks.BERT_SETTINGS,
                                    program), facts


# ---------------------------------------------------------------- causal LM
def lm_measurements(f, strategy):
    """(cells, settings, facts) for --model=causal_lm: a trainers.causal_lm run
    (``--pretrain_dir``, required) at its initialisation and/or checkpoints.

    The minibatches are ``CausalLMTask.train_dataset`` from batch 0 (the windows a
    causal_lm run with this seed trains on first, at ``--batch_size``), cached after
    ``--num_batches`` so both passes see the same ones.
    """
    del strategy
    if not f.pretrain_dir:
        raise TrainerError("--model=causal_lm needs --pretrain_dir (a trainers.causal_lm "
                           "model_dir)")
    selected = selected_checkpoints(f)
    if not selected and not f.include_init:
        raise TrainerError("--noinclude_init leaves nothing to measure")
    experiment, task = tasks.lm_task(f)
    dataset = task.train_dataset(None, f.batch_size, 0).take(f.num_batches).cache()
    facts = dict(task.facts, pretrain_dir=f.pretrain_dir)
    windows = getattr(task.data, "train_windows", None)
    if windows is not None:
        facts["epochs_covered"] = round(f.num_batches * f.batch_size / len(windows), 3)
    cells = task_cells(task, experiment.run.seed, selected, f.include_init, dataset, facts)
    return cells, tasks.settings_of(tasks.settings(experiment), tasks.LM_SETTINGS,
                                    tasks.LM_PROGRAMS[0]), facts


# ---------------------------------------------------------------- ResNet
def image_stream(task, num_batches, batch_size, seed):
    """The first ``num_batches`` training minibatches of the task's batches, fixed.

    A seeded shuffle of the training split (repeated if it is smaller than
    ``num_batches * batch_size``), the task's eval preprocessing (resize/crop,
    normalise; no augmentation, so the only noise is the choice of examples),
    cached so that both passes see identical batches.
    """
    split, pipelines = task.data.train, task.pipelines
    examples = split.ordered().shuffle(min(split.num_examples, 10_000), seed=seed).repeat()

    def example(raw, label):
        return {"image": pipelines.eval_image(split.decode(raw)),
                "label": tf.cast(label, tf.int32), "weight": tf.constant(1.0)}

    return examples.take(num_batches * batch_size).map(example).batch(batch_size).cache()


def resnet_measurements(f, strategy):
    """(cells, settings, facts) for --model=resnet (init and/or checkpoints).

    With --pretrain_dir (a trainers.resnet_imagenet model_dir) the task (model,
    data, classes, seed, TFDS source, loss) is the run's, from its config.json, and
    the weights come from its checkpoints; otherwise a fresh task from
    --image_model, --dataset, --image_size and --seed (`tasks.FRESH_IMAGE_SETTINGS`).
    """
    del strategy
    experiment = tasks.image_experiment(f)
    selected = selected_checkpoints(f)
    if not selected and not f.include_init:
        raise TrainerError("--noinclude_init leaves nothing to measure")
    task = ImageClassificationTask(experiment)
    seed = experiment.run.seed
    dataset = image_stream(task, f.num_batches, f.batch_size, seed)
    facts = dict(task.facts, pretrain_dir=f.pretrain_dir)
    cells = task_cells(task, seed, selected, f.include_init, dataset, facts)
    program = tasks.IMAGE_PROGRAMS[0] if f.pretrain_dir else "trainers.gradient_noise"
    return cells, tasks.settings_of(tasks.settings(experiment), tasks.IMAGE_SETTINGS,
                                    program), facts


# ---------------------------------------------------------------- outputs
def references(num_samples, dim, alpha, seed):
    """Figure 1 c/g as the paper draws them, as many draws as measured.

    (c) a normalised sum of ``dim`` squared Gaussians, ``(1/dim) sum Z_j^2``; (g) the
    same sum of squared symmetric alpha-stable variables
    (`acclip_tf.noise.tails.sum_of_squared_gaussians` / ``sum_of_squared_stable``).
    """
    rng = np.random.default_rng(seed)
    return {
        f"sum of squared Gaussians / {dim} (Fig. 1c)": tails.sum_of_squared_gaussians(
            num_samples, dim, rng),
        f"sum of squared alpha-stable({alpha:g}) / {dim} (Fig. 1g)": tails.sum_of_squared_stable(
            num_samples, dim, alpha, rng),
    }


# ---------------------------------------------------------------- tail verdicts
#: The calibration of `tails.classify_tail` (bench/calibrate_tail_rule.py).
CALIBRATION_PATH = files.join(files.dirname(files.dirname(files.dirname(
    files.absolute(__file__)))), "docs", "figures", "tail_rule_calibration.json")


def load_calibration(path=CALIBRATION_PATH):
    """The calibration JSON's dict, or None when the file is absent or unreadable."""
    try:
        calibration = json.loads(files.read_text(path))
    except Exception:  # noqa: BLE001 - absent or unreadable: no calibration
        return None
    return calibration if calibration.get("rows") and calibration.get("sizes") else None


def calibrated_error_rates(n, calibration="default"):
    """The rule's measured error rates at the calibrated size nearest ``n`` (log scale).

    Returns None without a calibration, else ``{"n": calibrated n, "false_positive":
    the largest P(heavy) over the light cases, "false_negative": the largest
    P(not heavy) over the heavy cases, "wrong_direction": the largest P(light) over
    the heavy cases, "light_cases", "heavy_cases"}``.
    """
    if isinstance(calibration, str):
        calibration = load_calibration()
    if calibration is None:
        return None
    nearest = min(calibration["sizes"], key=lambda size: abs(math.log(size / n)))
    rows = [r for r in calibration["rows"] if r["n"] == nearest]
    light = [r for r in rows if r["truth"] == "light"]
    heavy = [r for r in rows if r["truth"] == "heavy"]
    return {
        "n": int(nearest),
        "false_positive": max((r["rate_heavy"] for r in light), default=None),
        "false_negative": max((1.0 - r["rate_heavy"] for r in heavy), default=None),
        "wrong_direction": max((r["rate_light"] for r in heavy), default=None),
        "light_cases": len(light),
        "heavy_cases": len(heavy),
    }


def verdict_line(label, report, rates):
    """One line: the verdict, xi [lo, hi], n and the rule's calibrated error rates."""
    lo, hi = report["ci"]
    line = (f"  {label}: {report['verdict']}, xi {report['xi']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}], n={report['n']}, k={report['k']}")
    if rates is None:
        return line + "; uncalibrated n"
    return line + (f"; calibrated at n={rates['n']}: false positive <= "
                   f"{rates['false_positive']:.2f} ({rates['light_cases']} light cases), "
                   f"false negative <= {rates['false_negative']:.2f}, heavy called light <= "
                   f"{rates['wrong_direction']:.2f} ({rates['heavy_cases']} heavy cases)")


def tail_reports(samples, seed=0):
    """{label: tails.tail_report} of 1-D samples (norms)."""
    return {label: tails.tail_report(np.asarray(x), seed=seed) for label, x in samples.items()}


def relative_variance_curve(norms):
    """(sizes, V_n / V_N): the running variance estimate relative to its final value."""
    sizes, variances = noise.variance_vs_sample_size(norms)
    return sizes, variances / variances[-1]


def write_outputs(output_dir, name, samples, refs, settings, facts, development,
                  sweep=None, groups=None):
    """The PNG figures and ``<name>_noise.json``; returns the JSON's dict.

    ``sweep`` (``--batch_sizes``): {cell: {batch size: measurement label}}; adds the
    ``batch_size_sweep`` entry and ``<name>_xi_vs_batch_size.png``.
    ``groups`` (``--parameter_groups``, from `measure_groups`): adds each
    measurement's ``groups`` entry and ``<name>_groups_<i>.png`` (survival curves of
    the groups' noise norms, measurement ``i``).
    """
    files.makedirs(output_dir, "--output_dir")
    norms = {label: s.noise_norms for label, s in samples.items()}
    reports = tail_reports(norms)
    ref_reports = tail_reports(refs)
    rates = {label: calibrated_error_rates(s.num_batches) for label, s in samples.items()}
    figures = [plotting.plot_noise_histograms(
        {**norms, **refs}, files.join(output_dir, f"{name}_histograms.png"),
        title=f"{name}: gradient-noise norm ||g_i - grad f|| (right: synthetic references)")]
    curves = {label: relative_variance_curve(x) for label, x in {**norms, **refs}.items()}
    figures.append(plotting.plot_variance_curves(
        curves, files.join(output_dir, f"{name}_variance.png"),
        title="running variance / final value"))
    if development and len(samples) > 1:
        figures.append(plotting.plot_noise_development(
            norms, files.join(output_dir, f"{name}_development.png")))
    figures.append(plotting.plot_tail_histograms(
        norms, refs, files.join(output_dir, f"{name}_tail_histograms.png"),
        reports={**reports, **ref_reports},
        title=f"{name}: noise norm with the references of Figure 1 c/g"))
    figures.append(plotting.plot_survival_curves(
        norms, files.join(output_dir, f"{name}_survival.png"), references=refs,
        title=f"{name}: empirical survival (log-log)"))
    figures.append(plotting.plot_shape_vs_k(
        norms, files.join(output_dir, f"{name}_shape_vs_k.png"),
        title=f"{name}: GPD shape xi over the number of excesses k"))
    group_results = {}
    for i, (label, entry) in enumerate((groups or {}).items()):
        shown = {g: x for g, x in entry["noise"].items() if np.all(x > 0)}
        total_sq = np.mean(norms[label] ** 2)
        group_results[label] = {
            "groups": {g: {"tail": tails.tail_report(x, seed=0) if g in shown else None,
                           "parameters": sum(size for _, grp, size in entry["variables"]
                                             if grp == g),
                           "share_of_squared_noise": float(np.mean(x ** 2) / total_sq),
                           "noise_norms": x.tolist()}
                       for g, x in entry["noise"].items()},
            "variables": [list(row) for row in entry["variables"]]}
        if shown:
            figures.append(plotting.plot_survival_curves(
                shown, files.join(output_dir, f"{name}_groups_{i}.png"),
                title=f"{name}, {label}: noise norm per parameter group"))
    sweep_result = None
    if sweep:
        sweep_result = {
            cell: {"batch_sizes": sorted(by_size),
                   "labels": [by_size[b] for b in sorted(by_size)],
                   "xi": [reports[by_size[b]]["xi"] for b in sorted(by_size)],
                   "ci": [reports[by_size[b]]["ci"] for b in sorted(by_size)],
                   "verdict": [reports[by_size[b]]["verdict"] for b in sorted(by_size)]}
            for cell, by_size in sweep.items()}
        figures.append(plotting.plot_xi_vs_batch_size(
            {cell: (r["batch_sizes"], r["xi"], r["ci"]) for cell, r in sweep_result.items()},
            files.join(output_dir, f"{name}_xi_vs_batch_size.png"),
            title=f"{name}: tail shape of the noise norm vs minibatch size"))
    result = {
        "model": name,
        "settings": settings,
        "facts": facts,
        "measurements": {label: {"tail": reports[label],
                                 "calibration": rates[label],
                                 "statistics": s.statistics(),
                                 "noise_norms": s.noise_norms.tolist(),
                                 "gradient_norms": s.gradient_norms.tolist()}
                         for label, s in samples.items()},
        "references": {label: {"tail": ref_reports[label],
                               "statistics": noise.tail_statistics(x)}
                       for label, x in refs.items()},
        "figures": [files.basename(p) for p in figures],
    }
    for label, entry in group_results.items():
        result["measurements"][label]["groups"] = entry["groups"]
        result["measurements"][label]["group_variables"] = entry["variables"]
    if sweep_result is not None:
        result["batch_size_sweep"] = sweep_result
    path = files.join(output_dir, f"{name}_noise.json")
    files.write_text_atomically(path, json.dumps(result, indent=1))
    print(f"wrote {', '.join(result['figures'])} and {files.basename(path)} to {output_dir}",
          flush=True)
    return result


# ---------------------------------------------------------------- one run
class _WithBatchSize:
    """The flags object ``f`` with ``batch_size`` replaced (one cell of a sweep)."""

    def __init__(self, f, batch_size):
        self._f = f
        self.batch_size = batch_size

    def __getattr__(self, name):
        return getattr(self._f, name)

    def flag_values_dict(self):
        return dict(self._f.flag_values_dict(), batch_size=self.batch_size)


def batch_sizes(f):
    """The --batch_sizes as sorted unique positive ints, or None without a sweep."""
    if not f.batch_sizes:
        return None
    sizes = []
    for item in f.batch_sizes:
        if not item.strip().isdigit() or int(item) < 1:
            raise TrainerError(f"--batch_sizes: {item!r} is not a positive integer")
        sizes.append(int(item))
    return sorted(set(sizes))


def collect(f, strategy):
    """(samples, settings, facts, sweep, groups) of one run: one batch size, or a sweep.

    With --batch_sizes every cell of the model path is measured once per size;
    ``sweep`` is {cell: {batch size: measurement label}} (None without a sweep).
    With --parameter_groups ``groups`` is `measure_groups`'s (else None).
    """
    training = f.model == "resnet"
    sizes = batch_sizes(f)
    if sizes is None:
        cells, settings, facts = PATHS[f.model](f, strategy)
        if getattr(f, "parameter_groups", False):
            samples, groups = measure_groups(cells, f.num_batches, training=training)
            return samples, settings, facts, None, groups
        samples = measure(cells, f.num_batches, strategy, training=training)
        return samples, settings, facts, None, None
    samples, sweep = {}, {}
    for size in sizes:
        if strategy is not None and size % strategy.num_replicas_in_sync:
            raise TrainerError(f"--batch_sizes: {size} is not divisible by the "
                               f"{strategy.num_replicas_in_sync} replicas")
        cells, settings, facts = PATHS[f.model](_WithBatchSize(f, size), strategy)
        labelled = [(f"{label} / batch {size}", *rest) for label, *rest in cells]
        samples.update(measure(labelled, f.num_batches, strategy, training=training))
        for (label, *_), (new, *_) in zip(cells, labelled):
            sweep.setdefault(label, {})[size] = new
    return samples, settings, facts, sweep, None


PATHS = {"bert": bert_measurements, "attention_ablation": ablation.ablation_measurements,
         "resnet": resnet_measurements, "causal_lm": lm_measurements}
