"""trainers/common/study.py: the sweep's trials on Optuna, with fake trainers (pure Python
functions of the settings and the step; no TensorFlow is run).

* two worker processes share one study (the default journal file in model_dir) and run a
  6-point grid, every point exactly once; one of them killed with SIGKILL inside a trial:
  the other fails the stale trial (heartbeat), Optuna's retry enqueues it, and it runs it;
* pruning on the full schedule: crossing curves, the winner kept when the first rung lies
  after the crossing (and stopped when it lies before), the steps saved;
* the same grid on a fake objective chooses what trainers/common/sweep.py chooses;
* which storages have heartbeats, and one-line errors for bad storages.
"""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from conftest import REPO
from trainers.common import study as S
from trainers.common import sweep
from trainers.common.errors import Interrupted, TrainerError

optuna.logging.set_verbosity(optuna.logging.WARNING)

GRID = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3]

# A worker process: waits for the test's "go", then runs the grid (each trial sleeps
# TRIAL_SECONDS; with SLEEPY set, its first trial sleeps until it is killed) and prints the
# chosen rate. Each start and finish is a line in its log (a test may use open()).
WORKER = textwrap.dedent('''
    import math, os, sys, time
    import optuna
    from trainers.common import study as S
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model_dir, name, log = sys.argv[1:4]
    first = [True]

    def train(settings, report):
        lr = settings["learning_rate"]
        with open(log, "a") as f:
            f.write(f"start {lr!r}\\n")
        sleepy = os.environ.get("SLEEPY") and first[0]
        first[0] = False
        time.sleep(600 if sleepy else 0.4)
        with open(log, "a") as f:
            f.write(f"done {lr!r}\\n")
        loss = (math.log10(lr) + 2) ** 2 + 1
        return [[0, 6.0], [100, loss]]

    study = S.open_study(name, model_dir=model_dir, heartbeat_interval=1, grace_period=3)
    open(log + ".ready", "w").close()
    while not os.path.exists(os.path.join(model_dir, "go")):
        time.sleep(0.05)
    result = S.run_grid(study, GRID, train, budget=100, max_extensions=0, poll_seconds=0.5)
    print("best", result["best"])
''').replace("GRID", repr(GRID))


def start_workers(model_dir, names, sleepy=()):
    """Worker processes (name -> Popen) on one study, started together once all are ready."""
    procs = {}
    for name in names:
        env = dict(os.environ, SLEEPY="1" if name in sleepy else "")
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(model_dir), "grid", str(model_dir / name)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: all((model_dir / f"{n}.ready").exists() for n in names), procs)
    (model_dir / "go").touch()
    return procs


def wait_for(condition, procs, timeout=60):
    deadline = time.time() + timeout
    while not condition():
        dead = [p.stderr.read() for p in procs.values() if p.poll() not in (None, -9)]
        assert not dead and time.time() < deadline, dead
        time.sleep(0.05)


def log_lines(model_dir, name, kind):
    path = model_dir / name
    lines = path.read_text().splitlines() if path.exists() else []
    return [float(line.split()[1]) for line in lines if line.startswith(kind)]


