"""The sweep's trials on Optuna: a shared study, grid points claimed once by N workers,
killed trials retried, divergence and pruning recorded. No TensorFlow.

What Optuna does here: the storage (every trial, its state, curve and attributes, shared
by the workers of one command on one or several machines), the claim of a trial (a
WAITING trial turns RUNNING for exactly one worker), the heartbeat and the retry of a
trial whose worker died (``RetryHeartbeatStaleTrialCallback``, the successor of
``RetryFailedTrialCallback``), and the pruners (successive halving, Hyperband) that stop a
trial whose reported curve is behind the others at a rung.

What stays the project's own (trainers/common/sweep.py): which points a grid holds and
when it grows (`sweep.search_grid`: edge extension, all diverged -> downwards), when a run
has diverged (`sweep.classify`), and what is chosen and reported. Here a worker decides the
next grid points from the *finished* trials only, so every worker reaches the same
decision; a point enqueued twice by two workers at the same moment is detected when it is
claimed (the lower-numbered trial of a point is the one that runs; the other is failed
with ``duplicate_of``), so it is never run twice.

Storages (Optuna 5.1.0, checked on the installed code): only ``RDBStorage`` (sqlite:///,
postgresql://, mysql://) implements Optuna's heartbeat (``BaseHeartbeat``);
``JournalStorage`` (file or Redis backend) and ``GrpcStorageProxy`` do not. Optuna
recommends the journal file for several processes on one machine (or an NFS mount) and
an RDB server (PostgreSQL, MySQL) for several machines; SQLite it does not recommend for
parallel workers. So the default storage, ``<model_dir>/study.journal`` with Optuna's file
lock, gets its heartbeat here (`HeartbeatJournalStorage`: a time stamp in a trial system
attribute), through the same hooks (`fail_stale_trials`, the heartbeat thread of
``Study.optimize``) that Optuna uses for an RDB. Those hooks are Optuna's private
``optuna.storages._heartbeat`` (hence optuna < 6; tests/common/test_study.py notices when
the journal grows a heartbeat of its own), and they run only inside ``Study.optimize``:
a worker runs each claimed trial as ``optimize(n_trials=1)``, never ask/tell.

One study holds one search (one grid of one setting): the pruners compare every trial of
a study, so two optimizers, arms or stages in one study would prune each other.

A trainer is ``train(settings, report) -> curve`` (``[[step, value], ...]``, the
objective's curve) or a dict with ``curve`` and other fields (``exit_code``, ``message``,
``clip_fraction``, ...: the raw result of trials.py's runners, kept as user attributes);
``report(step, value)`` records one evaluation and raises ``optuna.TrialPruned`` when the
pruner stops the trial. Every trial trains the full budget's schedule; pruning only ends it
early.
"""

import dataclasses
import math
import time
import warnings

import optuna
from optuna.storages import journal
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from trainers.common import files
from trainers.common import sweep
from trainers.common.errors import Interrupted, TrainerError, first_line

STUDY_FILE = "study.journal"  # the default storage, in the sweep's model_dir
HEARTBEAT_SECONDS = 60  # a running trial's worker records a heartbeat this often
GRACE_SECONDS = 180  # ... and its trial is failed (and retried) this long after the last
MAX_RETRY = 3  # a point whose trial was lost more often than this stops the sweep
HEARTBEAT_KEY = "heartbeat"  # the trial system attribute holding the journal's heartbeat
RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
PRUNERS = ("none", "halving", "hyperband")


