"""bench/evidence.py: the plan of `make evidence` (no training: the stages' commands only)."""

import importlib.util
import json
import os
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def evidence():
    spec = importlib.util.spec_from_file_location(
        "evidence_plan", os.path.join(ROOT, "bench", "evidence.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_ladder(runs, chosen):
    path = os.path.join(runs, "lm_ladder")
    os.makedirs(path)
    doc = {"selections": {name: {"chosen": {"learning_rate": lr, "tau": tau}}
                          for name, (lr, tau) in chosen.items()}}
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump(doc, f)


def flag(argv, name):
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def test_fixed_grids_pin_rate_and_only_the_taus_that_exist(evidence):
    assert evidence.fixed_grids({"sgd": (0.1, None), "gclip": (3.0, 0.1)}) == [
        "--lr_grid=sgd=0.1,gclip=3", "--tau_grid=gclip=0.1"]
    assert evidence.fixed_grids({"adam": (0.009, None)}) == ["--lr_grid=adam=0.009"]


def test_axes_take_the_ladders_choices_once_it_has_run(evidence, tmp_path):
    runs = str(tmp_path)
    # Before the ladder: the quick ladder's fixed rates.
    before = evidence._large_batch(runs)[0]
    assert flag(before, "lr_grid") == (f"sgd={evidence.QUICK_RATES['sgd']:g},"
                                       f"adam={evidence.QUICK_RATES['adam']:g}")
    write_ladder(runs, {"sgd": (0.1, None), "adam": (0.009, None), "acclip": (1.0, None),
                        "acclip_norm": (0.001, None)})
    for argv in (evidence._large_batch(runs) + evidence._vocabulary_axis(runs)
                 + evidence._wordpiece(runs)):
        if flag(argv, "optimizers") == "adam":  # the vocabulary's check of Adam's rate
            assert flag(argv, "lr_grid") == "adam=0.001"
        else:
            assert flag(argv, "lr_grid") == "sgd=0.1,adam=0.009"
        trainer = shlex.split(flag(argv, "trainer_flags"))
        # The ladder's budget, so each cell reads against the ladder's row.
        assert f"--train_steps={evidence.LADDER_STEPS}" in trainer
    start = evidence._acclip_start(runs)[0]
    assert flag(start, "lr_grid") == "acclip=1,acclip_norm=0.001"
    assert "--acclip_initial_tau=1e-6" in shlex.split(flag(start, "trainer_flags"))


def test_axes_change_only_their_own_axis(evidence, tmp_path):
    ladder = shlex.split(evidence.LM_FLAGS)
    big = shlex.split(flag(evidence._large_batch(str(tmp_path))[0], "trainer_flags"))
    assert set(ladder) - set(big) == {"--global_batch_size=32"}
    vocab = [shlex.split(flag(c, "trainer_flags"))
             for c in evidence._vocabulary_axis(str(tmp_path))]
    sizes = sorted(int(a.split("=")[1]) for v in vocab for a in v
                   if a.startswith("--vocab_size="))
    assert sizes == [2048, 2048, 32768, 32768]
    for v in vocab:
        assert set(ladder) - set(v) == {"--vocab_size=8192"}
    pieces = shlex.split(flag(evidence._wordpiece(str(tmp_path))[0], "trainer_flags"))
    assert set(ladder) - set(pieces) == {"--tokenizer=word"}
    assert "--tokenizer=wordpiece" in pieces


def test_a_committed_sweep_joins_its_stages_studies(evidence, tmp_path, monkeypatch):
    """A stage whose sweep's results.json is committed under docs/figures/evidence imports
    its trials (--import_results); its other commands, and stages without one, do not."""
    monkeypatch.setattr(evidence, "FIGURES", str(tmp_path / "figures"))
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "lm_ladder.json").write_text("{}")
    runs = str(tmp_path / "runs")
    stages = {s.name: s for s in evidence.STAGES}
    [ladder] = stages["lm_ladder"].commands(runs)
    assert evidence.with_committed_trials(ladder, stages["lm_ladder"], runs) == ladder + [
        f"--import_results={tmp_path}/figures/lm_ladder.json"]
    [quick] = stages["lm_ladder_quick"].commands(runs)
    assert evidence.with_committed_trials(quick, stages["lm_ladder_quick"], runs) == quick
    rates = stages["rates"].commands(runs)[0]
    assert evidence.with_committed_trials(rates, stages["rates"], runs) == rates


def test_stage_names_and_output_names_are_unique(evidence):
    names = [s.name for s in evidence.STAGES]
    assert len(names) == len(set(names))
    targets = [dst for s in evidence.STAGES for _, dst in s.outputs]
    assert len(targets) == len(set(targets))


def test_unknown_stage_is_one_error_line(evidence):
    with pytest.raises(SystemExit, match="^error: unknown stage"):
        evidence.main(["--only=lm_ladder,nope", "--list"])


@pytest.mark.parametrize("results, task", [
    ("lm_ladder", "trainers.lm.task:CausalLMTask"),
    ("bert_table2", "trainers.bert.task:BertPretrainTask"),
])
def test_family_defaults_are_the_recorded_sweeps_choices(results, task):
    """The trainers' per-family settings (which make demo and trainers.sweep --family_settings run) are
    what the sweep behind docs/evidence.md chose: a new sweep must update both."""
    import importlib

    module, name = task.split(":")
    settings = getattr(importlib.import_module(module), name).optimizer_settings
    with open(os.path.join(ROOT, "docs", "figures", "evidence", f"{results}.json")) as f:
        selections = json.load(f)["selections"]
    for optimizer, selection in selections.items():
        chosen = selection["chosen"]
        assert settings[optimizer]["learning_rate"] == pytest.approx(chosen["learning_rate"])
        if chosen.get("tau") is not None:
            assert settings[optimizer]["tau"] == pytest.approx(chosen["tau"])


# --- issue 19: the crossover, the noise-free cell and their summaries ------------------

def load_bench(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sgd, adam, expected", [
    ((5.60, 0.01), (5.45, 0.02), "adam ahead"),       # 0.15 >= 0.1 and >= 3 x 0.02
    ((5.60, 0.01), (5.45, 0.06), "no difference"),    # 0.15 < 3 x 0.06
    ((5.60, 0.01), (5.55, 0.001), "no difference"),   # 0.05 < 0.1
    ((5.40, 0.02), (5.60, 0.03), "sgd ahead"),
])
def test_the_crossover_rule(sgd, adam, expected):
    crossover = load_bench("crossover")
    agg = lambda m, sd: dict(mean=m, sd=sd, n=3)  # noqa: E731
    assert crossover.verdict(agg(*sgd), agg(*adam)) == expected
    assert crossover.verdict(None, agg(*adam)) == "no difference"