def finish(proc):
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_two_workers_share_a_grid_and_run_every_point_once(tmp_path):
    procs = start_workers(tmp_path, ["a", "b"])
    outs = [finish(p) for p in procs.values()]
    done = {n: log_lines(tmp_path, n, "done") for n in procs}
    assert sorted(done["a"] + done["b"]) == GRID  # each point once, none lost
    assert done["a"] and done["b"]  # both workers took a share
    assert outs[0] == outs[1] == "best 0.01\n"  # the same decision in both
    trials = S.open_study("grid", model_dir=tmp_path).get_trials()
    complete = [t.params["learning_rate"] for t in trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == GRID
    # Anything else is a duplicate enqueued by both workers at once: failed unrun when
    # claimed, or (seen under load: the search was decided before anyone claimed it) still
    # waiting, at a point that is complete; it never runs (a later claim fails it unrun).
    # Or (seen in CI) a worker found the last WAITING trial claimed by the other between
    # its look and its claim: Optuna gave it a fresh trial without a point, failed unrun.
    others = [t for t in trials if t.state.name != "COMPLETE"]
    assert all((t.state.name == "FAIL" and "duplicate_of" in t.user_attrs)
               or (t.state.name == "WAITING" and t.params.get("learning_rate") in complete)
               or (t.state.name == "FAIL" and not t.params and "unclaimed" in t.user_attrs)
               for t in others), [(t.state.name, t.params, t.user_attrs) for t in others]


def test_a_killed_workers_trial_is_retried_by_the_other(tmp_path):
    procs = start_workers(tmp_path, ["sleepy", "b"], sleepy=("sleepy",))
    wait_for(lambda: log_lines(tmp_path, "sleepy", "start"), procs)
    os.kill(procs["sleepy"].pid, signal.SIGKILL)
    assert finish(procs["b"]) == "best 0.01\n"
    procs["sleepy"].wait(timeout=10)
    [killed] = log_lines(tmp_path, "sleepy", "start")
    assert log_lines(tmp_path, "sleepy", "done") == []
    assert sorted(log_lines(tmp_path, "b", "done")) == GRID  # the killed point too, once
    trials = S.open_study("grid", model_dir=tmp_path).get_trials()
    [lost] = [t for t in trials if t.params.get("learning_rate") == killed and
              t.state.name == "FAIL" and "duplicate_of" not in t.user_attrs]
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert retry.state.name == "COMPLETE" and retry.params["learning_rate"] == killed
    assert sorted(t.params["learning_rate"] for t in trials if t.state.name == "COMPLETE") == GRID


@pytest.mark.parametrize("database", [False, True])
def test_a_point_enqueued_twice_runs_once(tmp_path, database):
    # Two workers deciding at the same moment both enqueue a point: the lower-numbered trial
    # runs, the other is failed unrun when claimed, and the search counts the point once.
    # On the default journal file and on an RDB (SQLite here).
    storage = f"sqlite:///{tmp_path / 'study.db'}" if database else None
    study = S.open_study("d", storage=storage, model_dir=tmp_path)
    runs = []

    def train(settings, report):
        runs.append(settings["learning_rate"])
        return [[0, 6.0], [100, 1.0 + settings["learning_rate"]]]

    dist = S.point_distribution([1.0, 2.0], 0)
    for v in (1.0, 1.0, 2.0):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING,
                                                  params={"learning_rate": v},
                                                  distributions={"learning_rate": dist}))
    result = S.run_grid(study, [1.0, 2.0], train, budget=100, max_extensions=0)
    assert runs == [1.0, 2.0] and result["values"] == [1.0, 2.0] and result["best"] == 1.0
    states = [(t.state.name, t.user_attrs.get("duplicate_of")) for t in study.get_trials()]
    assert states == [("COMPLETE", None), ("FAIL", 0), ("COMPLETE", None)]


def test_a_claim_that_finds_no_waiting_trial_runs_nothing_and_counts_nowhere(tmp_path):
    # The race CI met: worker A sees a WAITING trial, worker B claims it, then A's
    # optimize(n_trials=1) finds none and Optuna gives A a fresh trial without a point.
    study = S.open_study("u", model_dir=tmp_path)
    runs = []

    def train(settings, report):
        runs.append(settings["learning_rate"])
        return [[0, 6.0], [100, 1.0 + settings["learning_rate"]]]

    study.optimize(S._Objective(study, "learning_rate", train, 1.0, 100), n_trials=1)
    [t] = study.get_trials()
    assert runs == [] and t.state.name == "FAIL" and not t.params
    assert "unclaimed" in t.user_attrs
    result = S.run_grid(study, [1.0, 2.0], train, budget=100, max_extensions=0)
    assert runs == [1.0, 2.0] and result["best"] == 1.0
    assert [r["learning_rate"] for r in result["records"]] == [1.0, 2.0]


def test_a_trainer_error_stops_every_worker_and_a_lost_point_is_retried_at_most_max_retry(
        tmp_path):
    def broken(settings, report):
        raise ValueError("no corpus")

    study = S.open_study("e", model_dir=tmp_path)
    with pytest.raises(ValueError, match="no corpus"):  # the worker that ran it
        S.run_grid(study, [1.0], broken)
    with pytest.raises(TrainerError, match="trial 0.*failed: no corpus"):  # any other
        S.run_grid(study, [1.0], broken)

    study = S.open_study("l", model_dir=tmp_path)
    for _ in range(2):  # two trials at 1.0 whose workers died (no retry callback ran)
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, params={"learning_rate": 1.0},
            distributions={"learning_rate": S.point_distribution([1.0], 0)}))
    with pytest.raises(TrainerError, match="lost 2 times"):
        S.run_grid(study, [1.0], broken, max_retry=1)
    result = S.run_grid(study, [1.0], lambda s, r: [[0, 6.0], [100, 1.0]], max_retry=2)
    assert result["best"] == 1.0


