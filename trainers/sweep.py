"""Tuned, seeded optimizer comparison: learning-rate (and tau) grids chosen on the
validation split, the chosen settings rerun with several seeds on the test split.

    python -m trainers.sweep --program=causal_lm --model_dir=runs/sweep \\
        --optimizers=sgd,gclip,cclip,acclip,acclip_norm,adam \\
        --trainer_flags="--model_size=tiny --train_steps=1000 --fixed_train_examples=512" \\
        --objective=fixed_train --lr_factor=2 --lr_points=4 --seeds=3

Every trial is its own trainer process, ``python -m trainers.<program>
--model_dir=MODEL_DIR/<optimizer>/<trial> --optimizer=... --learning_rate=...
[--tau=...] --seed=... --eval_split=validation|test <trainer_flags> [<arm options>]
--train_steps=<steps>``, its output in ``<trial>/trainer.log``; its curves (held-out
``eval_<metric>`` and, when the trainer has --fixed_train_examples, the fixed training
examples' ``fixed_train_<metric>``) are read from the run's metrics.jsonl. Every run,
screen or seed, trains the full budget with the same schedule. ``--objective`` says
which metric the claim is about and chooses: ``held_out`` (generalisation) or
``fixed_train`` (optimisation speed); the report shows both side by side. The rules (grids, their extension,
the tau search, selection, seeds, divergence) are in trainers/common/sweep.py.

Outputs in model_dir: ``results.json`` (every trial, the selections, the seed
aggregates; rewritten after each trial), ``results.md`` (the table) and
``results.png`` (held-out loss vs step, one mean line and min-max band per
optimizer over its seeds). A rerun skips the trials that results.json or a
finished run (summary.json at the requested step) already has, so an
interrupted sweep resumes; the trainers resume an unfinished run themselves.
A trial the trainer stopped on a non-finite value leaves ``diverged.json`` in
its directory and is not repeated either. ``--dry_run`` prints the plan.

The curves (and the plot) have one point per evaluation: set ``--eval_every``
in --trainer_flags. A one-point grid fixes a value (``--lr_grid=adam=1e-3``);
``--family_settings`` fixes each optimizer at the trainer's own setting for the
model family (the values an earlier sweep measured, e.g. ``CausalLMTask.optimizer_settings``),
which ``make demo`` uses. Validation screens skip the model export (``--noexport``).
"""

import itertools
import json
import re
import shlex
import subprocess
import sys
import time

from absl import flags

from trainers.common import cli
from trainers.common import files
from trainers.common import optimizer_registry as registry
from trainers.common import sweep as sweep_lib
from trainers.common import sweep_report
from trainers.common import trials as trials_lib
from trainers.common.reporting import format_duration

# Flags the sweep sets for each trial; --trainer_flags may not set them.
CONTROLLED = ("model_dir", "optimizer", "learning_rate", "tau", "seed", "eval_split",
              "train_epochs")
# Programs whose held-out loss is a token cross-entropy (perplexity = exp(loss)).
LM_PROGRAMS = ("causal_lm", "bert_pretrain")
DIVERGED_FILE = "diverged.json"  # in a run dir: the trainer exited on a non-finite value
NON_FINITE = sweep_lib.NON_FINITE


