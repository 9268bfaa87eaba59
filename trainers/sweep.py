"""Tuned, seeded optimizer comparison: learning-rate (and tau) grids chosen on the
validation split, the chosen settings rerun with several seeds on the test split.

    python -m trainers.sweep --program=causal_lm --model_dir=runs/sweep \
        --optimizers=sgd,gclip,cclip,acclip,acclip_norm,adam \
        --trainer_flags="--model_size=tiny --train_steps=1000 --fixed_train_examples=512" \
        --objective=fixed_train --lr_factor=2 --lr_points=4 --seeds=3

The rules (grids and their extension, the tau search, arms, selection, seeds, ties,
divergence) are trainers/common/sweep.py's; the engine is Optuna (trainers/common/study.py):
each search (a rate grid, a tau grid, the chosen setting's seeds) is a study in
``--storage`` (default ``<model_dir>/study.journal``). Every run, screen or seed, trains
the full budget with the same schedule; ``--objective`` (held_out or fixed_train) chooses
and ranks, and the report shows both metrics.

* **Workers**: the same command started N times (with ``--storage=postgresql://...`` and a
  shared --model_dir across machines) shares the trials; a killed worker's trial is retried
  by another. **Resume**: rerun the command. Watch: ``optuna-dashboard <storage URL or
  journal path>`` (pip install optuna-dashboard).
* **Trials** (``--trials``): ``in_process`` (`trials.InProcessTrials`: no process start-up,
  data loaded once) or ``subprocess`` (``python -m trainers.<program>
  --model_dir=<model_dir>/<optimizer>/<trial> <trainer_flags> --optimizer=...
  --learning_rate=... [--tau=...] --seed=... --eval_split=... [<arm options>]``, its
  metrics.jsonl read as it grows); ``auto``: in-process for a program of `TASKS` whose
  trainer flags ask for one device. Output: ``<trial>/trainer.log``, curves from its
  metrics.jsonl (``eval_<metric>``, ``fixed_train_<metric>``): set ``--eval_every``.
* **Pruning** (``--pruner=halving|hyperband``, first rung ``--pruner_min_steps``): a screen
  behind the others of its search at a rung stops; the seeds are never pruned. The steps
  saved vs full screens are in results.json's meta and the summary.

Outputs in model_dir: ``results.json``, ``results.md``, ``results.png`` (see
sweep_report.py). ``--dry_run`` prints the plan; ``--import_results`` adds another
machine's trials of the same sweep; ``--family_settings`` runs each optimizer at the task
class's `optimizer_settings` (``make demo``). Screens skip the model export.
"""

import importlib
import itertools
import re
import shlex
import sys
import time

import optuna
from absl import flags

from trainers.common import cli
from trainers.common import config as config_lib
from trainers.common import files
from trainers.common import optimizer_registry as registry
from trainers.common import study as study_lib
from trainers.common import sweep as sweep_lib
from trainers.common import sweep_report
from trainers.common import trials as trials_lib
from trainers.common.reporting import format_duration

# Flags the sweep sets for each trial; --trainer_flags may not set them.
CONTROLLED = ("model_dir", "optimizer", "learning_rate", "tau", "seed", "eval_split",
              "train_epochs")
# Programs whose held-out loss is a token cross-entropy (perplexity = exp(loss)).
LM_PROGRAMS = ("causal_lm", "bert_pretrain")
# The programs whose trials can run in-process (and whose family settings the sweep reads):
# program -> its task class.
TASKS = {"causal_lm": "trainers.lm.task:CausalLMTask",
         "bert_pretrain": "trainers.bert.task:BertPretrainTask",
         "squad_finetune": "trainers.squad.task:SquadTask",
         "resnet_imagenet": "trainers.vision.task:ImageClassificationTask"}