def test_an_interrupted_trial_stops_the_worker_and_is_run_again_not_failed(tmp_path):
    """A trainer that stops on a signal with its run saved (`Interrupted`, as an in-process
    trial's Preempted) stops this worker; the next run of the search runs that point again
    (the trainer resumes) instead of refusing it as failed or counting it as lost."""
    calls = []

    def train(settings, report):
        calls.append(settings["learning_rate"])
        if calls.count(1.0) == 1 and settings["learning_rate"] == 1.0:
            raise Interrupted("stopped by SIGTERM at step 50 of 100")
        return [[0, 6.0], [100, settings["learning_rate"]]]

    study = S.open_study("i", model_dir=tmp_path)
    with pytest.raises(Interrupted, match="SIGTERM"):
        S.run_grid(study, [0.5, 1.0, 2.0], train, max_extensions=0)
    [stopped] = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert stopped.user_attrs["interrupted"].startswith("stopped by SIGTERM")
    result = S.run_grid(study, [0.5, 1.0, 2.0], train, max_extensions=0, max_retry=0)
    assert calls == [0.5, 1.0, 1.0, 2.0] and result["best"] == 0.5


# --- pruning on the full schedule ------------------------------------------------------

# (final loss, time constant) of loss(step) = final + (6 - final) exp(-step / T): 3e-3
# starts slowest and ends best; it passes 1e-3 near step 40 and 1e-2 near step 55.
CROSSING = {1e-3: (2.0, 5), 3e-3: (1.0, 25), 1e-2: (1.6, 8), 3e-2: (2.6, 5)}


def crossing_trainer(settings, report):
    final, scale = CROSSING[settings["learning_rate"]]
    curve = [[s, final + (6 - final) * math.exp(-s / scale)] for s in range(0, 101, 10)]
    for step, loss in curve:
        report(step, loss)
    return curve


def prune_run(tmp_path, kind, min_resource):
    study = S.open_study(f"{kind}{min_resource}", model_dir=tmp_path,
                         pruner=S.make_pruner(kind, 100, min_resource, reduction_factor=2))
    result = S.run_grid(study, sorted(CROSSING), crossing_trainer, budget=100,
                        max_extensions=0)
    stopped = {r["learning_rate"]: r["steps_trained"] for r in result["records"] if r["pruned"]}
    return result["best"], stopped, S.steps_saved(study, 100)


@pytest.mark.parametrize("kind", ["halving", "hyperband"])
def test_the_pruner_keeps_the_late_winner_when_its_rung_follows_the_crossing(tmp_path, kind):
    best, stopped, _ = prune_run(tmp_path, "none", 1)
    assert best == 3e-3 and stopped == {}
    # One rung, at step 60 (the next, 120, is past the budget), reduction factor 2; the
    # trials run in grid order. At step 60: 1e-3 2.000 (alone: goes on), 3e-3 1.454 (the
    # best of 2: goes on), 1e-2 1.602 (not the best of 3: stopped), 3e-2 2.600 (not in the
    # best 2 of 4: stopped). Saved: 2 x 40 of 4 x 100 steps.
    best, stopped, saved = prune_run(tmp_path, kind, 60)
    assert best == 3e-3 and stopped == {1e-2: 60, 3e-2: 60}
    assert saved == dict(trials=4, pruned=2, full_steps=400, run_steps=320, saved_steps=80,
                         saved_fraction=0.2)


def test_a_rung_before_the_crossing_stops_the_winner(tmp_path):
    # At step 30 the winner (2.506) trails 1e-3 (2.010): stopped, and 1e-2 is chosen.
    best, stopped, saved = prune_run(tmp_path, "halving", 30)
    assert stopped == {3e-3: 30, 3e-2: 30} and best == 1e-2
    assert saved["saved_steps"] == 140