def define_flags(fv=flags.FLAGS):
    """Define the sweep's flags in `fv` (tests use a FlagValues of their own)."""
    kw = dict(flag_values=fv)
    flags.DEFINE_string("program", None,
                        "The trainer: a module of trainers/ (causal_lm, bert_pretrain, "
                        "resnet_imagenet, ...) or a dotted module path.", **kw)
    flags.DEFINE_string("model_dir", None, "The sweep's directory (one subdirectory per trial).",
                        **kw)
    flags.DEFINE_list("optimizers", list(registry.COMPARED),
                      "Optimizers, in this order.", **kw)
    flags.DEFINE_string("trainer_flags", "",
                        "Flags for every trial (one string); must set --train_steps, the full "
                        f"budget of the seeded runs; may not set --{', --'.join(CONTROLLED)}.",
                        **kw)
    flags.DEFINE_list("lr_grid", [],
                      "Explicit learning-rate grids, e.g. adam=1e-4/3e-4/1e-3,sgd=0.01/0.1/1 "
                      "(other optimizers: --lr_centres, --lr_factor, --lr_points).", **kw)
    flags.DEFINE_list("lr_centres", [],
                      "Centres of the generated grids, e.g. adam=1e-3 (default: "
                      + ", ".join(f"{k} {v:g}" for k, v in sweep_lib.LR_CENTRES.items()) + ").",
                      **kw)
    flags.DEFINE_float("lr_factor", sweep_lib.LR_FACTOR,
                       "Ratio of neighbouring points of a generated grid (default sqrt(10)).", **kw)
    flags.DEFINE_integer("lr_points", sweep_lib.LR_POINTS,
                         "Points of a generated grid (issue 10 asks for at least 4).", **kw)
    flags.DEFINE_list("tau_grid", [],
                      "GClip/CClip threshold grids (the trainers' absolute --tau), e.g. "
                      "gclip=0.1/1/10,cclip=1e-3/1e-2/1e-1 (default: "
                      + ", ".join(f"{k} " + "/".join(f"{v:g}" for v in g)
                                  for k, g in sweep_lib.TAU_GRIDS.items()) + ").", **kw)
    flags.DEFINE_enum("tau_search", "stage", sweep_lib.TAU_SEARCHES,
                      "stage: rates at the tau grid's centre, then the tau grid at the chosen "
                      "rate; cross: the rate search once per tau; off: the trainer's tau.", **kw)
    flags.DEFINE_enum("objective", "held_out", sweep_lib.OBJECTIVES,
                      "What chooses and ranks: held_out (the held-out --metric: a "
                      "generalisation claim) or fixed_train (the --metric of the trainer's fixed "
                      "training examples, --fixed_train_examples in --trainer_flags: an "
                      "optimisation-speed claim). Both are reported.", **kw)
    flags.DEFINE_list("option_grid", [],
                      "Arms: other trainer settings searched per optimizer, e.g. "
                      "adam:beta_2=0.95/0.999,adam:warmup_steps=25/50 (the cross product; "
                      "each arm gets its own rate search and the best arm wins).", **kw)
    flags.DEFINE_integer("seeds", 3, "Seeds (0..N-1) of the chosen setting on the test split.",
                         **kw)
    flags.DEFINE_integer("max_extensions", 3,
                         "Points a search may add beyond the edges of its grid.", **kw)
    flags.DEFINE_float("divergence_margin", 1.0,
                       "A run diverged when its final held-out loss exceeds its step-0 loss "
                       "by more than this (or is not finite).", **kw)
    flags.DEFINE_string("metric", "loss",
                        "The held-out metric to minimise (the eval_<metric> of metrics.jsonl).",
                        **kw)
    flags.DEFINE_enum("perplexity", "auto", ["auto", "yes", "no"],
                      f"Report exp(loss); auto: for {', '.join(LM_PROGRAMS)}.", **kw)
    flags.DEFINE_bool("family_settings", False,
                      "No search: each optimizer at the trainer's own setting for this model "
                      "family (what it runs without --learning_rate/--tau; the program's "
                      "--show_optimizer_settings), --seeds seeds on the test split.", **kw)
    flags.DEFINE_bool("dry_run", False,
                      "Print the trials and steps planned before any grid extension; run nothing.",
                      **kw)


def program_module(program):
    return program if "." in program else f"trainers.{program}"


def parse_grids(items, flag):
    """``name=v1/v2/...`` items -> {name: [floats]}."""
    grids = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep:
            raise cli.TrainerError(f"--{flag} item {item!r} is not optimizer=v1/v2/...")
        try:
            grid = sorted(float(v) for v in values.split("/") if v.strip())
        except ValueError:
            raise cli.TrainerError(f"--{flag}: {values!r} is not a /-separated list of numbers")
        if not grid or min(grid) <= 0:
            raise cli.TrainerError(f"--{flag}: the {name} grid must hold values > 0")
        grids[name.strip()] = grid
    return grids


def parse_trainer_flags(text):
    """(argv list, train_steps) of --trainer_flags."""
    try:
        args = shlex.split(text)
    except ValueError as e:
        raise cli.TrainerError(f"--trainer_flags: {e}")
    train_steps = None
    for i, arg in enumerate(args):
        m = re.match(r"--(?:no)?(\w+)(=|$)", arg)
        if not m:
            continue
        if m.group(1) in CONTROLLED:
            raise cli.TrainerError(f"--trainer_flags may not set --{m.group(1)}: the sweep sets it")
        if m.group(1) == "train_steps":
            value = arg.split("=", 1)[1] if m.group(2) else (args[i + 1] if i + 1 < len(args)
                                                             else "")
            try:
                train_steps = int(value)
            except ValueError:
                raise cli.TrainerError(
                    f"--trainer_flags: --train_steps={value!r} is not an integer")
    if train_steps is None or train_steps < 1:
        raise cli.TrainerError("--trainer_flags must set --train_steps (>= 1): the full budget "
                               "of the seeded runs")
    return args, train_steps


