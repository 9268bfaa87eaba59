"""The sweep (trainers/common/sweep.py's protocol on trainers/common/study.py's studies,
sweep_report.py, the program trainers/sweep.py) on cheap objectives: a pure Python trial
function instead of a trainer, and a tiny fake trainer script (plain Python, the real
metrics.jsonl/summary.json format) for the subprocess path. No TensorFlow is run here."""

import dataclasses
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pytest
from absl import flags

from conftest import REPO
from trainers import sweep as sweep_program
from trainers.common import cli
from trainers.common import config as config_lib
from trainers.common import study
from trainers.common import sweep as S
from trainers.common import sweep_report
from trainers.common import trials as trials_lib

OPTIMA = {"sgd": 0.05, "adam": 3e-3, "gclip": 0.3, "cclip": 0.2}


def objective(trial, optima=OPTIMA, diverge_above=2.0, test_shift=0.0, test_optima=None):
    """Held-out curve: (log10 lr - log10 lr*)^2 + 1 + seed noise; NaN above diverge_above."""
    if trial.learning_rate > diverge_above:
        return [[0, 6.0], [trial.steps, float("nan")]]
    best = (test_optima or optima if trial.split == "test" else optima)[trial.optimizer]
    loss = (math.log10(trial.learning_rate) - math.log10(best)) ** 2 + 1.0
    loss += 0.01 * ((trial.seed * 7919) % 13) + (test_shift if trial.split == "test" else 0.0)
    clip = None
    if trial.tau is not None:
        loss += 0.05 * math.log10(trial.tau / 0.3) ** 2  # best tau 0.3
        clip = 0.0 if trial.tau >= 10 else 0.5
    return {"curve": [[0, 6.0], [trial.steps // 2, (6.0 + loss) / 2], [trial.steps, loss]],
            "clip_fraction": clip, "train_loss": loss - 0.1}


def config(optimizers=("sgd", "adam"), **kw):
    kw.setdefault("lr_grids", {o: S.log_grid(S.LR_CENTRES[o]) for o in optimizers})
    kw.setdefault("train_steps", 100)
    kw.setdefault("tau_grids", dict(S.TAU_GRIDS, gclip=(0.1, 1.0, 10.0)))
    return S.Config(optimizers=list(optimizers), **kw)


@pytest.fixture
def run(tmp_path):
    """run(cfg, fn, storage=None, records=()) -> (state, trials run): the protocol on studies
    in a fresh journal (or `storage`, to rerun on one), each trial ``fn(trial)``; `records`
    (a results.json's trials) join the studies first."""
    fresh = itertools.count()

    def run(cfg, fn=objective, storage=None, records=()):
        if storage is None:
            (tmp_path / f"s{next(fresh)}").mkdir()
            storage = study.make_storage(None, str(tmp_path / f"s{next(fresh) - 1}"))
        calls = []

        def run_trial(trial, report):
            calls.append(trial)
            out = fn(trial)
            return dict(out) if isinstance(out, dict) else {"curve": out}

        searches = study.Searches(cfg, lambda name, pruner: study.open_study(
            name, storage, pruner=pruner), run_trial)
        searches.add(records)
        return S.Comparison(cfg, searches.search, searches.seeds).run(), calls

    return run


def test_log_grid_is_centred_and_log_spaced():
    grid = S.log_grid(1e-3, math.sqrt(10), 5)
    assert grid == [1e-4, 3.162e-4, 1e-3, 3.162e-3, 1e-2]
    assert S.log_grid(0.1, 3, 4) == [S.round_sig(0.1 * 3 ** k) for k in (-1.5, -0.5, 0.5, 1.5)]
    assert S.geometric_centre([10, 0.1, 1]) == 1


def test_extension_moves_the_best_inside_the_grid(run):
    cfg = config(["adam"], lr_grids={"adam": [1e-2, 3.162e-2, 0.1, 0.3162]})
    state, _ = run(cfg, lambda t: objective(t, optima={"adam": 1e-3}))
    search = state["selections"]["adam"]["lr_search"]
    # 3.163e-3, 1e-3 (still the edge), then 3.162e-4 (worse): 1e-3 is inside.
    assert search["extensions"] == 3
    assert search["values"][0] < search["best"] < search["values"][-1]
    assert state["selections"]["adam"]["chosen"]["learning_rate"] == pytest.approx(1e-3)
    assert not search["at_edge"] and not search["bound_hit"]


def test_extension_bound_is_recorded(run):
    cfg = config(["adam"], max_extensions=2, divergence_margin=100.0)
    state, _ = run(cfg, lambda t: objective(t, optima={"adam": 1e-9}))
    search = state["selections"]["adam"]["lr_search"]
    assert search["extensions"] == 2 and search["bound_hit"] and search["at_edge"]
    assert search["best"] == search["values"][0] == S.round_sig(1e-4 / 10)


def test_a_one_point_grid_is_fixed(run):
    cfg = config(["gclip"], lr_grids={"gclip": [0.1]}, tau_grids={"gclip": (5.0,)})
    state, calls = run(cfg)
    sel = state["selections"]["gclip"]
    assert sel["chosen"]["learning_rate"] == 0.1 and sel["chosen"]["tau"] == 5.0
    # Nothing to choose: no validation run, only the seeds on the test split.
    assert sel["chosen"]["fixed"] and sel["chosen"]["validation_loss"] is None
    assert sel["lr_search"] is None and sel["tau_search"] is None
    assert len(calls) == 3
    doc = sweep_report.results_document(state, meta(cfg))
    assert "| 0.1 (fixed) | 5 (fixed) |" in sweep_report.markdown_table(doc, "t")


def test_selection_uses_validation_not_test(run):
    # The test split prefers another rate; the choice must follow validation.
    test_optima = {"sgd": 1.0, "adam": 1e-4}
    cfg = config()
    state, _ = run(cfg, lambda t: objective(t, test_optima=test_optima))
    assert state["selections"]["sgd"]["chosen"]["learning_rate"] == 0.03162  # nearest 0.05
    assert state["selections"]["adam"]["chosen"]["learning_rate"] == 3.162e-3
    grid = [t for t in state["trials"] if t["stage"] == "lr"]
    finals = [t for t in state["trials"] if t["stage"] == "final"]
    # Screens run the full budget (the seeded runs' schedule), never a truncated one.
    assert grid and all(t["split"] == "validation" and t["steps"] == 100 for t in grid)
    assert len(finals) == 2 * 3
    assert all(t["split"] == "test" and t["steps"] == 100 for t in finals)
    assert sorted(t["seed"] for t in finals if t["optimizer"] == "sgd") == [0, 1, 2]


def test_seed_aggregates_match_numpy(run):
    cfg = config(["sgd"], seeds=4)
    state, _ = run(cfg)
    final = state["finals"]["sgd"]
    losses = [t["final_loss"] for t in state["trials"] if t["stage"] == "final"]
    assert len(losses) == 4 and final["n"] == 4 and final["diverged"] == 0
    np.testing.assert_allclose(final["mean"], np.mean(losses), rtol=1e-12)
    np.testing.assert_allclose(final["sd"], np.std(losses, ddof=1), rtol=1e-12)
    assert final["sd"] > 0


def test_diverged_runs_are_recorded_and_never_selected(run):
    # Loss falls with the rate up to the divergence point: the best finite point
    # is just below it. Three kinds of divergence: NaN, a loss above the initial
    # loss + margin, and a trainer that stopped on a non-finite value.
    def fn(t):
        lr = t.learning_rate
        if lr > 0.5:
            return {"curve": [[0, 6.0]], "exit_code": 1, "message": "error: loss is NaN"}
        if lr > 0.2:
            return [[0, 6.0], [t.steps, 7.5]]
        if lr > 0.1:
            return [[0, 6.0], [t.steps, float("inf")]]
        return [[0, 6.0], [t.steps, 2.0 - lr]]

    cfg = config(["sgd"], lr_grids={"sgd": [0.01, 0.03162, 0.1, 0.3162, 1.0]})
    state, _ = run(cfg, fn)
    chosen = state["selections"]["sgd"]["chosen"]
    assert chosen["learning_rate"] == 0.1
    diverged = {t["learning_rate"]: t["divergence_reason"] for t in state["trials"]
                if t["diverged"]}
    assert set(diverged) == {0.3162, 1.0}
    assert "exited 1" in diverged[1.0] and "initial" in diverged[0.3162]
    search = state["selections"]["sgd"]["lr_search"]
    assert search["scores"][-2:] == [math.inf, math.inf]
    assert state["finals"]["sgd"]["diverged"] == 0


def test_all_diverged_extends_downwards_then_reports_no_choice(run):
    cfg = config(["sgd"], max_extensions=2)
    state, calls = run(cfg, lambda t: [[0, 6.0], [t.steps, float("nan")]])
    search = state["selections"]["sgd"]["lr_search"]
    assert search["best"] is None and search["bound_hit"] and search["extensions"] == 2
    assert search["values"][0] == S.round_sig(0.01 / 10)
    assert state["selections"]["sgd"]["chosen"] is None and state["finals"]["sgd"] is None
    assert len(calls) == 5 + 2  # no seeds for a setting that does not exist
    doc = sweep_report.results_document(state, meta(cfg))
    assert "all diverged" in sweep_report.markdown_table(doc, "t")


def test_tau_stage_search_at_the_chosen_rate(run):
    cfg = config(["gclip"])
    state, _ = run(cfg)
    sel = state["selections"]["gclip"]
    assert sel["tau_search"] is not None
    # The rate search ran at the tau grid's centre, the tau search at the chosen rate.
    lr = sel["chosen"]["learning_rate"]
    assert {t["tau"] for t in state["trials"] if t["stage"] == "lr"} == {1.0}
    assert {t["learning_rate"] for t in state["trials"] if t["stage"] == "tau"} == {lr}
    # The best tau (0.3) is nearest 0.1, the low edge: the grid grew to 0.01 (worse).
    assert sel["chosen"]["tau"] == 0.1 and sel["tau_search"]["extensions"] == 1
    assert not sel["tau_search"]["at_edge"]
    assert all(t["tau"] == sel["chosen"]["tau"] for t in state["trials"]
               if t["stage"] == "final")


def test_tau_grid_not_grown_past_a_tau_that_clipped_nothing(run):
    cfg = config(["gclip"], tau_grids={"gclip": (1.0, 3.0, 10.0)})

    def fn(t):  # loss falls with tau: clipping only hurts here
        out = objective(t)
        if t.tau is not None:
            out["curve"][-1][1] = out["curve"][-1][1] - 0.1 * t.tau
        return out

    state, _ = run(cfg, fn)
    tau = state["selections"]["gclip"]["tau_search"]
    assert tau["best"] == 10.0 and tau["extensions"] == 0
    assert "clipped nothing" in tau["stopped"]


def test_tau_cross_search_finds_the_joint_optimum(run):
    cfg = config(["gclip"], tau_search="cross", tau_grids={"gclip": (0.03, 0.3, 3.0)})
    state, _ = run(cfg)
    chosen = state["selections"]["gclip"]["chosen"]
    assert chosen["tau"] == 0.3 and chosen["learning_rate"] == 0.3162
    lr_taus = {t["tau"] for t in state["trials"] if t["stage"] == "lr"}
    assert lr_taus == {0.03, 0.3, 3.0}


def test_a_rerun_runs_nothing_and_a_results_json_seeds_a_fresh_study(run, tmp_path):
    cfg = config(["sgd", "gclip"])
    fn = lambda t: objective(t, diverge_above=0.5)  # noqa: E731 - sgd 1.0 diverges
    (tmp_path / "first").mkdir()
    storage = study.make_storage(None, str(tmp_path / "first"))
    state, calls = run(cfg, fn, storage=storage)
    # Every trial once: the tau stage's centre is the rate search's trial, not run again.
    assert len(calls) == len(state["trials"]) > 10
    assert len({(t.optimizer, t.name) for t in calls}) == len(calls)
    assert any(t["diverged"] for t in state["trials"])
    again, calls2 = run(cfg, fn, storage=storage)  # the same command again: resumed, done
    assert calls2 == []
    as_json = lambda x: json.loads(json.dumps(sweep_report.jsonable(x)))  # noqa: E731
    assert as_json(again["selections"]) == as_json(state["selections"])
    # A fresh machine with the sweep's results.json: its trials join the studies, none runs,
    # and the protocol decides exactly what it decided.
    path = tmp_path / "results.json"
    sweep_report.write_results(str(path), state, meta(cfg))
    previous = sweep_report.load_results(str(path))["trials"]
    # An older sweep's truncated screen (another budget) is not one of this sweep's trials.
    truncated = dict(previous[0], steps=50, curve=[[0, 6.0], [50, 0.5]], final_loss=0.5)
    seeded, calls3 = run(cfg, fn, records=[truncated] + previous)
    assert calls3 == []
    assert as_json(seeded["selections"]) == as_json(state["selections"])
    assert as_json(seeded["finals"]) == as_json(state["finals"])
    assert all(t["reused"] for t in seeded["trials"])
    # Half a sweep (the first optimizer's trials only): the rest runs, nothing twice.
    half = [t for t in previous if t["optimizer"] == "sgd"]
    _, calls4 = run(cfg, fn, records=half)
    assert len(calls4) == len(previous) - len(half)


def test_the_planned_trials_are_the_runs_of_a_search_without_extensions(run):
    arms = [dict(beta_2=0.95), dict(beta_2=0.999)]
    cfg = config(["sgd", "adam", "gclip"], seeds=2, option_grids={"adam": arms})
    assert [cfg.planned_trials(n) for n in cfg.optimizers] == [5 + 2, 2 * 5 + 2, 5 + 2 + 2]
    cross = config(["gclip"], tau_search="cross")
    assert cross.planned_trials("gclip") == 3 * 5 + 3
    state, calls = run(cfg, lambda t: objective(t, optima=dict(OPTIMA, adam=1e-3)))
    for name in cfg.optimizers:
        sel = state["selections"][name]
        searches = [a for a in (sel["lr_search"], sel["tau_search"]) if a]
        extensions = sum(a["extensions"] for a in searches)
        if sel["arms"]:  # the other arm's extensions too
            extensions = sum(a["trials"] for a in sel["arms"]) - len(arms) * 5
        assert sum(t.optimizer == name for t in calls) == cfg.planned_trials(name) + extensions


def meta(cfg, perplexity=True):
    return dict(program="fake", trainer_flags="--train_steps=100", metric="loss",
                objective=cfg.objective, perplexity=perplexity, config=vars(cfg).copy())


def test_outputs_json_table_and_plot(tmp_path, run):
    cfg = config(["sgd", "adam", "gclip"])
    state, _ = run(cfg, lambda t: objective(t, diverge_above=0.5))
    doc = sweep_report.write_results(str(tmp_path / "results.json"), state, meta(cfg))
    text = (tmp_path / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    loaded = json.loads(text)
    assert {t["optimizer"] for t in loaded["trials"]} == {"sgd", "adam", "gclip"}
    assert any(t["diverged"] and t["final_loss"] is None for t in loaded["trials"])
    for key in ("optimizer", "learning_rate", "tau", "seed", "split", "final_loss", "curve",
                "diverged", "wall_seconds"):
        assert key in loaded["trials"][0]
    table = sweep_report.markdown_table(doc, "fake sweep")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3 and "test perplexity" in rows[0]
    sgd = next(r for r in rows if r.startswith("| sgd "))
    f = state["finals"]["sgd"]
    assert f"{f['mean']:.4f} ± {f['sd']:.4f} (n=3)" in sgd
    assert f"{math.exp(f['mean']):.2f}" in sgd
    assert "| 1/5 / 0/3 |" in sgd  # lr 1 diverged in the grid, no seed did
    means = sorted((state["finals"][o]["mean"], o) for o in ("sgd", "adam", "gclip"))
    (best, first), (second, runner_up) = means[0], means[1]
    # The first two differ by less than their seed sd (0.02): a tie, said so.
    assert second - best < max(state["finals"][first]["sd"], state["finals"][runner_up]["sd"])
    assert (f"Ranking by mean test (held-out) loss over the seeds (lower is better): "
            f"{first} {best:.4f}, {runner_up} {second:.4f} (+{second - best:.4f}, tie: "
            "within 1 sd)") in table
    png = sweep_report.plot_bands(doc, str(tmp_path / "results.png"), "fake sweep")
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_focus_limits_leave_out_only_a_far_initial_evaluation():
    steps = [0, 200, 400]
    # A ResNet: step-0 loss ~100 (untrained batch-norm statistics), then ~1.
    resnet = [(steps, [40.0, 1.0, 0.84], [111.0, 1.1, 0.92]),
              (steps, [35.0, 1.05, 0.90], [90.0, 1.2, 0.93])]
    low, high, first = sweep_report.focus_limits(resnet)
    assert first == 111.0
    assert low < 0.84 and high > 1.2  # every later value stays on the axis
    assert high - low == pytest.approx((1.2 - 0.84) * 1.1)
    # An LM: 9.0 at step 0, 5.5 later: below 3x, nothing left out.
    lm = [(steps, [9.0, 6.0, 5.5], [9.1, 6.1, 5.6])]
    assert sweep_report.focus_limits(lm) is None
    # A single evaluation, or nothing at all: nothing to focus on.
    assert sweep_report.focus_limits([([400], [1.0], [1.0])]) is None
    assert sweep_report.focus_limits([]) is None


# --- the subprocess path, against a fake trainer ------------------------------

FAKE_TRAINER = textwrap.dedent('''
    """A stand-in trainer: writes metrics.jsonl and summary.json as trainers do; on
    SIGTERM (or once at --preempt_once_at, per sweep) it stops with the restart status."""
    import argparse, json, math, os, signal, sys, time
    p = argparse.ArgumentParser()
    for name in ("model_dir", "optimizer", "eval_split", "corpus"):
        p.add_argument("--" + name)
    for name in ("learning_rate", "tau", "beta_2"):
        p.add_argument("--" + name, type=float)
    p.add_argument("--fixed_train_examples", type=int, default=0)
    for name in ("seed", "train_steps", "eval_every"):
        p.add_argument("--" + name, type=int, default=0)
    p.add_argument("--eval_seconds", type=float, default=0.0)  # the time one evaluation takes
    p.add_argument("--noexport", dest="export", action="store_false")
    p.add_argument("--preempt_once_at", type=int, default=-1)
    a = p.parse_args()

    def preempted(*_):
        with open(os.path.join(a.model_dir, "preempted.txt"), "a") as f:
            f.write("x\\n")
        sys.exit(42)

    signal.signal(signal.SIGTERM, preempted)
    if a.corpus == "missing":
        print("error: no corpus", file=sys.stderr); sys.exit(1)
    os.makedirs(a.model_dir, exist_ok=True)
    with open(os.path.join(a.model_dir, "calls.txt"), "a") as f:
        f.write("x\\n")
    if a.learning_rate > 0.5:
        print("error: the loss became NaN at step 3", file=sys.stderr); sys.exit(1)
    best = {"sgd": 0.05, "gclip": 0.1}[a.optimizer]
    loss = (math.log10(a.learning_rate) - math.log10(best)) ** 2 + 1 + 0.01 * a.seed
    # The training loss prefers a 10x larger rate than the held-out loss, and beta_2 0.95.
    train = (math.log10(a.learning_rate) - math.log10(10 * best)) ** 2 + 0.5 + 0.01 * a.seed
    train += 0.2 * (a.beta_2 or 0.999) - 0.19
    if a.eval_split == "test":
        loss += 0.1
    # Evaluations at 0, every --eval_every steps and at the end; each loss falls from 6
    # towards its final value (time constant 10 steps).
    steps = sorted(set(range(0, a.train_steps, a.eval_every or a.train_steps)) | {a.train_steps})
    with open(os.path.join(a.model_dir, "metrics.jsonl"), "w") as f:
        for step in steps:
            decay = math.exp(-step / 10) if step < a.train_steps else 0.0
            rec = {"step": step, "examples_seen": step * 8,
                   "eval_loss": loss + (6.0 - loss) * decay}
            if a.fixed_train_examples:
                rec["fixed_train_loss"] = train + (6.1 - train) * decay
            if a.tau is not None and step:
                rec["clip_fraction"] = 0.25
            f.write(json.dumps(rec) + "\\n")
            f.flush()
            once = os.path.join(a.model_dir, "..", "..", "preempted_once")
            if step == a.preempt_once_at and not os.path.exists(once):
                open(once, "w").close()
                preempted()
            time.sleep(a.eval_seconds)
    with open(os.path.join(a.model_dir, "summary.json"), "w") as f:
        json.dump({"final_step": a.train_steps, "train": {"loss": loss},
                   "eval": {"loss": loss}, "train_seconds_this_run": 0.1,
                   "exported": a.export}, f)
''')


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake_trainer.py"
    path.write_text(FAKE_TRAINER)
    return [sys.executable, str(path)]


def sweep_flags(model_dir, *extra):
    fv = flags.FlagValues()
    sweep_program.define_flags(fv)
    fv(["sweep", "--program=fake", f"--model_dir={model_dir}", "--optimizers=sgd,gclip",
        "--trainer_flags=--train_steps=40", "--seeds=2",
        "--lr_grid=sgd=0.01/0.1/1,gclip=0.01/0.1/1", "--tau_grid=gclip=1/10",
        "--max_extensions=1", *extra])
    return fv


def test_program_runs_trials_as_subprocesses_and_resumes(tmp_path, fake, capsys):
    model_dir = tmp_path / "sweep"
    doc = sweep_program.run_sweep(sweep_flags(model_dir), command=fake)
    out = capsys.readouterr().out
    sel = doc["selections"]
    assert sel["sgd"]["chosen"]["learning_rate"] == 0.1
    lr1 = [t for t in doc["trials"] if t["optimizer"] == "sgd" and t["learning_rate"] == 1.0]
    assert lr1 and lr1[0]["diverged"] and "NaN" in lr1[0]["divergence_reason"]
    assert doc["finals"]["sgd"]["n"] == 2
    final = [t for t in doc["trials"] if t["stage"] == "final" and t["optimizer"] == "gclip"]
    assert {t["seed"] for t in final} == {0, 1} and all(t["split"] == "test" for t in final)
    assert all(t["clip_fraction"] == 0.25 for t in final)
    run_dir = model_dir / "sgd" / "lr0.1_seed0_validation_40steps"
    assert (run_dir / "summary.json").exists() and (run_dir / "trainer.log").exists()
    assert "--eval_split=validation" in (run_dir / "trainer.log").read_text()
    # Screens skip the export (nobody loads their models); the seeded test runs keep it.
    exported = {t["split"]: json.loads((model_dir / t["optimizer"] / t["name"] /
                                        "summary.json").read_text())["exported"]
                for t in doc["trials"] if not t.get("diverged")}
    assert exported == {"validation": False, "test": True}
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == len(doc["trials"]) and "ETA" in lines[0]
    assert doc["meta"]["trials"] == "subprocess" and "pruning: off" in out
    for name in ("results.json", "results.md", "results.png"):
        assert (model_dir / name).exists()
    assert "test perplexity" not in (model_dir / "results.md").read_text()  # not an LM
    assert (model_dir / study.STUDY_FILE).exists()
    assert not (model_dir / "optuna").exists()  # no pruner: results.png says it all

    # A rerun runs nothing: the study has every trial (results.json is only an output).
    calls_before = sum(1 for _ in model_dir.rglob("calls.txt"))
    os.remove(model_dir / "results.json")
    doc2 = sweep_program.run_sweep(sweep_flags(model_dir), command=fake)
    assert f"(0 trials run by this worker, {len(doc['trials'])} from the study)" in \
        capsys.readouterr().out
    assert doc2["selections"] == doc["selections"] and doc2["finals"] == doc["finals"]
    assert sum(1 for _ in model_dir.rglob("calls.txt")) == calls_before
    assert all(p.read_text() == "x\n" for p in model_dir.rglob("calls.txt"))

    # Another machine with this results.json: its trials join a fresh study, none runs.
    other = tmp_path / "other"
    doc3 = sweep_program.run_sweep(sweep_flags(other, f"--import_results={model_dir}/"
                                               "results.json"), command=fake)
    assert "(0 trials run by this worker" in capsys.readouterr().out
    assert doc3["selections"] == doc["selections"] and doc3["finals"] == doc["finals"]
    # ... but not the trials of a sweep of other trainer flags (they are run).
    sweep_program.run_sweep(sweep_flags(tmp_path / "third", "--optimizers=sgd", "--seeds=1",
                                        "--trainer_flags=--train_steps=30",
                                        f"--import_results={model_dir}/results.json"),
                            command=fake)
    out = capsys.readouterr().out
    assert "is a sweep with other trainer_flags: its trials are not used" in out
    assert "(4 trials run by this worker, 0 from the study)" in out

    # Two results.json, one per optimizer (--import_results repeats): a sweep of both
    # runs nothing and chooses as the sweep that ran them all.
    for name in ("sgd", "gclip"):
        part = dict(doc, trials=[t for t in doc["trials"] if t["optimizer"] == name])
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    doc4 = sweep_program.run_sweep(sweep_flags(tmp_path / "fourth",
                                               f"--import_results={tmp_path}/sgd.json",
                                               f"--import_results={tmp_path}/gclip.json"),
                                   command=fake)
    out = capsys.readouterr().out
    assert "(0 trials run by this worker" in out and out.count("joined the studies") == 2
    assert doc4["selections"] == doc["selections"] and doc4["finals"] == doc["finals"]


class FakeTask:
    """A task class for the fake trainer: its model family's settings, off the optima."""

    @dataclasses.dataclass(frozen=True)
    class config_class(config_lib.Config):
        corpus: str = config_lib.option("", "The corpus.")

    run_defaults = {}
    optimizer_settings = {"sgd": {"learning_rate": 0.2}, "gclip": {"learning_rate": 0.2,
                                                                   "tau": 3.0}}


def test_family_settings_are_the_task_classes_and_run_without_a_search(tmp_path, fake,
                                                                        monkeypatch):
    monkeypatch.setitem(sweep_program.TASKS, "fake", FakeTask)
    base = ["--program=fake", "--optimizers=sgd,gclip", "--trainer_flags=--train_steps=40",
            "--seeds=2", "--family_settings"]
    fv = flags.FlagValues()
    sweep_program.define_flags(fv)
    fv(["sweep", f"--model_dir={tmp_path / 'sweep'}", *base])
    doc = sweep_program.run_sweep(fv, command=fake)
    assert {t["split"] for t in doc["trials"]} == {"test"}  # no screens
    for name, tau in (("sgd", None), ("gclip", 3.0)):
        runs = [t for t in doc["trials"] if t["optimizer"] == name]
        assert sorted(t["seed"] for t in runs) == [0, 1]
        assert all(t["learning_rate"] == 0.2 and t["tau"] == tau for t in runs)
        assert doc["finals"][name]["n"] == 2
    # A grid beside it, an unknown optimizer, a program without a task class: one line each.
    for extra, message in ((["--optimizers=sgd", "--lr_grid=sgd=0.1"], "drop --lr_grid"),
                           (["--optimizers=lion"], "--optimizer must be one of .*'lion'"),
                           (["--program=other"], "task class .*not other's")):
        fv = flags.FlagValues()
        sweep_program.define_flags(fv)
        fv(["sweep", f"--model_dir={tmp_path / 'other'}", *base, *extra])
        with pytest.raises(cli.TrainerError, match=message):
            sweep_program.run_sweep(fv, command=fake)


def test_pruning_through_the_program_reports_the_steps_saved(tmp_path, fake, capsys):
    # Evaluations every 10 of 90 steps; halving with its first rung at step 30 (reduction
    # factor 3: the next rung, 90, is the budget, where nothing is pruned). Each curve falls
    # from 6 towards (log10 lr - log10 0.05)^2 + 1, so the order at step 30 is the final one.
    # Grid order 0.005, 0.0158, 0.05, 0.158: at step 30, 0.005 is alone (goes on), 0.0158 is
    # the best of 2 (goes on), 0.05 the best of 3 (goes on), 0.158 (1.25) is not in the best
    # 4 // 3 = 1 of 4 (stopped). Saved: 90 - 30 = 60 of 4 x 90 screen steps.
    fv = sweep_flags(tmp_path / "p", "--optimizers=sgd", "--lr_grid=sgd=0.005/0.0158/0.05/0.158",
                     "--seeds=1", "--max_extensions=0", "--pruner=halving",
                     "--pruner_min_steps=30", "--trainer_flags=--train_steps=90 --eval_every=10")
    doc = sweep_program.run_sweep(fv, command=fake)
    out = capsys.readouterr().out
    pruned = {t["learning_rate"]: t["steps_trained"] for t in doc["trials"] if t["pruned"]}
    assert pruned == {0.158: 30}
    assert doc["selections"]["sgd"]["chosen"]["learning_rate"] == 0.05
    assert doc["meta"]["pruning"] == dict(trials=4, pruned=1, full_steps=360, run_steps=300,
                                          saved_steps=60, saved_fraction=60 / 360)
    assert "pruning (halving): 1 of 4 screens stopped early; they trained 300 of 360 steps " \
           "(60 saved, 17 %)" in out
    assert "PRUNED at step 30" in out
    assert "Pruning (halving): 1 of 4" in (tmp_path / "p" / "results.md").read_text()
    # Optuna's view of the pruned screen search: every trial's curve, one PNG per study.
    [png] = (tmp_path / "p" / "optuna").iterdir()
    assert png.name.startswith("sgd_learning_rate_at_") and png.read_bytes()[:4] == b"\x89PNG"


def test_a_pruned_subprocess_trial_is_stopped_while_it_runs(tmp_path, fake):
    # 20 evaluations 0.2 s apart (4 s): the report raises at step 30 (the 4th), the parent
    # sees it within a poll (0.1 s) and kills the trainer, which writes no more.
    trials = trials_lib.SubprocessTrials(fake, str(tmp_path), ["--train_steps=200",
                                                               "--eval_every=10",
                                                               "--eval_seconds=0.2"],
                                         poll_seconds=0.1)
    seen = []

    def report(step, value):
        seen.append(step)
        if step >= 30:
            raise optuna.TrialPruned()

    start = time.time()
    with pytest.raises(optuna.TrialPruned):
        trials.run("sgd/t", dict(optimizer="sgd", learning_rate=0.1, seed=0), report)
    assert seen == [0, 10, 20, 30] and time.time() - start < 3.0
    time.sleep(0.5)  # a trainer still running would write on
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "sgd" / "t" / "metrics.jsonl").read_text().splitlines()]
    assert steps[:4] == [0, 10, 20, 30] and len(steps) <= 6
    assert not (tmp_path / "sgd" / "t" / "summary.json").exists()


def test_a_preempted_trial_stops_the_sweep_and_the_rerun_resumes_it(tmp_path, fake):
    """A trainer that stops with the restart status (42: it saved its run) stops the sweep
    with that status; the trial is not failed: the same command reruns it (the trainer
    resumes) and the search ends as an uninterrupted one does."""
    def sweep(model_dir, *extra):
        return sweep_flags(model_dir, "--optimizers=sgd", "--lr_grid=sgd=0.01/0.1/1",
                           "--seeds=1", "--max_extensions=0",
                           "--trainer_flags=--train_steps=40 --eval_every=10", *extra)

    plain = sweep_program.run_sweep(sweep(tmp_path / "plain"), command=fake)
    args = ("--trainer_flags=--train_steps=40 --eval_every=10 --preempt_once_at=20",)
    with pytest.raises(cli.TrainerError, match="stopped before its end \\(exit 42\\).*rerun "
                       "the same command") as stopped:
        sweep_program.run_sweep(sweep(tmp_path / "p", *args), command=fake)
    assert stopped.value.exit_code == 42
    [first] = [d for d in (tmp_path / "p" / "sgd").iterdir() if (d / "preempted.txt").exists()]
    doc = sweep_program.run_sweep(sweep(tmp_path / "p", *args), command=fake)
    assert len((first / "calls.txt").read_text().split()) == 2  # run again, not failed
    assert doc["selections"] == plain["selections"]
    assert len(doc["trials"]) == len(plain["trials"])


SIGTERMED_SWEEP = textwrap.dedent("""
    import sys
    from trainers.common import trials as trials_lib
    from trainers.common.errors import Interrupted
    trials = trials_lib.SubprocessTrials(sys.argv[2:], sys.argv[1], [
        "--train_steps=200", "--eval_every=10", "--eval_seconds=0.5"], poll_seconds=0.1)
    try:
        trials.run("sgd/t", dict(optimizer="sgd", learning_rate=0.1, seed=0))
    except Interrupted as e:
        print(e)
        sys.exit(e.exit_code)
""")


def test_sigterm_to_a_sweep_is_passed_to_its_running_trainer(tmp_path, fake):
    """SIGTERM to the sweep's process reaches its subprocess trial (which saves and stops
    with 42, as the trainers do), and the sweep stops with the restart status too."""
    p = subprocess.Popen([sys.executable, "-c", SIGTERMED_SWEEP, str(tmp_path), *fake], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "sgd" / "t" / "metrics.jsonl"
    deadline = time.time() + 60
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 42, err[-2000:]
    assert "trial sgd/t stopped before its end (signal SIGTERM)" in out
    assert (tmp_path / "sgd" / "t" / "preempted.txt").exists()  # the trainer was told
    assert not (tmp_path / "sgd" / "t" / "summary.json").exists()


def test_program_dry_run_counts_the_plan(tmp_path, fake, capsys):
    assert sweep_program.run_sweep(sweep_flags(tmp_path, "--dry_run"), command=fake) is None
    out = capsys.readouterr().out
    # sgd: 3 grid runs; gclip: 3 at tau 1, then 1 more tau; 2 seeds each of 40 steps.
    assert "dry run: 11 trials, 440 steps planned" in out
    assert "gclip: lr 0.01/0.1/1 tau 1/10" in out
    assert not list(tmp_path.rglob("summary.json"))


def test_program_reports_a_failed_trial_and_bad_flags(tmp_path, fake):
    with pytest.raises(cli.TrainerError, match="failed \\(exit 1\\): error: no corpus"):
        sweep_program.run_sweep(sweep_flags(tmp_path / "a", "--trainer_flags=--train_steps=4 "
                                            "--corpus=missing"),
                                command=fake)
    with pytest.raises(cli.TrainerError, match="must set --train_steps"):
        sweep_program.run_sweep(sweep_flags(tmp_path / "b", "--trainer_flags=--corpus=x"),
                                command=fake)
    with pytest.raises(cli.TrainerError, match="may not set --seed"):
        sweep_program.run_sweep(sweep_flags(tmp_path / "c", "--trainer_flags=--train_steps=4 "
                                            "--seed=3"), command=fake)
    with pytest.raises(cli.TrainerError, match="no default learning-rate centre for lion"):
        sweep_program.run_sweep(sweep_flags(tmp_path / "d", "--optimizers=lion"), command=fake)
    with pytest.raises(cli.TrainerError, match="in_process needs a program with a task class"):
        sweep_program.run_sweep(sweep_flags(tmp_path / "d", "--trials=in_process"), command=fake)
    with pytest.raises(cli.TrainerError, match="neither a database URL"):
        sweep_program.run_sweep(sweep_flags(tmp_path / "d", "--storage=redis://x"), command=fake)
    with pytest.raises(cli.TrainerError, match="min_resource <= 40"):
        sweep_program.run_sweep(sweep_flags(tmp_path / "d", "--pruner=halving",
                                            "--pruner_min_steps=50"), command=fake)
    sweep_program.run_sweep(sweep_flags(tmp_path / "e", "--optimizers=sgd", "--seeds=1"),
                            command=fake)
    with pytest.raises(cli.TrainerError, match="trainer_flags="):
        sweep_program.run_sweep(sweep_flags(tmp_path / "e", "--optimizers=sgd", "--seeds=1",
                                            "--trainer_flags=--train_steps=80"), command=fake)


def test_seed_counts_are_per_optimizer_when_trial_names_coincide(run):
    # sgd and adam at the same fixed rate give trials of the same name; each row
    # counts only its own optimizer's seeds.
    cfg = config(["sgd", "adam"], lr_grids={"sgd": [1e-3], "adam": [1e-3]}, seeds=2)
    state, _ = run(cfg)
    doc = sweep_report.results_document(state, meta(cfg))
    rows = {r["optimizer"]: r for r in sweep_report.table_rows(doc)}
    assert rows["sgd"]["seed_runs"] == 2 and rows["adam"]["seed_runs"] == 2


def test_full_budget_screens_choose_the_budgets_best_rate(run):
    # The best rate depends on the budget (1 / steps): a 20-step screen would pick 0.05,
    # the 100-step budget wants 0.01. Every screen runs the full budget, so 0.01 wins.
    def fn(t):
        loss = (math.log10(t.learning_rate) - math.log10(1.0 / t.steps)) ** 2 + 1.0
        return [[0, 6.0], [t.steps, loss + 0.001 * t.seed]]

    cfg = config(["sgd"], lr_grids={"sgd": [0.0025, 0.005, 0.01, 0.02, 0.04]}, train_steps=100)
    state, _ = run(cfg, fn)
    assert state["selections"]["sgd"]["chosen"]["learning_rate"] == 0.01
    assert {t["steps"] for t in state["trials"]} == {100}


def test_a_flat_grid_is_reported_as_a_tie_and_a_peaked_one_is_not(run):
    # Seed noise 0.05 per seed: sd of seeds 0..2 = 0.05. Flat: the grid's scores differ
    # by < 0.01; peaked: by >= 0.25.
    def make(scale):
        def fn(t):
            loss = 1.0 + scale * (math.log10(t.learning_rate) - math.log10(0.03)) ** 2
            return [[0, 6.0], [t.steps, loss + 0.05 * t.seed]]
        return fn

    cfg = config(["sgd"], lr_grids={"sgd": [0.01, 0.03, 0.1]})
    flat, _ = run(cfg, make(0.02))
    assert flat["finals"]["sgd"]["sd"] == pytest.approx(0.05)
    assert flat["selections"]["sgd"]["tied_learning_rates"] == [0.01, 0.03, 0.1]
    doc = sweep_report.results_document(flat, meta(cfg))
    assert "**tie: 0.01 .. 0.1 within 1 seed sd**" in sweep_report.markdown_table(doc, "t")
    peaked, _ = run(cfg, make(1.0))
    assert peaked["selections"]["sgd"]["tied_learning_rates"] == [0.03]
    doc = sweep_report.results_document(peaked, meta(cfg))
    assert "tie:" not in sweep_report.markdown_table(doc, "t")


def test_ranking_marks_optimizers_within_one_sd_as_tied():
    rows = [dict(optimizer="sgd", final=dict(mean=5.50, sd=0.05, n=3)),
            dict(optimizer="adam", final=dict(mean=5.53, sd=0.01, n=3)),
            dict(optimizer="cclip", final=dict(mean=5.80, sd=0.02, n=3))]
    line = sweep_report.ranking_line(rows)
    assert "adam 5.5300 (+0.0300, tie: within 1 sd)" in line
    assert "cclip 5.8000 (+0.3000)" in line


def test_arms_each_get_a_rate_search_and_the_best_arm_wins(run):
    def fn(t):
        opts = dict(t.options)
        out = objective(t)
        out["curve"][-1][1] += 2.0 * (opts["beta_2"] - 0.95) + 0.001 * opts["warmup_steps"]
        return out

    arms = [dict(beta_2=b, warmup_steps=w) for b in (0.95, 0.999) for w in (0, 50)]
    cfg = config(["adam"], option_grids={"adam": arms})
    state, _ = run(cfg, fn)
    sel = state["selections"]["adam"]
    assert sel["chosen"]["options"] == {"beta_2": 0.95, "warmup_steps": 0}
    assert sel["chosen"]["learning_rate"] == 3.162e-3
    assert len(sel["arms"]) == 4 and len({a["trials"] for a in sel["arms"]}) == 1
    assert sel["trials"] == sum(a["trials"] for a in sel["arms"])
    finals = [t for t in state["trials"] if t["stage"] == "final"]
    assert all(t["options"] == {"beta_2": 0.95, "warmup_steps": 0} for t in finals)
    assert len({t["name"] for t in state["trials"]}) == len(state["trials"])


def test_program_selects_on_the_fixed_training_examples(tmp_path, fake):
    fv = sweep_flags(tmp_path / "s", "--optimizers=sgd", "--lr_grid=sgd=0.05/0.5/5",
                     "--objective=fixed_train",
                     "--trainer_flags=--train_steps=40 --fixed_train_examples=16",
                     "--option_grid=sgd:beta_2=0.95/0.999")
    doc = sweep_program.run_sweep(fv, command=fake)
    # The held-out loss prefers 0.05, the training loss 0.5 (and beta_2 0.95).
    chosen = doc["selections"]["sgd"]["chosen"]
    assert chosen["learning_rate"] == 0.5 and chosen["options"] == {"beta_2": 0.95}
    final = doc["finals"]["sgd"]
    assert final["mean"] == pytest.approx(final["fixed_train"]["mean"])
    assert final["held_out"]["mean"] > final["fixed_train"]["mean"]
    log = (tmp_path / "s" / "sgd" / "lr0.5_beta_2-0.95_seed0_validation_40steps" /
           "trainer.log").read_text()
    assert "--beta_2=0.95" in log
    table = (tmp_path / "s" / "results.md").read_text()
    assert "Objective: **fixed_train**" in table and "| beta_2 0.95 |" in table
    # Without --fixed_train_examples there is no such metric: one clear error.
    fv = sweep_flags(tmp_path / "t", "--optimizers=sgd", "--objective=fixed_train")
    with pytest.raises(cli.TrainerError, match="set --fixed_train_examples"):
        sweep_program.run_sweep(fv, command=fake)


@pytest.mark.parametrize("item, message", [
    ("adam=0.9", "is not optimizer:flag"), ("adam:seed=1/2", "may not set --seed"),
    ("adam:beta_2=x", "is not a /-separated list"), ("lion:beta_2=0.9", "not in --optimizers")])
def test_option_grid_errors(tmp_path, fake, item, message):
    fv = sweep_flags(tmp_path, "--optimizers=sgd,adam", f"--option_grid={item}",
                     "--lr_grid=sgd=0.1,adam=1e-3")
    with pytest.raises(cli.TrainerError, match=message):
        sweep_program.run_sweep(fv, command=fake)
