"""A real tiny causal-LM sweep on Optuna, its trials in this process (issue 21): two
optimizers x two rates and the chosen rates' seeds, each trial `runner.train` on the base
experiment with its values, its evaluations reported to the study as they happen."""

import json
import math

import optuna
import pytest

from trainers.common import config
from trainers.common import study
from trainers.lm.task import CausalLMTask

STEPS = 8
BASE = ["--num_layers=1", "--hidden_dim=16", "--num_heads=2", "--intermediate_dim=32",
        "--seq_length=16", "--global_batch_size=8", "--steps_per_loop=4", "--eval_every=4",
        "--eval_batches=2", "--fixed_train_examples=16", "--vocab_size=200", "--dropout=0",
        "--checkpoint_every=0", "--noexport", "--strategy=one_device",
        "--lr_schedule=linear_decay", "--deterministic", "--nojit_compile", f"--train_steps={STEPS}"]
GRIDS = {"sgd": [0.25, 0.5], "adam": [2e-3, 4e-3]}


def test_a_bad_trainer_setting_is_one_line():
    with pytest.raises(config.TrainerError, match="trainers.causal_lm: .*no_such_flag"):
        config.experiment_from_args("trainers.causal_lm", CausalLMTask,
                                    ["--model_dir=x", "--no_such_flag=1"])
    base = config.experiment_from_args("trainers.causal_lm", CausalLMTask, ["--model_dir=x"])
    with pytest.raises(config.TrainerError, match="has no setting --no_such_setting"):
        base.with_values(no_such_setting=1)
    assert base.with_values(learning_rate=0.5, seed=3, eval_split="test") == base.replace(
        optimizer={"learning_rate": 0.5}, run={"seed": 3}, task={"eval_split": "test"})


def test_the_sweep_program_runs_a_tiny_lm_sweep_in_process(tmp_path, small_corpus, capsys):
    """trainers.sweep end to end with --trials=in_process: 2 optimizers x 2 rates on the
    validation split, the chosen rate's seed on the test split, every trial a run of this
    process written where a subprocess trial would write it."""
    from absl import flags

    from trainers import sweep as sweep_program

    fv = flags.FlagValues()
    sweep_program.define_flags(fv)
    grid = ",".join(f"{name}={'/'.join(f'{v:g}' for v in values)}"
                    for name, values in GRIDS.items())
    fv(["sweep", "--program=causal_lm", f"--model_dir={tmp_path}", "--optimizers=sgd,adam",
        f"--lr_grid={grid}", "--max_extensions=0", "--seeds=1", "--trials=in_process",
        "--objective=fixed_train", "--trainer_flags=" + " ".join([f"--corpus={small_corpus}",
                                                                   *BASE])])
    doc = sweep_program.run_sweep(fv)
    out = capsys.readouterr().out
    assert doc["meta"]["trials"] == "in_process"
    assert "(6 trials run by this worker, 0 from the study)" in out
    assert "per-trial overhead (wall - training)" in out
    for name, grid in GRIDS.items():
        screens = sorted((t for t in doc["trials"] if t["optimizer"] == name
                          and t["split"] == "validation"), key=lambda t: t["learning_rate"])
        assert [t["learning_rate"] for t in screens] == grid
        best = min(screens, key=lambda t: t["final_loss"])
        assert doc["selections"][name]["chosen"]["learning_rate"] == best["learning_rate"]
        [seed] = [t for t in doc["trials"] if t["optimizer"] == name and t["split"] == "test"]
        assert seed["learning_rate"] == best["learning_rate"] and seed["seed"] == 0
        for t in screens + [seed]:
            run_dir = tmp_path / name / t["name"]
            metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text()
                       .splitlines()]
            assert [[m["step"], m["fixed_train_loss"]] for m in metrics] == t["curve"]
            assert [s for s, _ in t["curve"]] == [0, 4, STEPS]
            recorded = json.loads((run_dir / "config.json").read_text())
            assert recorded["optimizer"]["learning_rate"] == t["learning_rate"]
            assert recorded["task"]["eval_split"] == t["split"]
            assert "step" in (run_dir / "trainer.log").read_text()  # the trainer's lines
        assert doc["finals"][name]["n"] == 1
        for t in screens:
            assert not t["diverged"] and not t["pruned"] and t["score"] == t["final_loss"]
            assert [s for s, _ in t["held_out_curve"]] == [0, 4, STEPS]
            assert t["final_loss"] == t["curve"][-1][1] < t["curve"][0][1]  # it trained
    assert (tmp_path / "results.md").exists() and (tmp_path / "results.png").exists()
    # Every evaluation reached the study as it happened (what a pruner reads): 6 trials
    # of 3 evaluations, in the sweep's studies.
    storage = study.make_storage(model_dir=str(tmp_path))
    reported = [t.intermediate_values for name in optuna.get_all_study_names(storage)
                for t in optuna.load_study(study_name=name, storage=storage).get_trials()
                if t.intermediate_values]
    assert len(reported) == 6 and all(sorted(r) == [0, 4, STEPS] for r in reported)
    assert all(math.isfinite(v) for r in reported for v in r.values())
    # --deterministic held for each trial only: the process is as before (Keras refuses
    # jit_compile under op determinism, which broke a later test in the same process).
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()
