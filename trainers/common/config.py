"""Typed configs: what a run is, as data (TF Model Garden's `ExperimentConfig`).

`RunConfig` (where, how long, how distributed) and `OptimizerConfig` (which optimizer,
its settings and learning-rate schedule) are frozen dataclasses. Each field carries its
help text and its range (`option(...)`), and from that one place come

* the absl flags of every trainer (`define_flags`: same names, types, defaults, help;
  a range becomes an absl validator, so a bad value fails while flags are parsed),
* the checks of a config built in Python (`__post_init__`: the same ranges, one
  `TrainerError` line each),
* `from_flags` (the flags given on the command line win over a program's recipe
  defaults, which win over the field defaults), `to_dict` / `from_dict`.

The runner, the run plan and the optimizer factory read these configs, never absl.
"""

import dataclasses
import typing
from typing import Optional

from absl import flags

from trainers.common import optimizer_registry as registry
from trainers.common.errors import TrainerError

LR_SCHEDULES = ("constant", "linear_decay", "cosine", "step")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
MAINTENANCE_EVENTS = ("auto", "on", "off")


def option(default, help, *, minimum=None, above=None, below=None, choices=None,
           required=False):
    """A config field: its default, help text and range (`minimum`: >=, `above`: >,
    `below`: <, `choices`: one of; None values always pass: "the default" of optional
    settings)."""
    metadata = dict(help=help, minimum=minimum, above=above, below=below, choices=choices,
                    required=required)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def problem(field, value):
    """What is wrong with `value` for `field` ("--name must be ..."), or None."""
    m = field.metadata
    name = f"--{field.name}"
    if value is None:
        return f"{name} is required" if m.get("required") else None
    if m.get("choices") and value not in m["choices"]:
        return f"{name} must be one of {', '.join(m['choices'])}, got {value!r}"
    if m.get("minimum") is not None and value < m["minimum"]:
        return f"{name} must be >= {m['minimum']}, got {value}"
    if m.get("above") is not None and not value > m["above"]:
        return f"{name} must be > {m['above']}, got {value}"
    if m.get("below") is not None and not value < m["below"]:
        return f"{name} must be < {m['below']}, got {value}"
    return None


