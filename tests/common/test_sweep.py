"""The sweep (trainers/common/sweep.py, sweep_report.py, the program trainers/sweep.py)
on cheap objectives: a pure Python trial function instead of a trainer, and a
tiny fake trainer script (plain Python, the real metrics.jsonl/summary.json
format) for the subprocess path. No TensorFlow is run here."""

import json
import math
import os
import sys
import textwrap

import numpy as np
import pytest
from absl import flags

from trainers import sweep as sweep_program
from trainers.common import cli
from trainers.common import sweep as S
from trainers.common import sweep_report

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


def run(cfg, fn=objective, previous=()):
    runner = S.FunctionRunner(fn)
    sweep = S.Sweep(runner, cfg, previous)
    return sweep, sweep.run(), runner


def test_log_grid_is_centred_and_log_spaced():
    grid = S.log_grid(1e-3, math.sqrt(10), 5)
    assert grid == [1e-4, 3.162e-4, 1e-3, 3.162e-3, 1e-2]
    assert S.log_grid(0.1, 3, 4) == [S.round_sig(0.1 * 3 ** k) for k in (-1.5, -0.5, 0.5, 1.5)]
    assert S.geometric_centre([10, 0.1, 1]) == 1


def test_extension_moves_the_best_inside_the_grid():
    cfg = config(["adam"], lr_grids={"adam": [1e-2, 3.162e-2, 0.1, 0.3162]})
    sweep, state, _ = run(cfg, lambda t: objective(t, optima={"adam": 1e-3}))
    search = state["selections"]["adam"]["lr_search"]
    # 3.163e-3, 1e-3 (still the edge), then 3.162e-4 (worse): 1e-3 is inside.
    assert search["extensions"] == 3
    assert search["values"][0] < search["best"] < search["values"][-1]
    assert state["selections"]["adam"]["chosen"]["learning_rate"] == pytest.approx(1e-3)
    assert not search["at_edge"] and not search["bound_hit"]


def test_extension_bound_is_recorded():
    cfg = config(["adam"], max_extensions=2, divergence_margin=100.0)
    _, state, _ = run(cfg, lambda t: objective(t, optima={"adam": 1e-9}))
    search = state["selections"]["adam"]["lr_search"]
    assert search["extensions"] == 2 and search["bound_hit"] and search["at_edge"]
    assert search["best"] == search["values"][0] == S.round_sig(1e-4 / 10)


def test_a_one_point_grid_is_fixed():
    cfg = config(["gclip"], lr_grids={"gclip": [0.1]}, tau_grids={"gclip": (5.0,)})
    _, state, runner = run(cfg)
    sel = state["selections"]["gclip"]
    assert sel["chosen"]["learning_rate"] == 0.1 and sel["chosen"]["tau"] == 5.0
    # Nothing to choose: no validation run, only the seeds on the test split.
    assert sel["chosen"]["fixed"] and sel["chosen"]["validation_loss"] is None
    assert sel["lr_search"] is None and sel["tau_search"] is None
    assert runner.calls == 3
    doc = sweep_report.results_document(state, meta(cfg))
    assert "| 0.1 (fixed) | 5 (fixed) |" in sweep_report.markdown_table(doc, "t")


def test_selection_uses_validation_not_test():
    # The test split prefers another rate; the choice must follow validation.
    test_optima = {"sgd": 1.0, "adam": 1e-4}
    cfg = config()
    _, state, _ = run(cfg, lambda t: objective(t, test_optima=test_optima))
    assert state["selections"]["sgd"]["chosen"]["learning_rate"] == 0.03162  # nearest 0.05
    assert state["selections"]["adam"]["chosen"]["learning_rate"] == 3.162e-3
    grid = [t for t in state["trials"] if t["stage"] == "lr"]
    finals = [t for t in state["trials"] if t["stage"] == "final"]
    # Screens run the full budget (the seeded runs' schedule), never a truncated one.
    assert grid and all(t["split"] == "validation" and t["steps"] == 100 for t in grid)
    assert len(finals) == 2 * 3
    assert all(t["split"] == "test" and t["steps"] == 100 for t in finals)
    assert sorted(t["seed"] for t in finals if t["optimizer"] == "sgd") == [0, 1, 2]