def fake_crossover_results(path, batch, sgd, adam, committed_as=None):
    """A stage's results.json under `path`, or (`committed_as`) its committed copy there."""
    os.makedirs(path, exist_ok=True)
    finals = {name: {"fixed_train": dict(mean=m, sd=sd, n=3), "held_out": dict(mean=m + 0.3,
                                                                          sd=sd, n=3),
                     "diverged": 0} for name, (m, sd) in (("sgd", sgd), ("adam", adam))}
    doc = {"meta": {"trainer_flags": f"--global_batch_size={batch} --train_steps=200",
                    "config": {"train_steps": 200}},
           "finals": finals,
           "selections": {n: {"chosen": {"learning_rate": 0.1, "options": {"beta_2": 0.95}}}
                          for n in finals}}
    with open(os.path.join(path, f"{committed_as}.json" if committed_as else "results.json"),
              "w") as f:
        json.dump(doc, f)


def test_crossover_summary_tables_every_finished_cell(tmp_path):
    crossover = load_bench("crossover")
    committed = tmp_path / "committed"
    fake_crossover_results(tmp_path / "lm_crossover_b16", 16, (5.6, 0.01), (5.65, 0.02))
    fake_crossover_results(tmp_path / "lm_crossover_b256", 256, (5.6, 0.01), (5.4, 0.02))
    fake_crossover_results(tmp_path / "lm_crossover_b16_v32768", 16, (6.0, 0.01), (5.0, 0.01))
    # Committed copies: b64 ran on another machine (used); b16's is older than the run here
    # (the run wins).
    fake_crossover_results(committed, 64, (5.9, 0.01), (5.5, 0.01), "lm_crossover_b64")
    fake_crossover_results(committed, 16, (9.0, 0.01), (9.0, 0.01), "lm_crossover_b16")
    crossover.main([f"--runs={tmp_path}", f"--committed={committed}"])
    rows = json.load(open(tmp_path / "lm_crossover.json"))
    assert [r["batch"] for r in rows] == [16, 64, 256]  # the other vocabulary stays out
    assert [r["sgd"]["fixed_train"]["mean"] for r in rows] == [5.6, 5.9, 5.6]
    rows = [rows[0], rows[2]]
    assert [r["verdict"] for r in rows] == ["no difference", "adam ahead"]
    assert rows[1]["gap_fixed_train"]["gap"] == pytest.approx(0.2)
    assert rows[1]["tokens_per_step"] == 256 * 64
    assert "| 256 | 16384 | 200 |" in (tmp_path / "lm_crossover.md").read_text()
    assert (tmp_path / "lm_crossover.png").read_bytes()[:4] == b"\x89PNG"