class Config:
    """The behaviour every config section shares (the dataclasses below inherit it)."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            message = problem(field, getattr(self, field.name))
            if message:
                raise TrainerError(message)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The config of `values` ({field: value}; keys of other sections are ignored,
        missing fields take their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """Where a run writes, how long it trains, how it evaluates, where it runs."""
    model_dir: Optional[str] = option(
        None, "Directory for checkpoints, logs, metrics and the export.", required=True)
    train_steps: int = option(1000, "Optimizer steps in total.", minimum=1)
    train_epochs: Optional[float] = option(
        None, "Train this many epochs of the task's training set (instead of --train_steps).",
        above=0)
    global_batch_size: int = option(32, "Examples per step over all replicas.", minimum=1)
    steps_per_loop: int = option(
        50, "Steps run on the device per host call (one progress line each).", minimum=1)
    eval_every: int = option(
        200, "Evaluate every this many steps (rounded to whole loops); 0: only at the end.",
        minimum=0)
    eval_batches: int = option(
        0, "Global batches per evaluation (0: the held-out set once).", minimum=0)
    fixed_train_examples: int = option(
        0, "Also evaluate, at every evaluation, this many fixed training examples (evenly "
        "spaced over the training set, the same for every optimizer and seed, dropout off), "
        "recorded as fixed_train_<metric>: the training loss of an optimisation-speed "
        "claim. 0: off.", minimum=0)
    checkpoint_every: int = option(
        200, "Save a checkpoint every this many steps (rounded to whole loops).", minimum=0)
    seed: int = option(0, "Seed of the model init, data order and masking.")
    export: bool = option(
        True, "Export the trained model to <model_dir>/export at the end (sweeps turn it off "
        "for their validation screens, whose models nobody loads).")
    deterministic: bool = option(
        False, "Enable TF op determinism (bit-identical reruns and resumes; slower).")
    strategy: str = option(
        "auto", "tf.distribute strategy; auto: TF_CONFIG -> multi-worker, >1 GPU -> mirrored, "
        "else one device.", choices=STRATEGIES)
    tpu: Optional[str] = option(
        None, "TPU name or grpc:// address for TPUClusterResolver ('local' for a TPU VM).")
    num_devices: Optional[int] = option(
        None, "Devices per worker for mirrored (on CPU: that many logical CPUs).", minimum=1)
    mixed_precision: str = option("none", "Keras mixed-precision policy.",
                                  choices=MIXED_PRECISION)
    jit_compile: bool = option(True, "XLA-compile each replica's forward/backward pass.")
    maintenance_events: str = option(
        "auto", "Stop with a checkpoint, as on SIGTERM, when the cloud VM announces a "
        "maintenance that stops it (Compute Engine metadata 'instance/maintenance-event', "
        "polled every 5 s); auto: under a TPU strategy.", choices=MAINTENANCE_EVENTS)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(Config):
    """The optimizer (an entry of trainers/common/optimizer_registry.py), the settings
    given for it (None: the model family's measured one, else the registry's default) and
    the learning-rate schedule."""
    optimizer: str = option(registry.DEFAULT,
                            "The optimizer (trainers/common/optimizer_registry.py).",
                            choices=registry.NAMES)
    learning_rate: Optional[float] = option(
        None, "Peak learning rate; default: the model family's measured one, else the "
        "optimizer's (trainers/common/optimizer_registry.py).", above=0)
    warmup_steps: int = option(0, "Linear warm-up steps.", minimum=0)
    warmup_epochs: Optional[float] = option(
        None, "Warm-up length in epochs (instead of --warmup_steps).", minimum=0)
    lr_schedule: str = option(
        "linear_decay", "After warm-up: constant, linear decay to 0 at train_steps, cosine, "
        "or step (x --lr_decay_rate at each --lr_decay_steps/--lr_decay_epochs).",
        choices=LR_SCHEDULES)
    lr_decay_steps: list = option([], "Boundaries (steps) of --lr_schedule=step.")
    lr_decay_epochs: list = option([], "Boundaries (epochs) of --lr_schedule=step.")
    lr_decay_rate: float = option(
        0.1, "--lr_schedule=step multiplies the learning rate by this at each boundary.")
    lr_scaling_batch: int = option(
        0, "If > 0, the peak learning rate is --learning_rate x global_batch_size / this "
        "(the linear scaling rule); 0: --learning_rate as given.", minimum=0)
    weight_decay: Optional[float] = option(
        None, "Decoupled weight decay as Keras applies it (w -= lr * weight_decay * w), the "
        "same for every optimizer; default: the optimizer's (0 for "
        + ", ".join(n for n, s in registry.OPTIMIZERS.items()
                    if s.defaults.get("weight_decay") == 0) + ").", minimum=0)
    beta_1: Optional[float] = option(
        None, f"First-moment decay ({registry.readers('beta_1')}).")
    beta_2: Optional[float] = option(
        None, "Second-moment decay (Adam's family) or the threshold EMA (ACClip's): "
        f"{registry.readers('beta_2')}.")
    epsilon: Optional[float] = option(
        None, f"The optimizer's epsilon ({registry.readers('epsilon')}; the others refuse "
        "it).", minimum=0)
    alpha: Optional[float] = option(
        None, f"ACClip's moment order in [1, 2] ({registry.readers('alpha')}).")
    tau: Optional[float] = option(None, f"Clipping threshold ({registry.readers('tau')}).")
    acclip_initial_tau: Optional[float] = option(
        None, f"ACClip's initial threshold ({registry.readers('acclip_initial_tau')}).")
    momentum: Optional[float] = option(None, f"Momentum ({registry.readers('momentum')}).")

    def given_settings(self):
        """{setting: value} of the registry's settings this config gives (not None)."""
        return {k: getattr(self, k) for k in registry.SETTINGS if getattr(self, k) is not None}


@dataclasses.dataclass(frozen=True)
class StreamingConfig(Config):
    """The setting every task that streams its data shares."""
    shuffle_buffer: int = option(
        10_000, "Examples each input pipeline shuffles in when data is streamed (prepared "
        "text shards with --data_dir, TFDS images): bounded memory.", minimum=1)