def test_seed_aggregates_match_numpy():
    cfg = config(["sgd"], seeds=4)
    _, state, _ = run(cfg)
    final = state["finals"]["sgd"]
    losses = [t["final_loss"] for t in state["trials"] if t["stage"] == "final"]
    assert len(losses) == 4 and final["n"] == 4 and final["diverged"] == 0
    np.testing.assert_allclose(final["mean"], np.mean(losses), rtol=1e-12)
    np.testing.assert_allclose(final["sd"], np.std(losses, ddof=1), rtol=1e-12)
    assert final["sd"] > 0


def test_diverged_runs_are_recorded_and_never_selected():
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
    _, state, _ = run(cfg, fn)
    chosen = state["selections"]["sgd"]["chosen"]
    assert chosen["learning_rate"] == 0.1
    diverged = {t["learning_rate"]: t["divergence_reason"] for t in state["trials"]
                if t["diverged"]}
    assert set(diverged) == {0.3162, 1.0}
    assert "exited 1" in diverged[1.0] and "initial" in diverged[0.3162]
    search = state["selections"]["sgd"]["lr_search"]
    assert search["scores"][-2:] == [math.inf, math.inf]
    assert state["finals"]["sgd"]["diverged"] == 0


def test_all_diverged_extends_downwards_then_reports_no_choice():
    cfg = config(["sgd"], max_extensions=2)
    _, state, runner = run(cfg, lambda t: [[0, 6.0], [t.steps, float("nan")]])
    search = state["selections"]["sgd"]["lr_search"]
    assert search["best"] is None and search["bound_hit"] and search["extensions"] == 2
    assert search["values"][0] == S.round_sig(0.01 / 10)
    assert state["selections"]["sgd"]["chosen"] is None and state["finals"]["sgd"] is None
    assert runner.calls == 5 + 2  # no seeds for a setting that does not exist
    doc = sweep_report.results_document(state, meta(cfg))
    assert "all diverged" in sweep_report.markdown_table(doc, "t")


def test_tau_stage_search_at_the_chosen_rate():
    cfg = config(["gclip"])
    _, state, _ = run(cfg)
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


def test_tau_grid_not_grown_past_a_tau_that_clipped_nothing():
    cfg = config(["gclip"], tau_grids={"gclip": (1.0, 3.0, 10.0)})

    def fn(t):  # loss falls with tau: clipping only hurts here
        out = objective(t)
        if t.tau is not None:
            out["curve"][-1][1] = out["curve"][-1][1] - 0.1 * t.tau
        return out

    _, state, _ = run(cfg, fn)
    tau = state["selections"]["gclip"]["tau_search"]
    assert tau["best"] == 10.0 and tau["extensions"] == 0
    assert "clipped nothing" in tau["stopped"]


def test_tau_cross_search_finds_the_joint_optimum():
    cfg = config(["gclip"], tau_search="cross", tau_grids={"gclip": (0.03, 0.3, 3.0)})
    _, state, _ = run(cfg)
    chosen = state["selections"]["gclip"]["chosen"]
    assert chosen["tau"] == 0.3 and chosen["learning_rate"] == 0.3162
    lr_taus = {t["tau"] for t in state["trials"] if t["stage"] == "lr"}
    assert lr_taus == {0.03, 0.3, 3.0}


def test_rerun_reuses_finished_trials(tmp_path):
    cfg = config(["sgd", "gclip"])
    sweep, state, runner = run(cfg)
    assert runner.calls == len(state["trials"]) > 10
    path = tmp_path / "results.json"
    sweep_report.write_results(str(path), state, meta(cfg))
    previous = sweep_report.load_results(str(path))["trials"]
    again, state2, runner2 = run(cfg, previous=previous)
    assert runner2.calls == 0
    assert all(t["reused"] for t in state2["trials"])
    assert state2["selections"] == json.loads(json.dumps(sweep_report.jsonable(
        state["selections"])))
    assert state2["finals"]["sgd"]["mean"] == pytest.approx(state["finals"]["sgd"]["mean"])
    # Half a sweep (the first optimizer's trials only): the rest runs, nothing twice.
    half = [t for t in previous if t["optimizer"] == "sgd"]
    _, _, runner3 = run(cfg, previous=half)
    assert runner3.calls == len(previous) - len(half)


