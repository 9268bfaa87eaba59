"""Flags every trainer shares, and the one-line error handling of the CLI.

A trainer defines its own task flags next to these, then runs
`trainers.common.cli.run(main)`. `--flagfile` is absl's own.
"""

import json
import sys

from absl import flags

from trainers.common.errors import TrainerError

from trainers.common import files
from trainers.common import optimizer_registry as registry
from trainers.common.optimizer_registry import readers

OPTIMIZERS = registry.NAMES
EVAL_SPLITS = ("validation", "test")
LR_SCHEDULES = ("constant", "linear_decay", "cosine", "step")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")

_DEFINED = False


def define_common_flags(**defaults):
    """Define the shared flags once; `defaults` overrides a flag's default value.

    E.g. a trainer whose task wants another batch size calls
    ``define_common_flags(global_batch_size=256)``.
    """
    global _DEFINED
    if _DEFINED:
        return
    _DEFINED = True

    def d(name, value):
        return defaults.get(name, value)

    # Where and how long.
    flags.DEFINE_string("model_dir", d("model_dir", None),
                        "Directory for checkpoints, logs, metrics and the export.")
    flags.DEFINE_integer("train_steps", d("train_steps", 1000), "Optimizer steps in total.")
    flags.DEFINE_integer("global_batch_size", d("global_batch_size", 32),
                         "Examples per step over all replicas.")
    flags.DEFINE_integer("steps_per_loop", d("steps_per_loop", 50),
                         "Steps run on the device per host call (one progress line each).")
    flags.DEFINE_integer("eval_every", d("eval_every", 200),
                         "Evaluate every this many steps (rounded to whole loops); 0: only at the end.")
    flags.DEFINE_integer("eval_batches", d("eval_batches", 0),
                         "Global batches per evaluation (0: the held-out set once).")
    flags.DEFINE_integer("fixed_train_examples", d("fixed_train_examples", 0),
                         "Also evaluate, at every evaluation, this many fixed training examples "
                         "(evenly spaced over the training set, the same for every optimizer "
                         "and seed, dropout off), recorded as fixed_train_<metric>: the "
                         "training loss of an optimisation-speed claim. 0: off.")
    flags.DEFINE_integer("checkpoint_every", d("checkpoint_every", 200),
                         "Save a checkpoint every this many steps (rounded to whole loops).")
    flags.DEFINE_integer("seed", d("seed", 0), "Seed of the model init, data order and masking.")
    flags.DEFINE_bool("show_optimizer_settings", False,
                      "Print the optimizer's settings as this trainer resolves them (the "
                      "optimizer's defaults, the model family's measured ones, the flags given; "
                      "the learning rate before --lr_scaling_batch) as one JSON line, and exit.")
    flags.DEFINE_bool("export", d("export", True),
                      "Export the trained model to <model_dir>/export at the end (sweeps turn it "
                      "off for their validation screens, whose models nobody loads).")
    flags.DEFINE_bool("deterministic", d("deterministic", False),
                      "Enable TF op determinism (bit-identical reruns and resumes; slower).")
    # The optimizer.
    flags.DEFINE_enum("optimizer", d("optimizer", registry.DEFAULT), OPTIMIZERS,
                      "The optimizer (trainers/common/optimizer_registry.py).")
    flags.DEFINE_float("learning_rate", d("learning_rate", None),
                       "Peak learning rate; default: the optimizer's (see trainers.common.optimizers).")
    flags.DEFINE_integer("warmup_steps", d("warmup_steps", 0), "Linear warm-up steps.")
    flags.DEFINE_enum("lr_schedule", d("lr_schedule", "linear_decay"), LR_SCHEDULES,
                      "After warm-up: constant, linear decay to 0 at train_steps, cosine, or "
                      "step (x --lr_decay_rate at each --lr_decay_steps/--lr_decay_epochs).")
    flags.DEFINE_float("weight_decay", d("weight_decay", None),
                       "Decoupled weight decay as Keras applies it (w -= lr * weight_decay * w), "
                       "the same for every optimizer; default: the optimizer's (0 for "
                       + ", ".join(n for n, spec in registry.OPTIMIZERS.items()
                                   if spec.defaults.get("weight_decay") == 0) + ").")
    flags.DEFINE_float("beta_1", d("beta_1", None),
                       f"First-moment decay ({readers('beta_1')}).")
    flags.DEFINE_float("beta_2", d("beta_2", None),
                       "Second-moment decay (Adam's family) or the threshold EMA (ACClip's): "
                       f"{readers('beta_2')}.")
    flags.DEFINE_float("epsilon", d("epsilon", None),
                       f"The optimizer's epsilon ({readers('epsilon')}; the others refuse it).")
    flags.DEFINE_float("alpha", d("alpha", None),
                       f"ACClip's moment order in [1, 2] ({readers('alpha')}).")
    flags.DEFINE_float("tau", d("tau", None), f"Clipping threshold ({readers('tau')}).")
    flags.DEFINE_float("acclip_initial_tau", d("acclip_initial_tau", None),
                       f"ACClip's initial threshold ({readers('acclip_initial_tau')}).")
    flags.DEFINE_float("momentum", d("momentum", None), f"Momentum ({readers('momentum')}).")
    # Epoch-based lengths and the step schedule (see trainers/common/run_plan.py):
    # a flag given on the command line beats one left at its default.
    flags.DEFINE_float("train_epochs", d("train_epochs", None),
                       "Train this many epochs of the task's training set (instead of --train_steps).")
    flags.DEFINE_float("warmup_epochs", d("warmup_epochs", None),
                       "Warm-up length in epochs (instead of --warmup_steps).")
    flags.DEFINE_list("lr_decay_steps", d("lr_decay_steps", []),
                      "Boundaries (steps) of --lr_schedule=step.")
    flags.DEFINE_list("lr_decay_epochs", d("lr_decay_epochs", []),
                      "Boundaries (epochs) of --lr_schedule=step.")
    flags.DEFINE_float("lr_decay_rate", d("lr_decay_rate", 0.1),
                       "--lr_schedule=step multiplies the learning rate by this at each boundary.")
    flags.DEFINE_integer("lr_scaling_batch", d("lr_scaling_batch", 0),
                         "If > 0, the peak learning rate is --learning_rate x global_batch_size / "
                         "this (the linear scaling rule); 0: --learning_rate as given.")
    # Where it runs.
    flags.DEFINE_enum("strategy", d("strategy", "auto"), STRATEGIES,
                      "tf.distribute strategy; auto: TF_CONFIG -> multi-worker, >1 GPU -> mirrored, "
                      "else one device.")
    flags.DEFINE_string("tpu", d("tpu", None),
                        "TPU name or grpc:// address for TPUClusterResolver ('local' for a TPU VM).")
    flags.DEFINE_integer("num_devices", d("num_devices", None),
                         "Devices per worker for mirrored (on CPU: that many logical CPUs).")
    flags.DEFINE_enum("mixed_precision", d("mixed_precision", "none"), MIXED_PRECISION,
                      "Keras mixed-precision policy.")
    flags.DEFINE_bool("jit_compile", d("jit_compile", True),
                      "XLA-compile each replica's forward/backward pass.")