# (steps field, epochs field): a length given either way; on the command line the one
# given wins over a recipe's default for the other, and giving both is an error.
LENGTH_PAIRS = (("train_steps", "train_epochs"), ("warmup_steps", "warmup_epochs"),
                ("lr_decay_steps", "lr_decay_epochs"))


# ---------------------------------------------------------------- flags at the edge
def _flag_type(field):
    """The absl DEFINE function of `field` (by its annotation and choices)."""
    kind = field.type
    if typing.get_origin(kind) is typing.Union:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if field.metadata.get("choices"):
        return flags.DEFINE_enum
    return {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
            bool: flags.DEFINE_bool, list: flags.DEFINE_list}[kind]


def calling_module(depth=2):
    """The absl module name of the code `depth` frames up: its ``__name__``, or, for the
    running program's own module (``__main__``), the script path absl files it under."""
    import sys

    name = sys._getframe(depth).f_globals.get("__name__", "__main__")
    if name == "__main__":
        return sys.argv[0] if sys.argv and sys.argv[0] else name
    return name


def define_flags(config_cls, flag_values=flags.FLAGS, defaults=None, only=None, module=None):
    """Define a flag per field of `config_cls` (its default: `defaults[name]` when given,
    a program's recipe, else the field's), unless this process already has one of that
    name (another program's definition; the values are read per program, `from_flags`).
    A field's range becomes an absl validator. `only`: just these fields (a program that
    uses part of a config; the others keep their defaults in `from_flags`). Each flag is
    a key flag of `module` (default: the caller, the program), so its ``--help`` lists it."""
    defaults = defaults or {}
    module = module or calling_module()
    for field in dataclasses.fields(config_cls):
        if only is not None and field.name not in only:
            continue
        if field.name not in flag_values:
            _define(field, defaults.get(field.name, _default(field)), flag_values)
        flag_values.register_key_flag_for_module(module, flag_values[field.name])


def _define(field, default, flag_values):
    define = _flag_type(field)
    help_text = field.metadata["help"]
    if define is flags.DEFINE_enum:
        define(field.name, default, list(field.metadata["choices"]), help_text,
               flag_values=flag_values)
    else:
        define(field.name, default, help_text, flag_values=flag_values)
    if any(field.metadata.get(k) is not None for k in ("minimum", "above", "below")):
        flags.register_validator(
            field.name, lambda value, field=field: problem(field, value) is None,
            message=_range_text(field), flag_values=flag_values)


def _range_text(field):
    m = field.metadata
    parts = [f"{op} {m[k]}" for k, op in (("minimum", ">="), ("above", ">"), ("below", "<"))
             if m.get(k) is not None]
    return "must be " + " and ".join(parts)