def test_eta_counts_the_planned_steps():
    cfg = config(["sgd"], seeds=3)
    etas = []

    def fn(t):
        return {"curve": objective(t)["curve"], "wall_seconds": 0.01 * t.steps}

    sweep = S.Sweep(S.FunctionRunner(fn), cfg,
                    on_record=lambda r, s: etas.append((s.pending_steps(), s.eta_seconds())))
    sweep.run()
    # After the first trial: 4 more grid points + 3 seeds, all of the full 100 steps.
    assert etas[0][0] == 4 * 100 + 3 * 100
    assert etas[0][1] == pytest.approx(0.01 * etas[0][0])
    assert etas[-1] == (0, 0.0)


def meta(cfg, perplexity=True):
    return dict(program="fake", trainer_flags="--train_steps=100", metric="loss",
                objective=cfg.objective, perplexity=perplexity, config=vars(cfg).copy())


def test_outputs_json_table_and_plot(tmp_path):
    cfg = config(["sgd", "adam", "gclip"])
    _, state, _ = run(cfg, lambda t: objective(t, diverge_above=0.5))
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
    """A stand-in trainer: writes metrics.jsonl and summary.json as trainers do."""
    import argparse, json, math, os, sys
    p = argparse.ArgumentParser()
    for name in ("model_dir", "optimizer", "eval_split", "corpus"):
        p.add_argument("--" + name)
    for name in ("learning_rate", "tau", "beta_2"):
        p.add_argument("--" + name, type=float)
    p.add_argument("--fixed_train_examples", type=int, default=0)
    for name in ("seed", "train_steps"):
        p.add_argument("--" + name, type=int)
    p.add_argument("--noexport", dest="export", action="store_false")
    p.add_argument("--show_optimizer_settings", action="store_true")
    a = p.parse_args()
    if a.show_optimizer_settings:  # the fake family's settings: off the sweeps' optima
        if a.optimizer not in ("sgd", "gclip"):
            print("error: unknown optimizer " + a.optimizer, file=sys.stderr); sys.exit(1)
        print(json.dumps({"optimizer": a.optimizer, "learning_rate": 0.2, "momentum": 0.9,
                          **({"tau": 3.0} if a.optimizer == "gclip" else {})}))
        sys.exit(0)
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
    with open(os.path.join(a.model_dir, "metrics.jsonl"), "w") as f:
        for step, value, fixed in ((0, 6.0, 6.1), (a.train_steps, loss, train)):
            rec = {"step": step, "examples_seen": step * 8, "eval_loss": value}
            if a.fixed_train_examples:
                rec["fixed_train_loss"] = fixed
            if a.tau is not None and step:
                rec["clip_fraction"] = 0.25
            f.write(json.dumps(rec) + "\\n")
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
    assert len(lines) == len(doc["trials"]) and "sweep ETA" in lines[0]
    for name in ("results.json", "results.md", "results.png"):
        assert (model_dir / name).exists()
    assert "test perplexity" not in (model_dir / "results.md").read_text()  # not an LM

    # A rerun runs nothing: results.json has every trial.
    calls_before = sum(1 for _ in model_dir.rglob("calls.txt"))
    doc2 = sweep_program.run_sweep(sweep_flags(model_dir), command=fake)
    assert "0 runs made" in capsys.readouterr().out
    assert doc2["selections"] == doc["selections"]
    # Without results.json the finished runs' summary.json are found: still nothing runs.
    os.remove(model_dir / "results.json")
    sweep_program.run_sweep(sweep_flags(model_dir), command=fake)
    assert "0 runs made" in capsys.readouterr().out
    assert sum(1 for _ in model_dir.rglob("calls.txt")) == calls_before
    assert all(p.read_text() == "x\n" for p in model_dir.rglob("calls.txt"))