def test_a_report_at_the_budget_is_never_pruned(tmp_path):
    # ThresholdPruner(upper=0) stops a trial at any report (every loss is above 0): a trial
    # reporting at step 50 stops there; one reporting only at the budget (100) completes.
    def train(settings, report):
        for step in [50, 100] if settings["learning_rate"] == 1.0 else [100]:
            report(step, 2.0)
        return [[0, 6.0], [100, 2.0]]

    study = S.open_study("t", model_dir=tmp_path, pruner=optuna.pruners.ThresholdPruner(upper=0))
    result = S.run_grid(study, [1.0, 2.0], train, budget=100, max_extensions=0)
    assert [(r["learning_rate"], r["state"], r["steps_trained"]) for r in result["records"]] == [
        (1.0, "PRUNED", 50), (2.0, "COMPLETE", 100)]


# --- the same choice as trainers/common/sweep.py -----------------------------------------

def fake_curve(lr, optimum, diverge_above):
    """The held-out curve of a run at `lr`: NaN above `diverge_above`, above the initial
    loss + margin just below it, else (log10 lr - log10 optimum)^2 + 1."""
    if lr > diverge_above:
        return [[0, 6.0], [100, float("nan")]]
    if lr > diverge_above / 2:
        return [[0, 6.0], [100, 7.5]]
    return [[0, 6.0], [50, 4.0], [100, (math.log10(lr) - math.log10(optimum)) ** 2 + 1.0]]


@pytest.mark.parametrize("grid, optimum, diverge_above, max_extensions", [
    ([1e-4, 3.162e-4, 1e-3, 3.162e-3, 1e-2], 1e-3, 10.0, 3),  # inside: no extension
    ([1e-2, 3.162e-2, 0.1, 0.3162], 1e-3, 10.0, 3),  # below: extended downwards
    ([1e-4, 1e-3, 1e-2], 1e-9, 10.0, 2),  # far below: the bound is hit
    ([1e-3, 1e-2, 0.1, 1.0], 0.3, 0.2, 3),  # the best finite rate is below divergence
    ([1.0, 3.0, 10.0], 1.0, 0.1, 2),  # everything diverges: grown downwards, no choice
])
def test_the_study_chooses_what_the_current_sweep_chooses(tmp_path, grid, optimum,
                                                          diverge_above, max_extensions):
    # The reference: sweep.search_grid on the curves themselves (the pre-Optuna sweep's
    # loop: each point's score its final loss, +inf when sweep.classify calls it diverged).
    reasons = {}

    def evaluate(lr):
        curve = fake_curve(lr, optimum, diverge_above)
        diverged, reasons[lr] = sweep.classify(curve)
        return (math.inf if diverged else curve[-1][1]), None

    old = sweep.search_grid(evaluate, grid, max_extensions)

    def train(settings, report):
        return fake_curve(settings["learning_rate"], optimum, diverge_above)

    new = S.run_grid(S.open_study("eq", model_dir=tmp_path), grid, train, budget=100,
                     max_extensions=max_extensions)
    keys = ("values", "scores", "best", "extensions", "at_edge", "bound_hit", "stopped")
    assert {k: new[k] for k in keys} == {k: old[k] for k in keys}
    # Divergence is a FAILED trial with its reason, as the old records say.
    new_reasons = {r["learning_rate"]: r["divergence_reason"] for r in new["records"]
                   if r["diverged"]}
    assert new_reasons == {lr: reason for lr, reason in reasons.items() if reason}
    assert all(r["state"] == "FAIL" for r in new["records"] if r["diverged"])


# --- fixed points (a setting's seeds) and trials run elsewhere ----------------------------

def test_fixed_points_run_once_each_and_a_diverged_one_is_recorded(tmp_path):
    runs = []

    def train(settings, report):
        seed = settings["seed"]
        runs.append(seed)
        return [[0, 6.0], [100, math.nan if seed == 1 else 2.0 + seed]]

    study = S.open_study("seeds", model_dir=tmp_path)
    seen = []
    result = S.run_points(study, range(3), train, budget=100, on_trial=seen.append)
    assert runs == [0, 1, 2] and [r["seed"] for r in seen] == [0, 1, 2]
    assert [(r["seed"], r["state"], r["final_loss"]) for r in result["records"]] == [
        (0, "COMPLETE", 2.0), (1, "FAIL", None), (2, "COMPLETE", 4.0)]
    assert result["records"][1]["divergence_reason"] == "final held-out loss is nan"
    # Rerun (resume), and fewer seeds: nothing runs, only the seeds asked for come back.
    again = S.run_points(study, range(2), train, budget=100)
    assert runs == [0, 1, 2] and [r["seed"] for r in again["records"]] == [0, 1]