def _default(field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def from_flags(config_cls, flag_values=flags.FLAGS, base=None):
    """`config_cls` from parsed flags: a flag given on the command line (or in a
    --flagfile), else `base`'s value ({name: value}: a program's recipe, then a
    config.json's on top, `--config`), else the field's default. A flag's own default
    only shows in --help: in a process that imports several programs, the first one to
    define a shared flag sets its default, so values not given never come from it. Of a
    steps/epochs pair (`LENGTH_PAIRS`), the one given on the command line replaces the
    other's default (a program's recipe may default to epochs); both given is one error
    line."""
    base = base or {}

    def given(name):
        return name in flag_values and flag_values[name].present

    values = {}
    for field in dataclasses.fields(config_cls):
        name = field.name
        values[name] = (flag_values[name].value if given(name)
                        else base.get(name, _default(field)))
    for steps, epochs in LENGTH_PAIRS:
        if steps not in values or epochs not in values:
            continue
        named = [n for n in (steps, epochs) if given(n) and values[n] not in (None, [])]
        if len(named) == 2:
            raise TrainerError(f"give --{steps} or --{epochs}, not both")
        if given(steps) and not given(epochs):
            values[epochs] = [] if isinstance(values[epochs], list) else None
    return config_cls(**values)


def experiment_from_flags(program, task_class, flag_values=flags.FLAGS, record=None):
    """The `ExperimentConfig` of parsed flags for `task_class` (its `config_class`): the
    flags given, over `record` ({name: value}, a config.json's: `--config`), over the
    task's `run_defaults` (its program's recipe), over the fields' defaults."""
    base = dict(getattr(task_class, "run_defaults", {}), **(record or {}))
    return ExperimentConfig(program, from_flags(RunConfig, flag_values, base),
                            from_flags(OptimizerConfig, flag_values, base),
                            from_flags(task_class.config_class, flag_values, base))


def experiment_from_args(program, task_class, argv):
    """The `ExperimentConfig` a program's command line `argv` (a list of ``--name=value``)
    describes, parsed into flags of its own (not absl's global FLAGS), so that one process
    can build many runs' configs: the shared flags with the task class's `run_defaults`
    (its program's recipe), and the task's `config_class`. A bad flag is one error line."""
    flag_values = flags.FlagValues()
    defaults = getattr(task_class, "run_defaults", {})
    for cls in (RunConfig, OptimizerConfig, task_class.config_class):
        define_flags(cls, flag_values, defaults=defaults, module=program)
    try:
        flag_values([program, *argv])
    except flags.Error as e:
        raise TrainerError(f"{program}: {e}") from None
    return experiment_from_flags(program, task_class, flag_values)


def read_record(path):
    """{name: value} of a config.json (`ExperimentConfig.to_dict`'s sections, or an older
    run's ``flags``), flat: the field names are the flag names."""
    import json

    from trainers.common import files

    try:
        record = json.loads(files.read_text(path))
    except Exception as e:  # noqa: BLE001 - missing, unreadable, not JSON: one line
        raise TrainerError(f"--config={path} is not a readable config.json: "
                           f"{type(e).__name__}: {e}") from None
    if not isinstance(record, dict):
        raise TrainerError(f"--config={path} is not a config.json (not a JSON object)")
    return flat_record(record)


def flat_record(record):
    """{name: value} of a config.json's dict: its ``flags`` (every flag of the run), then
    its typed sections on top. The field names are unique across sections."""
    flat = dict(record.get("flags") or {})
    for section in ("run", "optimizer", "task"):
        flat.update(record.get(section) or {})
    return flat


# ---------------------------------------------------------------- a whole experiment
@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A run as data: the program that wrote it, where and how long (`run`), the optimizer
    (`optimizer`) and the task's own settings (`task`, the task's config class)."""
    program: str
    run: RunConfig
    optimizer: OptimizerConfig
    task: Config

    def to_dict(self):
        return {"program": self.program, "run": self.run.to_dict(),
                "optimizer": self.optimizer.to_dict(), "task": self.task.to_dict()}

    @classmethod
    def from_dict(cls, record, task_cls):
        """From `to_dict`'s record, or from a flat ``{name: value}`` of every flag (the
        ``flags`` of a config.json written before the typed configs: the field names are
        the flag names)."""
        flat = flat_record(record)
        return cls(program=record.get("program", ""), run=RunConfig.from_dict(flat),
                   optimizer=OptimizerConfig.from_dict(flat), task=task_cls.from_dict(flat))

    @classmethod
    def from_json(cls, path, task_cls):
        """A run's config.json (`from_dict` of its record; local, gs://, ram://, ...)."""
        import json

        from trainers.common import files

        return cls.from_dict(json.loads(files.read_text(path)), task_cls)

    def with_values(self, **values):
        """The same experiment with fields changed by name, wherever they live
        (``with_values(learning_rate=0.1, seed=1, eval_split="test")``: the field names
        are unique across sections, as the flags are); an unknown name is one error line."""
        sections = {}
        for name, value in values.items():
            owner = next((s for s in ("run", "optimizer", "task") if name in
                          {f.name for f in dataclasses.fields(getattr(self, s))}), None)
            if owner is None:
                raise TrainerError(f"{self.program} has no setting --{name}")
            sections.setdefault(owner, {})[name] = value
        return self.replace(**sections)

    def replace(self, **sections):
        """The same experiment with sections replaced, or fields of them changed:
        ``replace(task={"dropout": 0.0})``."""
        changes = {}
        for name, value in sections.items():
            changes[name] = (getattr(self, name).replace(**value) if isinstance(value, dict)
                             else value)
        return dataclasses.replace(self, **changes)