class HeartbeatJournalStorage(journal.JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage with the heartbeat its RDBStorage has: `record_heartbeat`
    writes the time into the trial; a RUNNING trial whose last heartbeat is older than
    `grace_period` is stale. The clocks of the workers must agree (one machine, or NTP)."""

    def __init__(self, backend, heartbeat_interval, grace_period, stale_trial_callback):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or 2 * (heartbeat_interval or 0)
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id):
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it as stale meanwhile

    def _get_stale_trial_ids(self, study_id):
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [self.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in running
                if now - t.system_attrs.get(HEARTBEAT_KEY, now) > self.grace_period]

    def get_heartbeat_interval(self):
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.stale_trial_callback


def make_storage(storage=None, model_dir=None, heartbeat_interval=HEARTBEAT_SECONDS,
                 grace_period=GRACE_SECONDS, max_retry=MAX_RETRY):
    """The study's storage: an RDB URL (``sqlite:///...``, ``postgresql://...``), a journal
    file path, or (`storage` None) ``<model_dir>/study.journal``. All of them with heartbeats
    and Optuna's retry of a stale trial (at most `max_retry` times)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        if storage and "://" in storage:
            scheme = storage.split("://", 1)[0].split("+", 1)[0]
            if scheme not in RDB_SCHEMES:
                raise TrainerError(f"--storage={storage}: neither a database URL "
                                   f"({', '.join(RDB_SCHEMES)}) nor a journal file path")
            try:
                return optuna.storages.RDBStorage(
                    storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                    heartbeat_stale_trial_callback=retry)
            except Exception as e:  # noqa: BLE001 - any driver's refusal, in one line
                raise TrainerError(f"--storage={storage}: {first_line(e)}") from e
        if storage:
            path, what = storage, "--storage"
        elif model_dir is None:
            raise TrainerError("a study needs --storage or --model_dir")
        elif files.is_remote(model_dir):
            raise TrainerError(f"--model_dir={model_dir} is not on a local disk: the study's "
                               "journal file needs one (or an NFS mount); give a database as "
                               "--storage=postgresql://...")
        else:
            path, what = files.join(model_dir, STUDY_FILE), "--model_dir"
        try:
            backend = journal.JournalFileBackend(path)
        except OSError as e:
            raise TrainerError(f"{what}: cannot open the study file {path}: "
                               f"{first_line(e)}") from e
        return HeartbeatJournalStorage(backend, heartbeat_interval, grace_period, retry)


def open_study(name, storage=None, model_dir=None, pruner=None, **storage_kw):
    """The study `name` (created by the first worker, loaded by the others), minimising.
    Every worker of a sweep must open it with the same pruner (Optuna keeps none in the
    storage); `storage_kw` go to `make_storage`; `storage` may also be one it made (one storage
    for the many studies of a sweep)."""
    if storage is None or isinstance(storage, str):
        storage = make_storage(storage, model_dir, **storage_kw)
    return optuna.create_study(study_name=name, storage=storage, direction="minimize",
                               pruner=pruner, load_if_exists=True)


def make_pruner(kind, budget, min_resource, reduction_factor=3):
    """Optuna's pruner `kind` (PRUNERS) for trials of `budget` steps. No rung before
    `min_resource` steps: set it after the point where curves may still cross (a rate that
    starts worse and ends best), or the pruner stops the eventual winner."""
    if kind not in PRUNERS:
        raise TrainerError(f"--pruner={kind}: one of {', '.join(PRUNERS)}")
    if kind == "none":
        return optuna.pruners.NopPruner()
    if not 1 <= min_resource <= budget or reduction_factor < 2:
        raise TrainerError(f"pruning needs 1 <= min_resource <= {budget} steps and a reduction "
                           f"factor >= 2; got {min_resource}, {reduction_factor}")
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource,
                                                      reduction_factor=reduction_factor)
    return optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=budget,
                                          reduction_factor=reduction_factor)


def point_distribution(grid, max_extensions):
    """One log-uniform range holding `grid` and every point its extensions can add: the
    same for every trial of a search, so Optuna's plots and importances see one space."""
    values = sorted(grid)
    ratio = max([b / a for a, b in zip(values, values[1:])], default=1.0)
    reach = ratio ** (max_extensions + 1)
    return optuna.distributions.FloatDistribution(values[0] / reach, values[-1] * reach,
                                                  log=True)


def record(trial, param):
    """What the protocol keeps of one trial (a plain dict, like sweep.make_record's): the
    trainer's fields and curve, the state, the value of a complete trial (``final_loss``;
    its ``score``, +inf for a diverged or pruned one), the trial it retried."""
    attrs = dict(trial.user_attrs)
    diverged = trial.state == TrialState.FAIL and "divergence_reason" in attrs
    pruned = trial.state == TrialState.PRUNED
    if "curve" not in attrs:  # a pruned trial: its curve is what it reported
        attrs["curve"] = [[s, v] for s, v in sorted(trial.intermediate_values.items())]
    return dict(attrs, number=trial.number, state=trial.state.name, final_loss=trial.value,
                diverged=diverged, pruned=pruned,
                score=trial.value if trial.state == TrialState.COMPLETE else math.inf,
                retried_from=trial.system_attrs.get("failed_trial"),
                **{param: trial.params.get(param)})


