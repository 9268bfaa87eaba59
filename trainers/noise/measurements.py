"""The pieces of `python -m trainers.gradient_noise` (see that program's docstring):
the measured runs' tasks and checkpoints, the measurement itself and the written
figures and JSON.

BERT and ResNet are measured through the trainers' own tasks (`trainers.noise.tasks`):
the model is ``task.build_model()``, the minibatches come from the task's data and
the loss of a minibatch is ``task.forward``'s training loss (`TaskObjective`).
"""

import json
import os

import keras
import tensorflow as tf

from acclip_tf import noise
from acclip_tf import plotting
from trainers.common import checkpoints as checkpoints_lib
from trainers.common.errors import TrainerError
from trainers.noise import ablation
from trainers.noise import objective
from trainers.noise import tasks

MODELS = ("bert", "attention_ablation", "resnet")


# ---------------------------------------------------------------- checkpoints
def checkpoint_paths(pretrain_dir):
    """{step: path} of the checkpoints a trainer run kept (``ckpt-<step>``)."""
    state = tf.train.get_checkpoint_state(os.path.join(pretrain_dir, "checkpoints"))
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
        s = samples[label].statistics()
        print(f"  {label}: stable alpha {s['stable_alpha']:.3f}, Hill alpha "
              f"{s['hill_alpha']:.3f}, max/median {s['max_median_ratio']:.3f}, "
              f"kurtosis {s['kurtosis']:.3f}", flush=True)
        del model
        keras.backend.clear_session()
    return samples


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
    flags = tasks.bert_flags(f)
    selected = selected_checkpoints(f)
    if f.pretrain_dir and not selected and not f.include_init:
        raise TrainerError(f"{f.pretrain_dir}/checkpoints holds no checkpoint and "
                           "--noinclude_init leaves nothing to measure")
    if not f.pretrain_dir and not f.include_init:
        raise TrainerError("--noinclude_init needs --pretrain_dir (nothing else to measure)")
    task = tasks.bert_task(f, flags)
    dataset = task.train_dataset(None, f.batch_size, 0).take(f.num_batches).cache()
    facts = dict(task.facts, pretrain_dir=f.pretrain_dir, epochs_covered=round(
        f.num_batches * f.batch_size / len(task.data.train_segments), 3))
    cells = task_cells(task, flags.seed, selected, f.include_init, dataset, facts)
    program = tasks.BERT_PROGRAMS[0] if f.pretrain_dir else "trainers.gradient_noise"
    return cells, tasks.settings_of(flags, tasks.BERT_SETTINGS, program), facts


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
    flags = tasks.image_flags(f)
    selected = selected_checkpoints(f)
    if not selected and not f.include_init:
        raise TrainerError("--noinclude_init leaves nothing to measure")
    task = tasks.image_task(flags)
    dataset = image_stream(task, f.num_batches, f.batch_size, flags.seed)
    facts = dict(task.facts, pretrain_dir=f.pretrain_dir)
    cells = task_cells(task, flags.seed, selected, f.include_init, dataset, facts)
    program = tasks.IMAGE_PROGRAMS[0] if f.pretrain_dir else "trainers.gradient_noise"
    return cells, tasks.settings_of(flags, tasks.IMAGE_SETTINGS, program), facts


# ---------------------------------------------------------------- outputs
def references(num_samples, dim, alpha, seed):
    """Figure 1 c/g: norms of Gaussian and of alpha-stable vectors, as many as measured."""
    return {
        f"sum of squared Gaussians (d={dim})": noise.gaussian_reference_norms(
            num_samples, dim, seed=seed),
        f"alpha-stable, alpha={alpha:g} (d={dim})": noise.stable_reference_norms(
            num_samples, dim, alpha, seed=seed),
    }


def relative_variance_curve(norms):
    """(sizes, V_n / V_N): the running variance estimate relative to its final value."""
    sizes, variances = noise.variance_vs_sample_size(norms)
    return sizes, variances / variances[-1]


def write_outputs(output_dir, name, samples, refs, settings, facts, development):
    """The PNG figures and ``<name>_noise.json``; returns the JSON's dict."""
    os.makedirs(output_dir, exist_ok=True)
    norms = {label: s.noise_norms for label, s in samples.items()}
    figures = [plotting.plot_noise_histograms(
        {**norms, **refs}, os.path.join(output_dir, f"{name}_histograms.png"),
        title=f"{name}: gradient-noise norm ||g_i - grad f|| (right: synthetic references)")]
    curves = {label: relative_variance_curve(x) for label, x in {**norms, **refs}.items()}
    figures.append(plotting.plot_variance_curves(
        curves, os.path.join(output_dir, f"{name}_variance.png"),
        title="running variance / final value"))
    if development and len(samples) > 1:
        figures.append(plotting.plot_noise_development(
            norms, os.path.join(output_dir, f"{name}_development.png")))
    result = {
        "model": name,
        "settings": settings,
        "facts": facts,
        "measurements": {label: {"statistics": s.statistics(),
                                 "noise_norms": s.noise_norms.tolist(),
                                 "gradient_norms": s.gradient_norms.tolist()}
                         for label, s in samples.items()},
        "references": {label: {"statistics": noise.tail_statistics(x)}
                       for label, x in refs.items()},
        "figures": [os.path.basename(p) for p in figures],
    }
    path = os.path.join(output_dir, f"{name}_noise.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"wrote {', '.join(result['figures'])} and {os.path.basename(path)} to {output_dir}",
          flush=True)
    return result


PATHS = {"bert": bert_measurements, "attention_ablation": ablation.ablation_measurements,
         "resnet": resnet_measurements}