TRIAL_MODES = ("auto", "in_process", "subprocess")


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
                      "family (what it runs without --learning_rate/--tau: the task class's "
                      "optimizer_settings), --seeds seeds on the test split.", **kw)
    flags.DEFINE_string("storage", None,
                        "The studies' storage: a database URL (postgresql://..., mysql://...: "
                        "workers on several machines) or a journal file path; default: "
                        f"<model_dir>/{study_lib.STUDY_FILE}.", **kw)
    flags.DEFINE_enum("pruner", "none", study_lib.PRUNERS,
                      "Stop a screen behind the others of its search at a rung: successive "
                      "halving or Hyperband (Optuna's); the seeds are never pruned.", **kw)
    flags.DEFINE_integer("pruner_min_steps", 0,
                         "The pruner's first rung, in steps (after the point where curves may "
                         "still cross); 0: a third of --train_steps.", **kw)
    flags.DEFINE_enum("trials", "auto", TRIAL_MODES,
                      "in_process: each trial in this process; subprocess: each trial a "
                      "trainer process; auto: in-process for a program of TASKS on one "
                      "device.", **kw)
    flags.DEFINE_multi_string("import_results", [],
                              "A results.json of a sweep of the same program, trainer flags, "
                              "metric and objective (run elsewhere): its trials join the "
                              "studies first and are not run again. Repeatable.", **kw)
    flags.DEFINE_bool("dry_run", False,
                      "Print the trials and steps planned before any grid extension; run nothing.",
                      **kw)


def program_module(program):
    return program if "." in program else f"trainers.{program}"


def parse_numbers(values, flag):
    """``v1/v2/...`` -> sorted numbers (an integer stays one: --warmup_steps=25)."""
    try:
        return sorted(int(v) if re.fullmatch(r"\s*[+-]?\d+\s*", v) else float(v)
                      for v in values.split("/") if v.strip())
    except ValueError:
        raise cli.TrainerError(f"--{flag}: {values!r} is not a /-separated list of numbers")


def parse_grids(items, flag):
    """``name=v1/v2/...`` items -> {name: [floats]}."""
    grids = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep:
            raise cli.TrainerError(f"--{flag} item {item!r} is not optimizer=v1/v2/...")
        grid = [float(v) for v in parse_numbers(values, flag)]
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
        grid = parse_numbers(values, "option_grid")
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


def task_class(program):
    """The task class of `program` (TASKS), or None."""
    found = TASKS.get(program)
    if isinstance(found, str):
        module, name = found.split(":")
        found = getattr(importlib.import_module(module), name)
    return found


def family_settings(task, base, optimizers):
    """{optimizer: (learning rate, tau or None)}: what the trainer runs for each optimizer
    when the sweep sets neither (the task class's family settings, then the flags)."""
    from trainers.common.optimizers import run_settings

    out = {}
    for name in optimizers:
        settings = run_settings(base.optimizer.replace(optimizer=name), task.optimizer_settings)
        out[name] = (float(settings["learning_rate"]),
                     settings.get("tau") if name in sweep_lib.TAU_GRIDS else None)
    return out


def one_device(run):
    """Whether the trainer settings `run` (a RunConfig) ask for one device."""
    if run.tpu or (run.num_devices or 1) > 1:
        return False
    if run.strategy == "auto":
        from trainers.common import strategy

        return strategy.resolve_name("auto") == "one_device"
    return run.strategy == "one_device"


def in_process(f, task, base, command):
    """Whether the trials run in this process (--trials)."""
    if f.trials == "subprocess" or (f.trials == "auto" and (task is None or command)):
        return False
    if task is None or command:
        raise cli.TrainerError(f"--trials=in_process needs a program with a task class "
                               f"({', '.join(TASKS)}), not {f.program}")
    if one_device(base.run):
        return True
    if f.trials == "in_process":
        raise cli.TrainerError("--trials=in_process runs one device's trials; the trainer "
                               "flags ask for more (--strategy, --tpu, --num_devices): use "
                               "--trials=subprocess")
    return False


def trial_values(trial):
    """The trainer settings of a sweep.Trial ({setting: value}); an arm's options last."""
    values = dict(optimizer=trial.optimizer, learning_rate=trial.learning_rate,
                  seed=trial.seed, eval_split=trial.split)
    if trial.tau is not None:
        values["tau"] = trial.tau
    if trial.split == sweep_lib.SPLIT_SELECT:
        values["export"] = False  # a screen's model is never loaded: skip its export
    values.update(trial.options)
    return values


META_KEYS = ("program", "trainer_flags", "metric", "objective")  # what makes trials reusable