def test_larger_batches_keep_the_small_batchs_arm_and_scale_its_rate(evidence, tmp_path,
                                                                     monkeypatch):
    runs = str(tmp_path)
    monkeypatch.setattr(evidence, "FIGURES", str(tmp_path / "figures"))
    with pytest.raises(SystemExit, match="run its stage .lm_crossover_b16. first"):
        evidence._crossover(64, base_batch=16)(runs)
    fake_crossover_results(tmp_path / "lm_crossover_b16", 16, (5.6, 0.01), (5.5, 0.01))
    (argv,) = evidence._crossover(64, base_batch=16)(runs)
    assert flag(argv, "lr_grid") == "sgd=0.1/0.2/0.4,adam=0.1/0.2/0.4"  # 0.1 x sqrt(4)
    assert flag(argv, "option_grid") == "sgd:beta_2=0.95,adam:beta_2=0.95"
    trainer = shlex.split(flag(argv, "trainer_flags"))
    small = shlex.split(flag(evidence._crossover(16)(runs)[0], "trainer_flags"))
    # Only the batch (and the held-out batches that keep its slice the same) differ.
    assert set(trainer) ^ set(small) == {"--global_batch_size=64", "--global_batch_size=16",
                                         "--eval_batches=2", "--eval_batches=8"}
    assert flag(argv, "objective") == "fixed_train"
    assert "--fixed_train_examples=256" in trainer and "--train_steps=200" in trainer


def test_a_committed_cell_seeds_the_next_batchs_search(evidence, tmp_path, monkeypatch):
    """On a machine without the smaller cell's runs, its committed results.json gives
    the next cell's search (the cell finished elsewhere); the local one wins."""
    monkeypatch.setattr(evidence, "FIGURES", str(tmp_path / "figures"))
    fake_crossover_results(tmp_path / "committed", 16, (5.6, 0.01), (5.5, 0.01))
    os.makedirs(tmp_path / "figures")
    os.rename(tmp_path / "committed" / "results.json",
              tmp_path / "figures" / "lm_crossover_b16.json")
    runs = str(tmp_path / "runs")
    assert flag(evidence._crossover(64, base_batch=16)(runs)[0], "lr_grid") == \
        "sgd=0.1/0.2/0.4,adam=0.1/0.2/0.4"
    fake_crossover_results(tmp_path / "runs" / "lm_crossover_b16", 16, (5.6, 0.01), (5.5, 0.01))
    with open(tmp_path / "runs" / "lm_crossover_b16" / "results.json") as f:
        doc = json.load(f)
    doc["selections"]["sgd"]["chosen"]["learning_rate"] = 0.4
    with open(tmp_path / "runs" / "lm_crossover_b16" / "results.json", "w") as f:
        json.dump(doc, f)
    assert flag(evidence._crossover(64, base_batch=16)(runs)[0], "lr_grid").startswith(
        "sgd=0.4/0.8/1.6,")


