"""The trainers' own tasks, built for a measurement exactly as the trainer builds them.

Settings flow: a run's ``config.json`` (or, for a fresh model, this program's
flags, generated from the same task configs as the trainers')
-> an `ExperimentConfig` -> `BertPretrainTask` / `CausalLMTask` /
`ImageClassificationTask`, the classes `trainers.bert_pretrain`,
`trainers.causal_lm` and `trainers.resnet_imagenet` run. Model,
vocabulary, corpus split, segments, masking and seed therefore come from the
task code, never from a second copy of it. Only the measurement's own choices
are set on top (`MEASUREMENT_OVERRIDES`, `FRESH_IMAGE_SETTINGS`).
"""


from trainers.bert.config import BertConfig
from trainers.bert.task import BertPretrainTask
from trainers.common import config
from trainers.common import files
from trainers.common.errors import TrainerError
from trainers.lm.task import CausalLMTask
from trainers.lm.config import LMConfig
from trainers.noise.run_config import read_run_record
from trainers.vision.config import ImageConfig
from trainers.vision.task import ImageClassificationTask

BERT_PROGRAMS = ("trainers.bert_pretrain",)
IMAGE_PROGRAMS = ("trainers.resnet_imagenet",)
LM_PROGRAMS = ("trainers.causal_lm",)
#: The measurement runs the model with training=False; dropout is off either way.
MEASUREMENT_OVERRIDES = {"dropout": 0.0}
#: A fresh ResNet (no --pretrain_dir) on --dataset with --image_model, --image_size
#: and --seed: the plain cross-entropy of the images as stored (no augmentation, no
#: crop, no label smoothing, no L2 term); the other `ImageConfig` fields keep their
#: defaults (the data's own classes and TFDS splits).
FRESH_IMAGE_SETTINGS = dict(augment="none", eval_crop_fraction=1.0, label_smoothing=0.0,
                            l2_weight_decay=0.0)
#: The BERT flags reported as the measurement's settings (names only; values from the run).
BERT_SETTINGS = ("model_size", "num_layers", "hidden_dim", "num_heads", "intermediate_dim",
                 "corpus", "max_documents", "eval_fraction", "vocab_size", "seq_length",
                 "max_predictions_per_seq", "mask_rate", "seed")
LM_SETTINGS = ("model_size", "num_layers", "hidden_dim", "num_heads", "intermediate_dim",
               "corpus", "max_documents", "eval_fraction", "tokenizer", "vocab_size",
               "seq_length", "seed")
IMAGE_SETTINGS = ("model", "dataset", "image_size", "num_classes", "seed", "augment",
                  "eval_crop_fraction", "label_smoothing", "l2_weight_decay")


def run_experiment(pretrain_dir, programs, task_cls):
    """The `ExperimentConfig` of the run in `pretrain_dir` (made by one of `programs`; its
    config.json, typed or the flags of an older run; a run of another program is one
    error line)."""
    program, record = read_run_record(pretrain_dir)
    if program not in programs:
        raise TrainerError(f"{pretrain_dir} is a run of {program}; this measurement needs a "
                           f"run of {' or '.join(programs)}")
    return config.ExperimentConfig.from_dict(record, task_cls)


def text_run_experiment(pretrain_dir, programs, task_cls):
    """`run_experiment` of a text task's run, with the measurement's overrides and the
    run's own ``vocab.txt``."""
    vocab = files.join(pretrain_dir, "vocab.txt")
    if not files.exists(vocab):
        raise TrainerError(f"{pretrain_dir} has no vocab.txt (the run's vocabulary)")
    return run_experiment(pretrain_dir, programs, task_cls).replace(
        task=dict(MEASUREMENT_OVERRIDES, vocab_file=vocab))


def bert_experiment(f):
    """The `ExperimentConfig` `BertPretrainTask` is built from for this measurement.

    With ``--pretrain_dir``: the run's config.json, its vocabulary the run's own
    ``vocab.txt``. Otherwise this program's flags (the BERT config's model and data
    fields, --seed).
    """
    if f.pretrain_dir:
        return text_run_experiment(f.pretrain_dir, BERT_PROGRAMS, BertConfig)
    # global_batch_size only sizes the task's check that each split holds a batch: the
    # measurement reads no held-out batch, and `bert_task` checks the training split.
    return config.ExperimentConfig(
        "trainers.gradient_noise",
        config.RunConfig(model_dir=f.output_dir, seed=f.seed, global_batch_size=1),
        config.OptimizerConfig(),
        config.from_flags(BertConfig, f).replace(**MEASUREMENT_OVERRIDES))


def settings(experiment):
    """{name: value} of an experiment's task settings and its seed (what `settings_of`
    picks the reported ones from)."""
    return dict(experiment.task.to_dict(), seed=experiment.run.seed)


def bert_task(f, experiment):
    """`BertPretrainTask` from `bert_experiment(f)`: the run's task, or a fresh one.

    A run's directory is only read (``is_chief=False``); a fresh task learns or loads
    its vocabulary as bert_pretrain does and saves it as ``--output_dir/vocab.txt``.
    """
    if f.pretrain_dir:
        task = BertPretrainTask(experiment, f.pretrain_dir, is_chief=False)
    else:
        files.makedirs(f.output_dir, "--output_dir")
        # An earlier measurement's vocabulary: not this one's settings.
        files.remove(files.join(f.output_dir, "vocab.txt"))
        task = BertPretrainTask(experiment, f.output_dir, is_chief=True)
    if len(task.data.train_segments) < f.batch_size:
        raise TrainerError(f"the training split has {len(task.data.train_segments)} sequences, "
                           f"fewer than one batch (--batch_size={f.batch_size})")
    return task


def lm_task(f):
    """(`ExperimentConfig`, `CausalLMTask`) of the trainers.causal_lm run in
    ``--pretrain_dir``: its config.json (typed, or the flags of an older run) and its
    ``vocab.txt`` (the run's directory is only read)."""
    experiment = text_run_experiment(f.pretrain_dir, LM_PROGRAMS, LMConfig)
    return experiment, CausalLMTask(experiment, f.pretrain_dir, is_chief=False)


def image_experiment(f):
    """The `ExperimentConfig` `ImageClassificationTask` is built from: the resnet_imagenet
    run's config.json with ``--pretrain_dir``, else --image_model, --dataset,
    --image_size and --seed with `FRESH_IMAGE_SETTINGS`."""
    if f.pretrain_dir:
        return run_experiment(f.pretrain_dir, IMAGE_PROGRAMS, ImageConfig)
    return config.ExperimentConfig(
        "trainers.gradient_noise",
        config.RunConfig(model_dir=f.output_dir, seed=f.seed, jit_compile=False),
        config.OptimizerConfig(),
        ImageConfig(model=f.image_model, dataset=f.dataset, image_size=f.image_size,
                    **FRESH_IMAGE_SETTINGS))


def settings_of(values, names, program):
    """{name: value} of the named settings (`values`: {name: value}) the measurement used,
    and the program."""
    return dict({name: values[name] for name in names}, program=program)