def optimizer_list(f):
    optimizers = [o.strip() for o in f.optimizers if o.strip()]
    if not optimizers:
        raise cli.TrainerError("--optimizers is empty")
    return optimizers


def family_settings(command, trainer_args, optimizers):
    """{optimizer: (learning rate, tau or None)}: what the trainer runs for each optimizer
    when the sweep sets neither (asked with --show_optimizer_settings)."""
    out = {}
    for name in optimizers:
        cmd = list(command) + [f"--optimizer={name}", "--show_optimizer_settings"] + trainer_args
        p = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
        if p.returncode or not lines:
            errors = [line for line in (p.stderr + p.stdout).splitlines()
                      if line.startswith("error:")]
            raise cli.TrainerError(
                f"--family_settings: the trainer did not give its {name} settings"
                + (f" ({errors[-1]})" if errors else f" (exit code {p.returncode})"))
        settings = json.loads(lines[-1])
        tau = settings.get("tau") if name in sweep_lib.TAU_GRIDS else None
        out[name] = (float(settings["learning_rate"]), tau)
    return out


def parse_option_grids(items):
    """``optimizer:flag=v1/v2`` items -> {optimizer: [{flag: value, ...}, ...]} (the cross
    product of each optimizer's option grids)."""
    per = {}
    for item in items:
        head, sep, values = item.partition("=")
        name, colon, option = head.partition(":")
        if not sep or not colon or not option.strip():
            raise cli.TrainerError(f"--option_grid item {item!r} is not optimizer:flag=v1/v2/...")
        option = option.strip()
        if option in CONTROLLED or option in ("train_steps", "tau"):
            raise cli.TrainerError(f"--option_grid may not set --{option}: the sweep sets it")
        try:
            grid = sorted(float(v) for v in values.split("/") if v.strip())
        except ValueError:
            raise cli.TrainerError(f"--option_grid: {values!r} is not a /-separated list of "
                                   "numbers")
        if not grid:
            raise cli.TrainerError(f"--option_grid: no value for {item!r}")
        per.setdefault(name.strip(), {})[option] = grid
    return {name: [dict(zip(grids, combo)) for combo in itertools.product(*grids.values())]
            for name, grids in per.items()}


def make_config(f, train_steps, fixed=None):
    """The sweep's Config; `fixed` ({optimizer: (lr, tau)}, --family_settings) replaces
    the grids with one point each."""
    optimizers = optimizer_list(f)
    explicit = parse_grids(f.lr_grid, "lr_grid")
    explicit.update((name, [lr]) for name, (lr, tau) in (fixed or {}).items())
    centres = {k: v[0] for k, v in parse_grids(f.lr_centres, "lr_centres").items()}
    if f.lr_points < 1 or not f.lr_factor > 1:
        raise cli.TrainerError("--lr_points must be >= 1 and --lr_factor > 1")
    lr_grids = {}
    for name in optimizers:
        if name in explicit:
            lr_grids[name] = explicit[name]
            continue
        centre = centres.get(name, sweep_lib.LR_CENTRES.get(name))
        if centre is None:
            raise cli.TrainerError(f"no default learning-rate centre for {name}; "
                                   f"give --lr_centres={name}=... or --lr_grid={name}=...")
        lr_grids[name] = sweep_lib.log_grid(centre, f.lr_factor, f.lr_points)
    tau_grids = dict(sweep_lib.TAU_GRIDS)
    tau_grids.update(parse_grids(f.tau_grid, "tau_grid"))
    tau_grids.update((name, [tau]) for name, (lr, tau) in (fixed or {}).items()
                     if tau is not None)
    option_grids = parse_option_grids(f.option_grid)
    unknown = sorted(set(option_grids) - set(optimizers))
    if unknown:
        raise cli.TrainerError(f"--option_grid names {', '.join(unknown)}, not in --optimizers")
    if f.seeds < 1 or f.max_extensions < 0:
        raise cli.TrainerError("--seeds must be >= 1 and --max_extensions >= 0")
    return sweep_lib.Config(
        optimizers=optimizers, lr_grids=lr_grids, train_steps=train_steps,
        seeds=f.seeds, tau_grids=tau_grids, tau_search=f.tau_search,
        max_extensions=f.max_extensions, divergence_margin=f.divergence_margin,
        option_grids=option_grids, objective=f.objective)