def check_meta(study, meta, where):
    """One storage, one sweep: the first worker records its settings in `study`; a rerun
    or another worker with other ones is one error line."""
    old = study.user_attrs.get("meta")
    if old is None:
        study.set_user_attr("meta", {k: meta[k] for k in META_KEYS})
        return
    for key in META_KEYS:
        if old.get(key) != meta[key]:
            raise cli.TrainerError(f"{where} holds a sweep with {key}={old.get(key)!r}, not "
                                   f"{meta[key]!r}; use another --model_dir (or --storage)")


def import_results(searches, path, meta):
    """Add the trials of the results.json `path` to the studies when it is a sweep of the
    same settings (those of this budget); returns how many (0 and a note when it is not)."""
    doc = sweep_report.load_results(path)
    old = dict({"objective": "held_out"}, **doc.get("meta", {}))  # older sweeps: held_out
    differs = [key for key in META_KEYS if old.get(key) != meta[key]]
    if differs:
        print(f"note: {path} is a sweep with other {', '.join(differs)}: its trials are not "
              "used", flush=True)
        return 0
    return searches.add(doc.get("trials", []))


def progress_line(record, done, planned, seconds, metric):
    tau = "" if record["tau"] is None else f" tau {record['tau']:g}"
    tau += "".join(f" {k} {v:g}" for k, v in sorted((record.get("options") or {}).items()))
    result = f"{metric} {record['final_loss']:.4f}"
    if record["diverged"]:
        result = f"DIVERGED ({record['divergence_reason']})"
    elif record["pruned"]:
        result = f"PRUNED at step {record['steps_trained']} ({result})"
    eta = seconds / done * max(planned - done, 0)
    return (f"[{done}/{planned}] {record['optimizer']} lr {record['learning_rate']:g}{tau} "
            f"seed {record['seed']} {record['split']} {record['steps']} steps: {result} | "
            f"{format_duration(record.get('wall_seconds'))} | this worker's ETA "
            f"{format_duration(eta)} (before grid extensions)")


def overhead_line(records):
    """The mean per-trial time outside training (start-up, data, compilation, evaluation,
    export) of the trials this worker ran to the end."""
    gaps = [r["wall_seconds"] - r["train_seconds"] for r in records
            if r.get("wall_seconds") is not None and r.get("train_seconds") is not None
            and not r["pruned"]]
    if not gaps:
        return ""
    return (f"per-trial overhead (wall - training): mean {sum(gaps) / len(gaps):.1f} s over "
            f"{len(gaps)} trials")


def title(meta, cfg):
    return (f"{meta['program']} {meta['trainer_flags']}: {cfg.train_steps} steps, "
            f"{cfg.seeds} seeds")