def test_figure3a_reuses_the_16k_cells_sgd_and_adam_and_makes_clipping_act(
        evidence, tmp_path, monkeypatch):
    monkeypatch.setattr(evidence, "FIGURES", str(tmp_path / "figures"))
    runs = str(tmp_path)
    with pytest.raises(SystemExit, match="lm_crossover_b256"):
        evidence._figure3a(runs)
    fake_crossover_results(tmp_path / "lm_crossover_b64", 64, (5.6, 0.01), (5.5, 0.01))
    with open(tmp_path / "lm_crossover_b64" / "results.json") as f:
        doc = json.load(f)
    for c in doc["selections"].values():
        c["chosen"]["options"]["warmup_steps"] = 50
    with open(tmp_path / "lm_crossover_b64" / "results.json", "w") as f:
        json.dump(doc, f)
    fake_crossover_results(tmp_path / "lm_crossover_b256", 256, (5.6, 0.01), (5.4, 0.01))
    (argv,) = evidence._figure3a(runs)
    (b256,) = evidence._crossover(256, base_batch=64)(runs)
    # The same trainer flags as the 16k cell, whose trials join the studies: SGD's and
    # Adam's searches are that cell's (nothing of theirs runs again).
    assert flag(argv, "trainer_flags") == flag(b256, "trainer_flags")
    assert flag(argv, "import_results") == f"{tmp_path}/lm_crossover_b256/results.json"
    assert flag(argv, "lr_grid").startswith(flag(b256, "lr_grid") + ",")
    assert flag(argv, "option_grid").startswith(flag(b256, "option_grid") + ",")
    assert flag(argv, "objective") == "fixed_train" and flag(argv, "seeds") == "3"
    assert flag(argv, "optimizers").split(",") == ["sgd", "adam", "acclip_norm", "acclip",
                                                    "gclip", "cclip"]
    arms = flag(argv, "option_grid").split(",")
    for name in ("acclip", "acclip_norm"):  # clipping from the first step
        assert f"{name}:acclip_initial_tau=1e-6" in arms and f"{name}:epsilon=1e-6" in arms
    for name in ("acclip", "acclip_norm", "gclip", "cclip"):  # the baselines' warm-up
        assert f"{name}:warmup_steps=50" in arms
    lr_grids = dict(g.split("=") for g in flag(argv, "lr_grid").split(","))
    assert all(len(lr_grids[n].split("/")) == 3 for n in lr_grids)  # same trials each
    assert set(dict(g.split("=") for g in flag(argv, "tau_grid").split(","))) == {"gclip",
                                                                                "cclip"}


def test_every_stage_of_issue_19_chooses_on_the_training_loss(evidence, tmp_path):
    runs = str(tmp_path)
    fake_crossover_results(tmp_path / "lm_crossover_b16", 16, (5.6, 0.01), (5.5, 0.01))
    fake_crossover_results(tmp_path / "lm_crossover_b64", 64, (5.6, 0.01), (5.5, 0.01))
    for stage in evidence.STAGES:
        if stage.name.startswith(("lm_crossover_b", "lm_full_batch")):
            argv = stage.commands(runs)[0]
            assert flag(argv, "objective") == "fixed_train", stage.name
            assert "--screen_steps" not in " ".join(argv)
    full = shlex.split(flag(evidence._full_batch(runs)[0], "trainer_flags"))
    # The noise-free cell: the batch is the whole (fixed) training set, no dropout.
    assert {"--global_batch_size=128", "--train_windows=128", "--fixed_train_examples=128",
            "--dropout=0"} <= set(full)