class SubprocessRunner:
    """Runs a trial as ``command + trial flags`` in model_dir/<optimizer>/<trial name>."""

    def __init__(self, command, model_dir, trainer_args, metric="loss", objective="held_out"):
        self.command = list(command)
        self.model_dir = model_dir
        self.trainer_args = list(trainer_args)
        self.metric, self.objective = metric, objective
        self.key = trials_lib.metric_keys(metric)[objective]
        self.calls = 0

    def run_dir(self, trial):
        return files.join(self.model_dir, trial.optimizer, trial.name)

    def argv(self, trial):
        args = [f"--model_dir={self.run_dir(trial)}", f"--optimizer={trial.optimizer}",
                f"--learning_rate={trial.learning_rate!r}", f"--seed={trial.seed}",
                f"--eval_split={trial.split}"]
        if trial.split == sweep_lib.SPLIT_SELECT:
            args.append("--noexport")  # a screen's model is never loaded: skip its export
        if trial.tau is not None:
            args.append(f"--tau={trial.tau!r}")
        options = [f"--{k}={v:g}" for k, v in trial.options]  # an arm's settings win
        return (self.command + args + self.trainer_args + options
                + [f"--train_steps={trial.steps}"])

    def _summary(self, run_dir):
        path = files.join(run_dir, "summary.json")
        return json.loads(files.read_text(path)) if files.exists(path) else None

    def _read(self, trial, run_dir):
        """Curve, clip fraction and train loss of the run's files."""
        return trials_lib.read_curves(run_dir, self.metric, self.objective)

    def load(self, trial):
        """The raw result of a finished run (summary.json at the trial's step, or the
        diverged.json of a run the trainer stopped), else None."""
        run_dir = self.run_dir(trial)
        stopped = files.join(run_dir, DIVERGED_FILE)
        if files.exists(stopped):
            return dict(json.loads(files.read_text(stopped)), steps_trained=0)
        summary = self._summary(run_dir)
        if not summary or summary.get("final_step", 0) < trial.steps:
            return None
        raw = self._read(trial, run_dir)
        raw.update(exit_code=0, message="", wall_seconds=summary.get("train_seconds_this_run"),
                   steps_trained=0)
        return raw

    def run(self, trial):
        self.calls += 1
        run_dir = self.run_dir(trial)
        files.makedirs(run_dir, "a trial's directory")
        before = self._read(trial, run_dir)["curve"]
        start_step = before[-1][0] if before else 0
        log_path = files.join(run_dir, "trainer.log")
        cmd = self.argv(trial)
        start = time.time()
        code = run_logged(cmd, log_path)
        wall = time.time() - start
        message = ""
        if code:
            tail = files.read_text(log_path, errors="replace")[-4000:]
            lines = [line for line in tail.splitlines() if line.strip()]
            if not NON_FINITE.search(tail):
                raise cli.TrainerError(
                    f"trial {trial.optimizer}/{trial.name} failed (exit {code}): "
                    f"{lines[-1] if lines else 'no output'}; its log: {log_path}")
            message = next((line for line in reversed(lines) if NON_FINITE.search(line)), "")
        raw = self._read(trial, run_dir)
        if not code and not raw["curve"]:
            raise cli.TrainerError(f"trial {trial.optimizer}/{trial.name} recorded no held-out "
                                   f"{self.key} in {run_dir}/metrics.jsonl; its log: {log_path}")
        raw.update(exit_code=code, message=message.strip()[:300], wall_seconds=wall,
                   steps_trained=max(trial.steps - start_step, 0))
        if code:  # the trainer stopped on a non-finite value: a rerun does not repeat it
            files.write_text_atomically(files.join(run_dir, DIVERGED_FILE),
                                  json.dumps(sweep_report.jsonable(raw)))
        return raw


def progress_line(record, sweep, metric):
    done = len(sweep.records)
    total = done + sweep.pending_trials()
    tau = "" if record["tau"] is None else f" tau {record['tau']:g}"
    tau += "".join(f" {k} {v:g}" for k, v in sorted((record.get("options") or {}).items()))
    result = f"{sweep.config.objective} {metric} {record['final_loss']:.4f}"
    if record["diverged"]:
        result = f"DIVERGED ({record['divergence_reason']})"
    when = ("done before" if record["reused"]
            else format_duration(record.get("wall_seconds")))
    rate = sweep.seconds_per_step()
    return (f"[{done}/{total}] {record['optimizer']} lr {record['learning_rate']:g}{tau} "
            f"seed {record['seed']} {record['split']} {record['steps']} steps: {result} | "
            f"{when} | {f'{rate:.3g} s/step' if rate else 's/step ?'} | "
            f"sweep ETA {format_duration(sweep.eta_seconds())}")


