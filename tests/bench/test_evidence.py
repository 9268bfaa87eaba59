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
    """The trainers' per-family settings (which make demo and trainers.compare run) are
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
