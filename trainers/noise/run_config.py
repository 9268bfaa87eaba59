"""A measured run's settings, read from the one record its trainer writes.

Every trainer run writes ``<model_dir>/config.json``, its `ExperimentConfig`
(``{"program", "run", "optimizer", "task"}``; a run started from flags also has
``"flags"``, every flag of its program; a run written before the typed configs has
only ``"program"`` and ``"flags"``). The measurement builds the run's task from
exactly that record (`trainers.noise.tasks.run_experiment`), so a changed trainer
default cannot make the measurement disagree with the run.
"""

import json

from trainers.common import files
from trainers.common.errors import TrainerError

CONFIG_FILE = "config.json"


def read_run_record(model_dir):
    """``(program, record)`` of the run in `model_dir`: its whole config.json."""
    path = files.join(model_dir, CONFIG_FILE)
    if not files.exists(path):
        raise TrainerError(f"run {model_dir} has no {CONFIG_FILE}; rerun its trainer with "
                           "this version")
    try:
        record = json.loads(files.read_text(path))
        program = record["program"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainerError(f"{path} is not a run record ({{\"program\", \"run\", ...}}): "
                           f"{type(e).__name__}: {e}") from None
    sections = [k for k in ("flags", "run", "optimizer", "task") if k in record]
    if not sections or any(not isinstance(record[k], dict) for k in sections):
        raise TrainerError(f"{path}: no settings (\"run\", \"optimizer\", \"task\" or "
                           "\"flags\" mappings)")
    return program, record