def run_sweep(f, command=None):
    """The sweep the flag values `f` describe; `command` (argv prefix of a trial, run as a
    subprocess) defaults to ``python -m trainers.<program>``. Returns results.json's
    document."""
    if not f.program:
        raise cli.TrainerError("--program is required (e.g. causal_lm)")
    if not f.model_dir:
        raise cli.TrainerError("--model_dir is required")
    trainer_args, train_steps = parse_trainer_flags(f.trainer_flags)
    task, base = task_class(f.program), None
    if task and (f.family_settings or f.trials != "subprocess"):  # the trainer's settings
        base = config_lib.experiment_from_args(
            program_module(f.program), task, [f"--model_dir={f.model_dir}", *trainer_args])
    here = in_process(f, task, base, command)
    fixed = None
    if f.family_settings:
        if f.lr_grid or f.lr_centres or f.tau_grid:
            raise cli.TrainerError("--family_settings fixes every optimizer's setting; drop "
                                   "--lr_grid, --lr_centres and --tau_grid")
        if task is None:
            raise cli.TrainerError(f"--family_settings reads the settings of the program's "
                                   f"task class ({', '.join(TASKS)}), not {f.program}'s")
        fixed = family_settings(task, base, optimizer_list(f))
    cfg = make_config(f, train_steps, fixed)
    perplexity = (f.perplexity == "yes" or (
        f.perplexity == "auto" and f.program in LM_PROGRAMS and f.metric == "loss"))
    min_steps = f.pruner_min_steps or max(train_steps // 3, 1)
    pruner = study_lib.make_pruner(f.pruner, train_steps, min_steps)
    meta = dict(program=f.program, trainer_flags=f.trainer_flags, metric=f.metric,
                objective=cfg.objective, perplexity=perplexity, config=vars(cfg).copy(),
                trials="in_process" if here else "subprocess",
                pruner=dict(kind=f.pruner, min_steps=min_steps if f.pruner != "none" else None))
    planned = sum(cfg.planned_trials(name) for name in cfg.optimizers)
    if f.dry_run:
        print(f"dry run: {planned} trials, {planned * cfg.train_steps} steps planned before any "
              f"grid extension; every run {cfg.train_steps} steps, {cfg.seeds} seeds; "
              f"objective {cfg.objective}; trials {meta['trials']}")
        for name in cfg.optimizers:
            taus = cfg.taus(name)
            print(f"  {name}: lr " + "/".join(f"{v:g}" for v in cfg.lr_grids[name])
                  + (" tau " + "/".join(f"{v:g}" for v in taus) if taus else "")
                  + "".join(f" | arm {dict(o)}" for o in cfg.arms(name) if o))
        return None
    files.makedirs(f.model_dir)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress lines say it
    storage = study_lib.make_storage(f.storage, f.model_dir)

    def open_study(name, study_pruner):
        return study_lib.open_study(name, storage, pruner=study_pruner)

    check_meta(open_study("sweep", optuna.pruners.NopPruner()), meta,
               f.storage or files.join(f.model_dir, study_lib.STUDY_FILE))
    if here:
        runner = trials_lib.InProcessTrials(task, base, f.model_dir, f.metric, cfg.objective)
    else:
        runner = trials_lib.SubprocessTrials(
            command or [sys.executable, "-m", program_module(f.program)], f.model_dir,
            trainer_args, f.metric, cfg.objective)
    ran = []
    start = time.time()

    def on_trial(record):
        ran.append(record)
        print(progress_line(record, len(ran), planned, time.time() - start, f.metric),
              flush=True)

    searches = study_lib.Searches(
        cfg, open_study,
        lambda t, report: runner.run(f"{t.optimizer}/{t.name}", trial_values(t), report),
        pruner, on_trial)
    for path in f.import_results or ():
        count = import_results(searches, path, meta)
        print(f"{count} trials of {path} joined the studies", flush=True)
    print(f"sweep: {', '.join(cfg.optimizers)}; gclip/cclip tau search: {cfg.tau_search}; "
          f"every run {cfg.train_steps} steps (screens and seeds alike), {cfg.seeds} seeds; "
          f"chosen and ranked on {cfg.objective} {f.metric}; trials {meta['trials']} in "
          f"{f.model_dir}/<optimizer>/; pruner {f.pruner}", flush=True)
    state = sweep_lib.Comparison(cfg, searches.search, searches.seeds).run()
    meta["pruning"] = searches.pruning()
    results_path = files.join(f.model_dir, "results.json")
    doc = sweep_report.write_results(results_path, state, meta)
    head = title(meta, cfg)
    table_path = files.join(f.model_dir, "results.md")
    files.write_text_atomically(table_path, sweep_report.markdown_table(doc, head))
    plot_path = sweep_report.plot_bands(doc, files.join(f.model_dir, "results.png"), head)
    print("\n" + files.read_text(table_path))
    print(f"results:  {files.display(results_path)}")
    print(f"table:    {files.display(table_path)}")
    print(f"plot:     {files.display(plot_path)}")
    print(sweep_report.pruning_line(meta["pruning"], f.pruner))
    if f.pruner != "none":
        screens = sweep_report.plot_screens(searches.screens, files.join(f.model_dir, "optuna"))
        if screens:
            print(f"screens:  {files.display(files.join(f.model_dir, 'optuna'))}/ (Optuna's "
                  f"intermediate-value plots, {len(screens)} studies)")
    overhead = overhead_line(ran)
    if overhead:
        print(overhead)
    print(f"sweep time: {format_duration(time.time() - start)} ({len(ran)} trials run by this "
          f"worker, {len(state['trials']) - len(ran)} from the study)")
    return doc


def main(argv):
    del argv
    run_sweep(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