def run_logged(cmd, log_path):
    """Run `cmd`, its output (stdout and stderr, line by line) appended to `log_path`
    after the command line; returns the exit code."""
    with files.open_file(log_path, "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            for line in proc.stdout:
                log.write(line.decode("utf-8", "replace"))
                log.flush()
        return proc.returncode


def previous_trials(path, meta):
    """The trials of an earlier results.json of the same program and trainer flags."""
    if not files.exists(path):
        return []
    doc = sweep_report.load_results(path)
    old = dict({"objective": "held_out"}, **doc.get("meta", {}))  # older sweeps: held_out
    for key in ("program", "trainer_flags", "metric", "objective"):
        if old.get(key) != meta[key]:
            raise cli.TrainerError(
                f"{path} is a sweep with {key}={old.get(key)!r}, not {meta[key]!r}; "
                "use another --model_dir (or move that results.json away)")
    return doc.get("trials", [])


def title(meta, cfg):
    return (f"{meta['program']} {meta['trainer_flags']}: {cfg.train_steps} steps, "
            f"{cfg.seeds} seeds")


def run_sweep(f, command=None):
    """The sweep the flag values `f` describe; `command` (argv prefix of a trial)
    defaults to ``python -m trainers.<program>``. Returns results.json's document."""
    if not f.program:
        raise cli.TrainerError("--program is required (e.g. causal_lm)")
    if not f.model_dir:
        raise cli.TrainerError("--model_dir is required")
    trainer_args, train_steps = parse_trainer_flags(f.trainer_flags)
    command = command or [sys.executable, "-m", program_module(f.program)]
    fixed = None
    if f.family_settings:
        if f.lr_grid or f.lr_centres or f.tau_grid:
            raise cli.TrainerError("--family_settings fixes every optimizer's setting; drop "
                                   "--lr_grid, --lr_centres and --tau_grid")
        fixed = family_settings(command, trainer_args, optimizer_list(f))
    cfg = make_config(f, train_steps, fixed)
    perplexity = (f.perplexity == "yes" or (
        f.perplexity == "auto" and f.program in LM_PROGRAMS and f.metric == "loss"))
    meta = dict(program=f.program, trainer_flags=f.trainer_flags, metric=f.metric,
                objective=cfg.objective, perplexity=perplexity, config=vars(cfg).copy())
    files.makedirs(f.model_dir)
    results_path = files.join(f.model_dir, "results.json")
    previous = previous_trials(results_path, meta)
    runner = SubprocessRunner(command, f.model_dir, trainer_args, f.metric, cfg.objective)

    def on_record(record, sweep):
        print(progress_line(record, sweep, f.metric), flush=True)
        sweep_report.write_results(results_path, sweep.state(), meta)

    start = time.time()
    sweep = sweep_lib.Sweep(runner, cfg, previous, on_record)
    if f.dry_run:
        sweep.plan()
        print(f"dry run: {sweep.pending_trials()} trials, {sweep.pending_steps()} steps planned "
              f"before any grid extension ({len(previous)} trials already in results.json); "
              f"every run {cfg.train_steps} steps, {cfg.seeds} seeds; objective {cfg.objective}")
        for name in cfg.optimizers:
            taus = cfg.taus(name)
            print(f"  {name}: lr " + "/".join(f"{v:g}" for v in cfg.lr_grids[name])
                  + (" tau " + "/".join(f"{v:g}" for v in taus) if taus else "")
                  + "".join(f" | arm {dict(o)}" for o in cfg.arms(name) if o))
        return None
    print(f"sweep: {', '.join(cfg.optimizers)}; gclip/cclip tau search: {cfg.tau_search}; "
          f"every run {cfg.train_steps} steps (screens and seeds alike), {cfg.seeds} seeds; "
          f"chosen and ranked on {cfg.objective} {f.metric}; "
          f"trials in {f.model_dir}/<optimizer>/", flush=True)
    state = sweep.run()
    doc = sweep_report.write_results(results_path, state, meta)
    head = title(meta, cfg)
    table = sweep_report.markdown_table(doc, head)
    table_path = files.join(f.model_dir, "results.md")
    files.write_text_atomically(table_path, table)
    plot_path = sweep_report.plot_bands(doc, files.join(f.model_dir, "results.png"), head)
    print("\n" + table)
    print(f"results:  {files.display(results_path)}")
    print(f"table:    {files.display(table_path)}")
    print(f"plot:     {files.display(plot_path)}")
    print(f"sweep time: {format_duration(time.time() - start)} ({runner.calls} runs made, "
          f"{len(state['trials']) - runner.calls} reused)")
    return doc


def main(argv):
    del argv
    run_sweep(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