def _points(trials, param):
    """Each point's state from the trials: {value: record} of the finished ones (complete,
    pruned, diverged: the lowest-numbered), the values with a WAITING or RUNNING trial,
    {value: n} of the lost ones (a dead worker), and the failed ones (the trainer raised).
    An interrupted trial (stopped by a signal with its run saved) is none of these: its
    point is wanted again, and the trainer resumes its run."""
    done, alive, lost, failed = {}, set(), {}, {}
    for t in sorted(trials, key=lambda t: t.number):
        v = t.params.get(param)
        if v is None or "duplicate_of" in t.user_attrs:
            continue
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            alive.add(v)
        elif t.state != TrialState.FAIL or "divergence_reason" in t.user_attrs:
            done.setdefault(v, record(t, param))
        elif "interrupted" in t.user_attrs:
            continue
        elif "error" in t.user_attrs:
            failed[v] = t
        else:
            lost[v] = lost.get(v, 0) + 1
    return done, alive, lost, failed


class _Missing(Exception):
    pass


def next_points(done, grid, max_extensions, can_extend=None):
    """(points to run, None) while the search needs more, else ([], sweep.search_grid's
    result). Decided from the finished points alone, so every worker decides the same."""
    missing = sorted(v for v in set(grid) if v not in done)
    if missing:
        return missing, None

    def evaluate(v):
        if v not in done:
            raise _Missing(v)
        return done[v]["score"], done[v]

    try:
        return [], sweep.search_grid(evaluate, grid, max_extensions, can_extend)
    except _Missing as m:
        return [m.args[0]], None


class _Objective:
    """One claimed trial: a duplicate is not run; else the trainer runs with `report`, and
    its curve becomes the trial's value, a divergence, or (the pruner) a pruned trial.
    A trial that is not run or diverged returns NaN, which Optuna records as FAILED with
    one line in its log (an exception would add a traceback); the reason is a user attribute."""

    def __init__(self, study, param, train, margin, budget):
        self.study, self.param, self.train, self.margin = study, param, train, margin
        self.budget = budget

    def __call__(self, trial):
        value = trial.params.get(self.param)
        if value is None:  # another worker claimed the last WAITING trial first, so
            # Optuna made a fresh trial without a point: failed unrun, and marked as such
            trial.set_user_attr("unclaimed", "another worker claimed the last waiting trial")
            return math.nan
        twins = [t.number for t in self.study.get_trials(deepcopy=False)
                 if t.params.get(self.param) == value and t.number < trial.number
                 and "duplicate_of" not in t.user_attrs
                 and (t.state != TrialState.FAIL or "divergence_reason" in t.user_attrs)]
        if twins:
            trial.set_user_attr("duplicate_of", twins[0])
            return math.nan

        def report(step, loss):
            trial.report(float(loss), int(step))
            # A non-finite loss is left to the divergence test, and a trial that trained
            # the full budget is complete: neither is pruned.
            if math.isfinite(loss) and step < (self.budget or math.inf) and trial.should_prune():
                trial.set_user_attr("steps_trained", int(step))
                raise optuna.TrialPruned(f"pruned at step {step}")

        try:
            out = self.train({self.param: value}, report)
        except optuna.TrialPruned:
            raise
        except Interrupted as e:  # stops this worker; the next run of the sweep resumes it
            trial.set_user_attr("interrupted", first_line(e))
            raise
        except Exception as e:
            trial.set_user_attr("error", first_line(e))
            raise
        raw = dict(out) if isinstance(out, dict) else {"curve": out}
        curve = [[int(s), float(v)] for s, v in raw.pop("curve", None) or []]
        for key, item in raw.items():
            trial.set_user_attr(key, item)
        trial.set_user_attr("curve", curve)
        trial.set_user_attr("steps_trained", raw.get("steps_trained",
                                                      curve[-1][0] if curve else 0))
        diverged, reason = sweep.classify(curve, raw.get("exit_code", 0), raw.get("message", ""),
                                          self.margin)
        if diverged:
            trial.set_user_attr("divergence_reason", reason)
            return math.nan
        return curve[-1][1]


def run_grid(study, grid, train, budget=None, param="learning_rate", max_extensions=3,
             margin=1.0, can_extend=None, on_trial=None, **loop_kw):
    """Search `param` over `grid` (with sweep.search_grid's edge extension) in `study`, one
    claimed trial after another, until the search is decided; N workers running this on the
    same study share its trials. `budget`: every trial's steps (a report at it is never
    pruned); `on_trial(record)` after each trial this worker ran. Returns search_grid's dict
    plus ``records`` (every finished trial's `record`, by value)."""
    return _run(study, lambda done: next_points(done, grid, max_extensions, can_extend),
                point_distribution(grid, max_extensions), train, budget, param, margin,
                on_trial, **loop_kw)


