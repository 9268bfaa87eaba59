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

def define_common_flags(**defaults):
    """Define the shared flags, one per field of `config.RunConfig` and
    `config.OptimizerConfig` (generated: same names, help and ranges as the configs), as
    key flags of the calling program; `defaults` overrides a field's default value (a
    program's recipe; a flag another program in this process defined first keeps its
    definition).

    E.g. a trainer whose task wants another batch size calls
    ``define_common_flags(global_batch_size=256)``.
    """
    unknown = set(defaults) - {f.name for cls in (config.RunConfig, config.OptimizerConfig)
                               for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"define_common_flags: no such field(s) {sorted(unknown)}")
    module = config.calling_module()
    for cls in (config.RunConfig, config.OptimizerConfig):
        config.define_flags(cls, defaults=defaults, module=module)
    if "config" not in flags.FLAGS:
        flags.DEFINE_string("config", None,
                            "Repeat a run: a config.json (a run's record) whose settings are "
                            "this run's, except the flags given on this command line.")
        flags.DEFINE_bool("show_optimizer_settings", False,
                          "Print the optimizer's settings as this trainer resolves them (the "
                          "optimizer's defaults, the model family's measured ones, the flags "
                          "given; the learning rate before --lr_scaling_batch) as one JSON "
                          "line, and exit.")
    for name in ("config", "show_optimizer_settings"):
        flags.FLAGS.register_key_flag_for_module(module, flags.FLAGS[name])


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


def write_config(model_dir, experiment, flag_values=None):
    """``model_dir/config.json``: the experiment, ``{"program", "run": {...}, "optimizer":
    {...}, "task": {...}}`` (`config.ExperimentConfig.to_dict`, which `from_dict` and
    ``--config`` read back), and, for a run started from flags, ``"flags": {name: value}``
    of every flag of the program (written atomically)."""
    files.makedirs(model_dir)
    path = files.join(model_dir, "config.json")
    record = experiment.to_dict()
    if flag_values is not None:
        record["flags"] = program_flags(flag_values)
        for section in ("run", "optimizer", "task"):  # the values used (--config included)
            record["flags"].update(record[section])
    files.write_text_atomically(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