def define_once(define, name, default, help_text, *args):
    """Define a flag unless another trainer in this process already has (the first
    definition's help text wins; absl refuses a second definition from another module)."""
    if name not in flags.FLAGS:
        define(name, default, *args, help_text)


def define_eval_split_flag():
    """--eval_split, one flag for every trainer (a sweep chooses on `validation` and
    reports on `test`). A string, because the image trainer also takes TFDS split
    names; the text trainers accept only EVAL_SPLITS (`text_eval_split`)."""
    define_once(flags.DEFINE_string, "eval_split", "validation",
                "Held-out examples to evaluate on: validation (choose settings on it) or test "
                "(report the chosen ones). Text trainers: the corpus' held-out documents "
                "halved into the two with a fixed seed (the training documents are the same "
                "either way). resnet_imagenet: digits, fashion_mnist, folder:PATH without "
                "test/: a fixed fold of the training split (--validation_fraction) or the "
                "dataset's held-out split; folder:PATH with test/: val/ or test/; tfds:NAME: "
                "a TFDS split name (ImageNet: validation).")


def define_shuffle_buffer_flag():
    """--shuffle_buffer of every trainer that streams data (prepared text shards, TFDS)."""
    define_once(flags.DEFINE_integer, "shuffle_buffer", 10_000,
                "Examples each input pipeline shuffles in when data is streamed (prepared "
                "text shards with --data_dir, TFDS images): bounded memory.")


def text_eval_split(value):
    """--eval_split of a text trainer: validation or test, else one clear error."""
    if value not in EVAL_SPLITS:
        raise TrainerError(f"--eval_split={value!r}: a text trainer evaluates on "
                           f"{' or '.join(EVAL_SPLITS)}")
    return value


def flags_text(flag_values=None):
    """The resolved flags in flagfile format (so `--flagfile=flags.txt` reruns).

    absl's own flags (--help, --logtostderr, ...) are left out: some of them
    (--nohelp) cannot be read back from a flagfile.
    """
    flag_values = flag_values or flags.FLAGS
    lines = []
    for module, module_flags in sorted(flag_values.flags_by_module_dict().items()):
        if module.startswith("absl."):
            continue
        for flag in sorted(module_flags, key=lambda fl: fl.name):
            text = flag.serialize()
            if text:
                lines.append(text)
    return "\n".join(lines) + "\n"


def write_flags(model_dir, flag_values=None):
    files.makedirs(model_dir)
    path = files.join(model_dir, "flags.txt")
    files.write_text_atomically(path, flags_text(flag_values))
    return path


def _program_module(module):
    """Whether absl's `module` (a module name, or the main script's path) is one of
    this project's: trainers.* or the running program itself."""
    if module.startswith("trainers."):
        return True
    main = sys.argv[0] if sys.argv else ""
    return bool(main) and files.absolute(module) == files.absolute(main)


def program_flags(flag_values=None):
    """``{name: value}`` of every flag the program and the trainers.* modules define
    (absl's and TensorFlow's own flags left out), sorted by name."""
    flag_values = flag_values or flags.FLAGS
    values = {}
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if _program_module(module):
            for flag in module_flags:
                values[flag.name] = flag.value
    return dict(sorted(values.items()))


def write_config(model_dir, program, flag_values=None):
    """``model_dir/config.json``: ``{"program": program, "flags": {name: value}}``, the
    machine-readable record of a run's settings (written atomically)."""
    files.makedirs(model_dir)
    path = files.join(model_dir, "config.json")
    record = {"program": program, "flags": program_flags(flag_values)}
    files.write_text_atomically(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