def test_a_finished_trial_added_counts_in_the_search_not_in_the_steps_saved(tmp_path):
    study = S.open_study("added", model_dir=tmp_path)
    elsewhere = [dict(learning_rate=1.0, curve=[[0, 6.0], [100, 2.0]], clip_fraction=0.5),
                 dict(learning_rate=3.0, curve=[[0, 6.0], [100, None]], diverged=True,
                      divergence_reason="final held-out loss is nan")]
    for result in elsewhere + elsewhere:  # twice: a point the study has is not added again
        S.add_finished(study, "learning_rate", result)
    assert [(t.state.name, t.params, t.user_attrs["reused"]) for t in study.get_trials()] == [
        ("COMPLETE", {"learning_rate": 1.0}, True), ("FAIL", {"learning_rate": 3.0}, True)]
    runs = []

    def train(settings, report):
        runs.append(settings["learning_rate"])
        return [[0, 6.0], [100, 2.5]]

    result = S.run_grid(study, [1.0, 2.0, 3.0], train, budget=100, max_extensions=0)
    assert runs == [2.0]
    assert result["scores"] == [2.0, 2.5, math.inf] and result["best"] == 1.0
    assert result["records"][0]["clip_fraction"] == 0.5
    assert result["records"][2]["divergence_reason"] == "final held-out loss is nan"
    assert S.steps_saved(study, 100)["trials"] == 1  # only the trial run here


# --- storages ------------------------------------------------------------------------

def test_the_installed_optuna_has_heartbeats_on_rdb_only():
    """What study.py's note says of Optuna: if this fails, Optuna's journal storage grew a
    heartbeat of its own and HeartbeatJournalStorage can go."""
    from optuna.storages._heartbeat import BaseHeartbeat

    assert issubclass(optuna.storages.RDBStorage, BaseHeartbeat)
    assert not issubclass(optuna.storages.JournalStorage, BaseHeartbeat)
    assert not issubclass(optuna.storages.GrpcStorageProxy, BaseHeartbeat)


def test_the_storages_given_have_heartbeats_and_retries(tmp_path):
    journal = S.make_storage(None, model_dir=str(tmp_path), heartbeat_interval=2)
    assert (tmp_path / S.STUDY_FILE).exists()
    on_nfs = S.make_storage(str(tmp_path / "shared.journal"), heartbeat_interval=2)
    rdb = S.make_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=2)
    for storage in (journal, on_nfs, rdb):
        assert storage.get_heartbeat_interval() == 2
        retry = storage.get_heartbeat_stale_trial_callback()
        assert isinstance(retry, optuna.storages.RetryHeartbeatStaleTrialCallback)
    assert journal.grace_period == S.GRACE_SECONDS


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage")
def test_a_stale_journal_trial_is_failed_and_retried_once(tmp_path):
    study = S.open_study("s", model_dir=tmp_path, heartbeat_interval=1, grace_period=1)
    storage = study._storage
    study.enqueue_trial({"x": 1.0})
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials()[0].state.name == "RUNNING"  # its heartbeat is fresh
    time.sleep(1.2)
    optuna.storages.fail_stale_trials(study)
    optuna.storages.fail_stale_trials(study)  # a second worker finds nothing left to fail
    states = [(t.state.name, t.system_attrs.get("failed_trial")) for t in study.get_trials()]
    assert states == [("FAIL", None), ("WAITING", 0)]


@pytest.mark.parametrize("storage, model_dir, message", [
    (None, "gs://bucket/sweep", "not on a local disk"),
    ("redis://localhost:6379", None, "neither a database URL"),
    (None, "{tmp}/missing", "cannot open the study file"),
    (None, None, "needs --storage or --model_dir"),
])
def test_bad_storages_are_one_line_errors(tmp_path, storage, model_dir, message):
    with pytest.raises(TrainerError, match=message):
        S.make_storage(storage, model_dir and model_dir.format(tmp=tmp_path))


def test_pruner_settings_are_checked():
    with pytest.raises(TrainerError, match="one of none, halving, hyperband"):
        S.make_pruner("median", 100, 10)
    with pytest.raises(TrainerError, match="min_resource"):
        S.make_pruner("halving", 100, 200)
    assert isinstance(S.make_pruner("none", 100, 0), optuna.pruners.NopPruner)