def run_points(study, values, train, budget=None, param="seed", margin=1.0, on_trial=None,
               **loop_kw):
    """Run `param` at each of the fixed integer `values` (a setting's seeds) in `study`,
    each claimed once, never extended (run_grid's log-spaced range cannot hold seed 0).
    Returns {"records": the finished trials' `record`s, in the order of `values`}."""
    values = [int(v) for v in values]

    def decide(done):
        missing = [v for v in values if v not in done]
        return (missing, None) if missing else ([], {})

    result = _run(study, decide, optuna.distributions.IntDistribution(min(values), max(values)),
                  train, budget, param, margin, on_trial, **loop_kw)
    return dict(records=[r for r in result["records"] if r[param] in values])


def _run(study, decide, distribution, train, budget, param, margin, on_trial,
         poll_seconds=5.0, max_retry=MAX_RETRY):
    """The worker loop: `decide(done)` -> (the points still wanted, None) or ([], result)."""
    objective = _Objective(study, param, train, margin, budget)
    callbacks = []
    if on_trial is not None:
        callbacks.append(lambda _, t: None if t.params.get(param) is None
                         or "duplicate_of" in t.user_attrs else on_trial(record(t, param)))
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        done, alive, lost, failed = _points(trials, param)
        wanted, result = decide(done)
        if result is not None:
            return dict(result, records=[done[v] for v in sorted(done)])
        # One point per claim: workers that decide at the same moment enqueue it twice at
        # most once each (the duplicate is found when claimed), not the whole grid twice.
        todo = [v for v in wanted if v not in alive]
        if todo:
            v = todo[0]
            if v in failed:
                raise TrainerError(f"the trial at {param}={v:g} (trial {failed[v].number}) "
                                   f"failed: {failed[v].user_attrs['error']}")
            if lost.get(v, 0) > max_retry:
                raise TrainerError(f"the trial at {param}={v:g} was lost {lost[v]} times (its "
                                   "worker died or stopped sending heartbeats)")
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params={param: v}, distributions={param: distribution}))
        if todo or any(t.state == TrialState.WAITING for t in trials):
            study.optimize(objective, n_trials=1, callbacks=callbacks)
        else:  # the rest runs elsewhere: wait for it (or for its worker's heartbeat to stop)
            time.sleep(poll_seconds)


# The trainer's fields a finished trial keeps (user attributes), also when it is copied.
RESULT_FIELDS = sweep.RAW_FIELDS + ("divergence_reason",)


def add_finished(study, param, result):
    """A trial run elsewhere (the same point of another search, or a committed results.json)
    added to `study` as finished at ``result[param]``, unless the study has that point: a
    diverged one failed with its reason, a pruned one pruned, else complete with its curve's
    final value; its curve as its reports (what a pruner compares). Marked ``reused``: it
    counts in the search, not in `steps_saved`."""
    value = result[param]
    if value in _points(study.get_trials(deepcopy=False), param)[0]:
        return
    curve = [[int(s), v] for s, v in result.get("curve") or []]
    state = (TrialState.FAIL if result.get("diverged") else
             TrialState.PRUNED if result.get("pruned") else TrialState.COMPLETE)
    attrs = {k: result.get(k) for k in RESULT_FIELDS if result.get(k) is not None}
    if state == TrialState.FAIL:
        attrs.setdefault("divergence_reason", "diverged")
    distribution = (optuna.distributions.IntDistribution(value, value) if isinstance(value, int)
                    else optuna.distributions.FloatDistribution(value, value, log=True))
    study.add_trial(optuna.trial.create_trial(
        state=state, value=curve[-1][1] if state == TrialState.COMPLETE else None,
        params={param: value}, distributions={param: distribution},
        user_attrs=dict(attrs, reused=True),
        intermediate_values={s: v for s, v in curve if v is not None and math.isfinite(v)}))


def steps_saved(study, budget):
    """The steps the trials of `study` trained vs every one of them training `budget`
    steps: pruned trials stop early; lost trials, duplicates and reused trials are not
    counted."""
    measured = [t for t in study.get_trials(deepcopy=False)
                if (t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                    or "divergence_reason" in t.user_attrs) and not t.user_attrs.get("reused")]
    run = sum(int(t.user_attrs.get("steps_trained", budget)) for t in measured)
    full = budget * len(measured)
    return dict(trials=len(measured), pruned=sum(t.state == TrialState.PRUNED for t in measured),
                full_steps=full, run_steps=run, saved_steps=full - run,
                saved_fraction=(full - run) / full if full else 0.0)


