"""Flags every trainer shares, and the one-line error handling of the CLI.

A trainer defines its own task flags next to these, then runs
`trainers.common.cli.run(main)`. `--flagfile` is absl's own.
"""

import dataclasses
import json
import sys

from absl import flags

from trainers.common import config
from trainers.common import files
from trainers.common import optimizer_registry as registry

OPTIMIZERS = registry.NAMES

_DEFINED = False


def define_common_flags(**defaults):
    """Define the shared flags once, one per field of `config.RunConfig` and
    `config.OptimizerConfig` (generated: same names, help and ranges as the configs);
    `defaults` overrides a field's default value (a program's recipe).

    E.g. a trainer whose task wants another batch size calls
    ``define_common_flags(global_batch_size=256)``.
    """
    global _DEFINED
    if _DEFINED:
        return
    _DEFINED = True
    unknown = set(defaults) - {f.name for cls in (config.RunConfig, config.OptimizerConfig)
                               for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"define_common_flags: no such field(s) {sorted(unknown)}")
    config.define_flags(config.RunConfig, defaults=defaults)
    config.define_flags(config.OptimizerConfig, defaults=defaults)
    flags.DEFINE_string("config", None,
                        "Repeat a run: a config.json (a run's record) whose settings are this "
                        "run's, except the flags given on this command line.")
    flags.DEFINE_bool("show_optimizer_settings", False,
                      "Print the optimizer's settings as this trainer resolves them (the "
                      "optimizer's defaults, the model family's measured ones, the flags given; "
                      "the learning rate before --lr_scaling_batch) as one JSON line, and exit.")


def define_once(define, name, default, help_text, *args):
    """Define a flag unless another trainer in this process already has (the first
    definition's help text wins; absl refuses a second definition from another module)."""
    if name not in flags.FLAGS:
        define(name, default, *args, help_text)


def define_eval_split_flag():
    """--eval_split, one flag for every trainer (a sweep chooses on `validation` and
    reports on `test`). A string, because the image trainer also takes TFDS split
    names (the text trainers' typed configs accept only validation or test)."""
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


def write_config(model_dir, program, flag_values=None, run=None, optimizer=None, task=None):
    """``model_dir/config.json``: ``{"program": program, "flags": {name: value}, "run":
    {...}, "optimizer": {...}[, "task": {...}]}``, the machine-readable record of a run's
    settings (the typed configs as dicts next to every flag; written atomically);
    `config.ExperimentConfig.from_dict` reads it back."""
    files.makedirs(model_dir)
    path = files.join(model_dir, "config.json")
    record = {"program": program, "flags": program_flags(flag_values)}
    for section in (run, optimizer, task):  # the values the run used (--config included)
        if section is not None:
            record["flags"].update(section.to_dict())
    if run is not None:
        record["run"] = run.to_dict()
    if optimizer is not None:
        record["optimizer"] = optimizer.to_dict()
    if task is not None:
        record["task"] = task.to_dict()
    files.write_text_atomically(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