def test_frequency_bucket_summary_reads_the_seeds_curves(tmp_path):
    buckets = load_bench("frequency_buckets")
    doc = {"meta": {"config": {"optimizers": ["sgd", "adam"]}},
           "selections": {n: {"chosen": {"learning_rate": 0.1}} for n in ("sgd", "adam")},
           "finals": {n: {"names": ["s0", "s1"]} for n in ("sgd", "adam")}}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    for name, rare in (("sgd", 9.0), ("adam", 7.0)):
        for seed, run in enumerate(("s0", "s1")):
            d = tmp_path / name / run
            d.mkdir(parents=True)
            lines = [json.dumps({"step": step, "fixed_train_loss_bucket0": rare - step + seed,
                                 "fixed_train_loss_bucket1": 5.0 - step})
                     for step in (0, 1)]
            (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    buckets.main([f"--sweep={tmp_path}"])
    table = (tmp_path / "frequency_buckets.md").read_text()
    # bucket 0: sgd 9.5 -> 8.5, adam 7.5 -> 6.5 (mean over the two seeds), gap +2.
    assert "| 0 | 9.500 | 8.500 | 7.500 | 6.500 | +2.000 |" in table
    assert (tmp_path / "frequency_buckets.png").read_bytes()[:4] == b"\x89PNG"


def test_the_demo_runs_the_1k_cell_at_its_tuned_settings(evidence, tmp_path):
    """`make demo` is the crossover's cheapest separating cell (1k tokens/step): its trainer
    flags are that cell's but for the evaluation cadence, --deterministic and the dropped
    frequency buckets, and SGD's and Adam's settings are what its sweep chose."""
    import subprocess

    out = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    lines = out.replace("\\\n", " ").splitlines()  # the recipe's continuation lines
    [command] = [line for line in lines if "trainers.sweep" in line]
    argv = shlex.split(command)
    (b16,) = evidence._crossover(16)(str(tmp_path))
    ours, cell = set(shlex.split(flag(argv, "trainer_flags"))), set(shlex.split(
        flag(b16, "trainer_flags")))
    assert {f.split("=")[0] for f in ours ^ cell} == {
        "--steps_per_loop", "--eval_every", "--checkpoint_every", "--frequency_buckets",
        "--deterministic"}
    assert flag(argv, "objective") == "fixed_train" and flag(argv, "seeds") == "1"
    rates = dict(item.split("=") for item in flag(argv, "lr_grid").split(","))
    options = {}
    for item in flag(argv, "option_grid").split(","):
        name, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        options.setdefault(name, {})[key] = float(value)
    with open(os.path.join(ROOT, "docs", "figures", "evidence", "lm_crossover_b16.json")) as f:
        selections = json.load(f)["selections"]
    for name in ("sgd", "adam"):
        chosen = selections[name]["chosen"]
        assert float(rates[name]) == pytest.approx(chosen["learning_rate"])
        assert options[name] == pytest.approx(chosen["options"])
    # ACClip(normalize): Adam's rate and warm-up, clipping from the first step.
    assert float(rates["acclip_norm"]) == float(rates["adam"])
    assert options["acclip_norm"] == {"acclip_initial_tau": 1e-6, "epsilon": 1e-6,
                                      "warmup_steps": options["adam"]["warmup_steps"]}


def test_the_clipping_ablation_reruns_figure3a_s_choice_with_tau_0_one(evidence, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(evidence, "FIGURES", str(tmp_path / "figures"))
    runs = str(tmp_path)
    with pytest.raises(SystemExit, match="lm_figure3a_b256 has no"):
        evidence._figure3a_noclip(runs)
    os.makedirs(tmp_path / "lm_figure3a_b256")
    chosen = {"learning_rate": 0.004, "options": {"acclip_initial_tau": 1e-6, "epsilon": 1e-6,
                                                  "warmup_steps": 50}}
    with open(tmp_path / "lm_figure3a_b256" / "results.json", "w") as f:
        json.dump({"selections": {"acclip_norm": {"chosen": chosen}}}, f)
    (argv,) = evidence._figure3a_noclip(runs)
    assert flag(argv, "optimizers") == "acclip_norm" and flag(argv, "seeds") == "3"
    assert flag(argv, "lr_grid") == "acclip_norm=0.004"  # one point: no search, 3 seeds
    assert flag(argv, "option_grid") == ("acclip_norm:acclip_initial_tau=1,"
                                         "acclip_norm:epsilon=1e-06,acclip_norm:warmup_steps=50")
    assert flag(argv, "trainer_flags") == evidence.crossover_flags(256)  # the 16k cell's


# A command that stands for a sweep: on SIGTERM it "saves" and stops with the restart status.
STOPPABLE = ("import signal, sys, time, pathlib\n"
             "signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))\n"
             "pathlib.Path(sys.argv[1]).touch()\n"
             "time.sleep(60)\n")
# evidence.py's stage runner in a process of its own, running that command.
RUNNER = ("import importlib.util, sys\n"
          "spec = importlib.util.spec_from_file_location('evidence_plan', sys.argv[1])\n"
          "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
          "stage = m.Stage('s', 'a stage', 1, lambda runs: [[sys.executable, '-c', sys.argv[2],"
          " sys.argv[3]]], ())\n"
          "m.run_stage(stage, sys.argv[4], sys.argv[4] + '/log')\n")


def test_sigterm_to_evidence_reaches_the_running_stage_and_stops_with_its_status(tmp_path):
    """SIGTERM to `make evidence` is passed on to the stage's command (a sweep saves its
    trial and exits 42); evidence.py then stops with 42 and one line, the stage not done."""
    import signal
    import subprocess
    import sys
    import time

    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", RUNNER, os.path.join(ROOT, "bench", "evidence.py"),
                          STOPPABLE, str(ready), str(tmp_path)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not ready.exists():
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 42, err[-2000:]
    assert err.strip().splitlines()[-1] == ("error: stage s stopped before its end (exit 42); "
                                            "rerun the same command to resume")
    assert not (tmp_path / "s.done.json").exists()


def test_a_stopped_stage_carried_by_its_saved_progress_resumes_elsewhere(evidence, tmp_path,
                                                                          monkeypatch):
    """--save_progress copies a stopped stage's sweep journal under the figures' progress/;
    on another machine (a fresh --runs) the stage starts from it and its finished trials
    are not run again (Optuna's journal, read back); the finished stage drops the copy."""
    from trainers.common import study as S

    assert evidence.STUDY_FILE == S.STUDY_FILE
    monkeypatch.setattr(evidence, "FIGURES", str(tmp_path / "figures"))
    monkeypatch.setattr(evidence, "PROGRESS", str(tmp_path / "figures" / "progress"))
    here, there = tmp_path / "here", tmp_path / "there"
    stage = evidence.Stage("s", "a stage", 1, lambda runs: [], (("sw/results.json", "s.json"),))
    ran = []

    def train(settings, report):
        ran.append(settings["learning_rate"])
        return [[0, 6.0], [100, 1.0 + settings["learning_rate"]]]

    (here / "sw").mkdir(parents=True)  # made by the sweep
    S.run_grid(S.open_study("g", model_dir=here / "sw"), [1.0, 2.0], train, budget=100,
               max_extensions=0)
    [saved] = evidence.save_progress(stage, str(here))
    assert saved == str(tmp_path / "figures" / "progress" / "sw.study.journal")
    assert evidence.restore_progress(stage, str(there)) == [str(there / "sw" / "study.journal")]
    assert evidence.restore_progress(stage, str(there)) == []  # a journal there is kept
    result = S.run_grid(S.open_study("g", model_dir=there / "sw"), [1.0, 2.0, 4.0], train,
                        budget=100, max_extensions=0)
    assert ran == [1.0, 2.0, 4.0] and result["best"] == 1.0  # 1 and 2 ran here only

    (there / "sw" / "results.json").write_text("{}")
    evidence.run_stage(stage, str(there), str(there / "log"))
    assert (tmp_path / "figures" / "s.json").exists() and not os.path.exists(saved)

    # The flag: the named stage's journal under --runs, copied; a finished stage's is not.
    name = "lm_crossover_b256_v32768"
    (here / name).mkdir()
    (here / name / "study.journal").write_text("journal\n")
    evidence.main([f"--only={name}", f"--runs={here}", "--save_progress"])
    assert (tmp_path / "figures" / "progress" / f"{name}.study.journal").read_text() == "journal\n"
    os.remove(tmp_path / "figures" / "progress" / f"{name}.study.journal")
    (here / f"{name}.done.json").write_text("{}")
    evidence.main([f"--only={name}", f"--runs={here}", "--save_progress"])
    assert not (tmp_path / "figures" / "progress" / f"{name}.study.journal").exists()