def test_family_settings_run_the_trainers_own_values_without_a_search(tmp_path, fake):
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
    # A grid beside it, or an optimizer the trainer refuses: one error line each.
    for extra, message in ((["--optimizers=sgd", "--lr_grid=sgd=0.1"], "drop --lr_grid"),
                           (["--optimizers=adam"], "unknown optimizer adam")):
        fv = flags.FlagValues()
        sweep_program.define_flags(fv)
        fv(["sweep", f"--model_dir={tmp_path / 'other'}", *base, *extra])
        with pytest.raises(cli.TrainerError, match=message):
            sweep_program.run_sweep(fv, command=fake)


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
    sweep_program.run_sweep(sweep_flags(tmp_path / "e", "--optimizers=sgd", "--seeds=1"),
                            command=fake)
    with pytest.raises(cli.TrainerError, match="trainer_flags="):
        sweep_program.run_sweep(sweep_flags(tmp_path / "e", "--optimizers=sgd", "--seeds=1",
                                            "--trainer_flags=--train_steps=80"), command=fake)


def test_seed_counts_are_per_optimizer_when_trial_names_coincide():
    # sgd and adam at the same fixed rate give trials of the same name; each row
    # counts only its own optimizer's seeds.
    cfg = config(["sgd", "adam"], lr_grids={"sgd": [1e-3], "adam": [1e-3]}, seeds=2)
    _, state, _ = run(cfg)
    doc = sweep_report.results_document(state, meta(cfg))
    rows = {r["optimizer"]: r for r in sweep_report.table_rows(doc)}
    assert rows["sgd"]["seed_runs"] == 2 and rows["adam"]["seed_runs"] == 2


def test_full_budget_screens_choose_the_budgets_best_rate():
    # The best rate depends on the budget (1 / steps): a 20-step screen would pick 0.05,
    # the 100-step budget wants 0.01. Every screen runs the full budget, so 0.01 wins.
    def fn(t):
        loss = (math.log10(t.learning_rate) - math.log10(1.0 / t.steps)) ** 2 + 1.0
        return [[0, 6.0], [t.steps, loss + 0.001 * t.seed]]

    cfg = config(["sgd"], lr_grids={"sgd": [0.0025, 0.005, 0.01, 0.02, 0.04]}, train_steps=100)
    _, state, _ = run(cfg, fn)
    assert state["selections"]["sgd"]["chosen"]["learning_rate"] == 0.01
    assert {t["steps"] for t in state["trials"]} == {100}


def test_a_flat_grid_is_reported_as_a_tie_and_a_peaked_one_is_not():
    # Seed noise 0.05 per seed: sd of seeds 0..2 = 0.05. Flat: the grid's scores differ
    # by < 0.01; peaked: by >= 0.25.
    def make(scale):
        def fn(t):
            loss = 1.0 + scale * (math.log10(t.learning_rate) - math.log10(0.03)) ** 2
            return [[0, 6.0], [t.steps, loss + 0.05 * t.seed]]
        return fn

    cfg = config(["sgd"], lr_grids={"sgd": [0.01, 0.03, 0.1]})
    _, flat, _ = run(cfg, make(0.02))
    assert flat["finals"]["sgd"]["sd"] == pytest.approx(0.05)
    assert flat["selections"]["sgd"]["tied_learning_rates"] == [0.01, 0.03, 0.1]
    doc = sweep_report.results_document(flat, meta(cfg))
    assert "**tie: 0.01 .. 0.1 within 1 seed sd**" in sweep_report.markdown_table(doc, "t")
    _, peaked, _ = run(cfg, make(1.0))
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


def test_arms_each_get_a_rate_search_and_the_best_arm_wins():
    def fn(t):
        opts = dict(t.options)
        out = objective(t)
        out["curve"][-1][1] += 2.0 * (opts["beta_2"] - 0.95) + 0.001 * opts["warmup_steps"]
        return out

    arms = [dict(beta_2=b, warmup_steps=w) for b in (0.95, 0.999) for w in (0, 50)]
    cfg = config(["adam"], option_grids={"adam": arms})
    _, state, _ = run(cfg, fn)
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
