"""A measured run's settings, read from the one record its trainer writes.

Every trainer run writes ``<model_dir>/config.json``: ``{"program": "<module>",
"flags": {name: value}}`` with every flag the program defines, defaults
included (`trainers.common.flags.write_config`). The measurement builds the
run's task from exactly those values: `run_flags` returns them as a flags
object (attribute access, like ``absl.flags.FLAGS``) that the task classes
read as they read the trainer's own FLAGS. Nothing is re-parsed from
``flags.txt`` and no default is copied here, so a changed trainer default
cannot make the measurement disagree with the run.
"""

import json

from trainers.common import files
from trainers.common.errors import TrainerError

CONFIG_FILE = "config.json"


class MissingFlag(TrainerError, AttributeError):
    """A flag the record lacks: one line for the user, and an AttributeError so that
    ``getattr(flags, name, default)`` behaves as on absl's FLAGS."""


class RunFlags:
    """Read-only flag values by attribute; a flag the record lacks is a one-line error."""

    def __init__(self, values, source):
        self._values = dict(values)
        self._source = source

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise MissingFlag(f"{self._source} has no value for --{name} (written by an older "
                               "trainer?); rerun its trainer with this version") from None

    def __contains__(self, name):
        return name in self._values

    def values(self):
        """{name: value}, a copy."""
        return dict(self._values)

    def replace(self, **overrides):
        """The same values with `overrides` (the measurement's own settings) on top."""
        return RunFlags({**self._values, **overrides}, self._source)


def read_run_record(model_dir):
    """``(program, record)`` of the run in `model_dir`: its whole config.json (``flags``
    and, from runs of typed configs, ``run``, ``optimizer``, ``task``)."""
    path = files.join(model_dir, CONFIG_FILE)
    if not files.exists(path):
        raise TrainerError(f"run {model_dir} has no {CONFIG_FILE}; rerun its trainer with "
                           "this version")
    try:
        record = json.loads(files.read_text(path))
        program, values = record["program"], record["flags"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainerError(f"{path} is not a run record ({{\"program\", \"flags\"}}): "
                           f"{type(e).__name__}: {e}") from None
    if not isinstance(values, dict):
        raise TrainerError(f"{path}: \"flags\" is not a mapping")
    return program, record


def read_run_config(model_dir):
    """``(program, {flag: value})`` of the run in `model_dir`, from its config.json."""
    program, record = read_run_record(model_dir)
    return program, record["flags"]


def run_flags(model_dir, programs, **overrides):
    """The flags of the run in `model_dir` (made by one of `programs`), with `overrides`.

    `programs` names the trainers whose runs this measurement understands, e.g.
    ``("trainers.bert_pretrain",)``; a run of another program is a one-line error.
    """
    program, values = read_run_config(model_dir)
    if program not in programs:
        raise TrainerError(f"{model_dir} is a run of {program}; this measurement needs a run "
                           f"of {' or '.join(programs)}")
    return RunFlags(values, f"{model_dir}/{CONFIG_FILE}").replace(**overrides)