STAGE_PARAMS = {"lr": "learning_rate", "tau": "tau", "final": "seed"}  # what a stage searches


def study_name(trial, param):
    """The study of one search: the optimizer, the setting searched and every fixed one
    (`trial`, a sweep.Trial, holds them; its `param` is ignored), and the split."""
    fixed = dict(learning_rate=trial.learning_rate, tau=trial.tau, seed=trial.seed,
                 **dict(trial.options))
    return (f"{trial.optimizer}: {param} at " + ", ".join(
        f"{k}={v:g}" for k, v in fixed.items() if k != param and v is not None)
        + f" ({trial.split})")


class Searches:
    """sweep.Comparison's `search` and `seeds` as studies, one per search (`study_name`),
    the screens with `pruner`, the seeds never pruned. `open_study(name, pruner)` opens a
    study of the sweep's storage; `run_trial(trial, report)` trains one sweep.Trial and
    returns the trainer's raw result; `on_trial(record)` gets the trial record of each
    trial this worker ran."""

    def __init__(self, config, open_study, run_trial, pruner=None, on_trial=None):
        self.config, self.open_study, self.run_trial = config, open_study, run_trial
        self.pruner = pruner or optuna.pruners.NopPruner()
        self.on_trial = on_trial
        self.screens = {}  # name -> the study of a screen search (for the steps saved)

    def _study(self, base, param):
        name = study_name(base, param)
        if param == "seed":
            return self.open_study(name, optuna.pruners.NopPruner())
        self.screens[name] = self.open_study(name, self.pruner)
        return self.screens[name]

    def _engine_args(self, base, param, stage):
        """run_grid's / run_points' train and on_trial for the trials of `base` x `param`."""
        def train(settings, report):
            return self.run_trial(dataclasses.replace(base, **settings), report)

        def done(result):
            self.on_trial(self._record(base, param, stage, result))

        return dict(train=train, on_trial=done if self.on_trial else None,
                    budget=self.config.train_steps, param=param,
                    margin=self.config.divergence_margin)

    def _record(self, base, param, stage, result):
        return sweep.trial_record(dataclasses.replace(base, **{param: result[param]}), stage,
                                  result)

    def search(self, optimizer, options, stage, fixed, param, grid, can_extend=None,
               known=()):
        base = sweep.Trial(optimizer, fixed.get("learning_rate"), fixed.get("tau"), 0,
                           sweep.SPLIT_SELECT, self.config.train_steps, options)
        study = self._study(base, param)
        for result in known:
            add_finished(study, param, result)
        found = run_grid(study, grid, max_extensions=self.config.max_extensions,
                         can_extend=can_extend, **self._engine_args(base, param, stage))
        return dict(found, records=[self._record(base, param, stage, r)
                                    for r in found["records"]])

    def seeds(self, optimizer, selection):
        base = sweep.Trial(optimizer, selection["learning_rate"], selection["tau"], 0,
                           sweep.SPLIT_FINAL, self.config.train_steps,
                           sweep.as_options(selection.get("options")))
        found = run_points(self._study(base, "seed"), range(self.config.seeds),
                           **self._engine_args(base, "seed", "final"))
        return [self._record(base, "seed", "final", r) for r in found["records"]]

    def add(self, records):
        """Trial records of a results.json (a sweep of the same settings run elsewhere)
        added to their studies as finished trials: they are not run again. A record of
        another budget (an older sweep's truncated screen) is not this sweep's trial.
        Returns how many were added."""
        records = [r for r in records if r["steps"] == self.config.train_steps]
        for r in records:
            param = STAGE_PARAMS[r["stage"]]
            add_finished(self._study(sweep.trial_from_dict(r), param), param, r)
        return len(records)

    def pruning(self):
        """`steps_saved` over the screens' studies (the seeds are never pruned)."""
        saved = [steps_saved(s, self.config.train_steps) for s in self.screens.values()]
        total = {k: sum(s[k] for s in saved) for k in ("trials", "pruned", "full_steps",
                                                       "run_steps", "saved_steps")}
        total["saved_fraction"] = (total["saved_steps"] / total["full_steps"]
                                   if total["full_steps"] else 0.0)
        return total
