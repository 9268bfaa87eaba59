"""bench/gpu_crossover.py: the GPU path of the crossover runs with Keras on JAX and no
TensorFlow (here on the CPU, tiny), and its export holds the trainer's own windows."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "gpu_crossover.py")

pytest.importorskip("jax")


def synthetic_windows(path, vocab=40, length=8):
    """Zipf tokens with one learnable rule (3 is followed by 5), cut into windows."""
    rng = np.random.default_rng(0)
    p = 1 / np.arange(1, vocab + 1)
    stream = rng.choice(vocab, size=12000, p=p / p.sum()).astype(np.int32)
    stream[1:][stream[:-1] == 3] = 5
    n = (len(stream) - 1) // length
    windows = stream[np.arange(n)[:, None] * length + np.arange(length + 1)[None, :]]
    meta = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                vocab_size=vocab, seq_length=length, dropout=0.0, fixed_train_examples=32,
                trainer_flags="synthetic")
    np.savez_compressed(path, train=windows[:1200], held_out=windows[1200:1300],
                        fixed_train=windows[:32], meta=json.dumps(meta))


def run_without_tensorflow(*args):
    """The script's `run` in a process where importing TensorFlow fails."""
    code = ("import runpy, sys; sys.modules['tensorflow'] = None; "
            f"sys.argv = {[SCRIPT, 'run', *args]!r}; "
            f"runpy.run_path({SCRIPT!r}, run_name='__main__')")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_cells_run_on_jax_without_tensorflow_and_resume(tmp_path):
    synthetic_windows(tmp_path / "w.npz")
    args = (f"--data={tmp_path}/w.npz", f"--out={tmp_path}/out.json", "--batches=8",
            "--optimizers=sgd,adam", "--steps=12", "--seeds=2", "--curve_points=3",
            "--rates=sgd=0.15,adam=0.06")  # x sqrt(8/256): grids around 0.027 and 0.011
    p = run_without_tensorflow(*args)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["meta"]["backend"] == "jax"
    cells = {c["optimizer"]: c for c in doc["cells"]}
    assert set(cells) == {"sgd", "adam"}
    for name, c in cells.items():
        assert c["fixed_train"]["n"] == 2 and c["batch"] == 8
        assert len(c["grid"]) >= 3 and c["learning_rate"] in c["grid"]
        # the chosen rate is the best seed-0 screen of its grid
        screens = {r["learning_rate"]: r["fixed_train"] for r in doc["runs"]
                   if r["optimizer"] == name and r["seed"] == 0}
        assert c["learning_rate"] == min(screens, key=screens.get)
        seeds = [r for r in doc["runs"] if r["optimizer"] == name
                 and r["learning_rate"] == c["learning_rate"]]
        assert sorted(r["seed"] for r in seeds) == [0, 1]
        assert c["fixed_train"]["mean"] == pytest.approx(np.mean([r["fixed_train"] for r in seeds]))
        # it learned: below the step-0 loss (about log 40) on the fixed windows
        assert all(r["fixed_train"] < r["curve"][0]["fixed_train"] - 0.2 for r in seeds)
    table = (tmp_path / "out.md").read_text()
    assert "| 8 | 64 |" in table and "SGD - Adam" in table
    # A rerun of the same command trains nothing again.
    runs_before = len(doc["runs"])
    p = run_without_tensorflow(*args)
    assert p.returncode == 0 and " s)" not in p.stdout, p.stdout[-2000:]
    assert len(json.loads((tmp_path / "out.json").read_text())["runs"]) == runs_before


def test_the_export_holds_the_trainers_windows_and_shape(tmp_path):
    from trainers.common import config as config_lib
    from trainers.lm.task import CausalLMTask

    flags = ("--model_size=tiny --tokenizer=word --vocab_size=512 --seq_length=16 "
             "--fixed_train_examples=20 --max_documents=20")
    out = tmp_path / "w.npz"
    p = subprocess.run([sys.executable, SCRIPT, "export", f"--out={out}",
                        f"--trainer_flags={flags}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    exported = np.load(out)
    meta = json.loads(str(exported["meta"]))
    experiment = config_lib.experiment_from_args(
        "trainers.causal_lm", CausalLMTask, [f"--model_dir={tmp_path}/m", *flags.split()])
    os.makedirs(tmp_path / "m")
    task = CausalLMTask(experiment, str(tmp_path / "m"), True)
    np.testing.assert_array_equal(exported["train"], task.data.train_windows)
    np.testing.assert_array_equal(exported["held_out"], task.data.eval_windows)
    np.testing.assert_array_equal(exported["fixed_train"], task.data.fixed_train_windows(20))
    assert meta["vocab_size"] == len(task.vocab) and meta["seq_length"] == 16
    assert (meta["num_layers"], meta["hidden_dim"], meta["num_heads"],
            meta["intermediate_dim"]) == (2, 128, 2, 512)
