"""trainers/gradient_noise.py: BERT at init and at checkpoints, ResNet, Figure 4's ablation, bad input.

The end-to-end runs are subprocesses at tiny size (a 1-layer BERT of hidden
32 on 32-token sequences of the real Wikipedia excerpt); they check the
files and their fields and facts that hold whatever the tail values are.
"""

import json
import os

import numpy as np
import pytest

from conftest import TINY, run_program_cases, run_trainer

MODULE = "trainers.gradient_noise"
NUM_BATCHES = 16
SIZE = ["--num_layers=1", "--hidden_dim=32", "--num_heads=2", "--intermediate_dim=64"]
DATA = ["--seq_length=32", "--max_predictions_per_seq=5"]
MEASURE = [f"--num_batches={NUM_BATCHES}", "--batch_size=8", "--reference_dim=10"]
STAT_KEYS = {"num_samples", "mean", "median", "std", "max", "q99", "max_median_ratio",
             "kurtosis", "stable_alpha", "hill_alpha", "full_gradient_norm",
             "mean_minibatch_gradient_norm"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_noise(args, check=True):
    return run_trainer(args, module=MODULE, check=check)


def assert_png(path):
    assert os.path.getsize(path) > 1000, path
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, path


def assert_valid_measurement(m, num_batches=NUM_BATCHES):
    stats, norms, grads = m["statistics"], np.array(m["noise_norms"]), np.array(m["gradient_norms"])
    assert STAT_KEYS <= set(stats)
    assert norms.shape == grads.shape == (num_batches,) and stats["num_samples"] == num_batches
    assert np.all(np.isfinite(norms)) and np.all(norms > 0)
    assert isinstance(stats["stable_alpha"], float) and isinstance(stats["hill_alpha"], float)
    assert stats["max"] == pytest.approx(norms.max())
    assert stats["max_median_ratio"] == pytest.approx(norms.max() / np.median(norms))
    # ||g_i - gbar|| lies between | ||g_i|| - ||gbar|| | and ||g_i|| + ||gbar||.
    gbar = stats["full_gradient_norm"]
    assert np.all(norms <= grads + gbar + 1e-6 * grads)
    assert np.all(norms >= np.abs(grads - gbar) - 1e-6 * grads)
    # Equal only if every minibatch had the same gradient: this is noise.
    assert norms.std() > 0


# ---------------------------------------------------------------- BERT at initialisation
def test_tiny_bert_at_init_on_the_real_corpus(tmp_path, small_corpus, small_vocab):
    out = tmp_path / "bert"
    proc = run_noise(["--model=bert", f"--output_dir={out}", f"--corpus={small_corpus}",
                      f"--vocab_file={small_vocab}", *SIZE, *DATA, *MEASURE])
    verdicts = [line for line in proc.stdout.splitlines() if line.startswith("  init: ")]
    assert len(verdicts) == 1 and "calibrated at n=150" in verdicts[0], proc.stdout
    result = json.load(open(out / "bert_noise.json"))
    assert result["model"] == "bert" and list(result["measurements"]) == ["init"]
    assert_valid_measurement(result["measurements"]["init"])
    assert result["settings"]["seq_length"] == 32 and result["settings"]["batch_size"] == 8
    assert result["facts"]["num_layers"] == 1 and result["facts"]["hidden_dim"] == 32
    refs = result["references"]
    assert len(refs) == 2 and all(r["statistics"]["num_samples"] == NUM_BATCHES
                                  for r in refs.values())
    assert result["figures"] == ["bert_histograms.png", "bert_variance.png",
                                 "bert_tail_histograms.png", "bert_survival.png",
                                 "bert_shape_vs_k.png"]
    tail = result["measurements"]["init"]["tail"]
    # The seeded verdict of these 16 minibatches at init (2026-12-02: light, xi interval
    # [-1.42, -0.29], all of it below the light margin 0.1).
    assert tail["n"] == NUM_BATCHES and tail["verdict"] == "light"
    assert tail["ci"][1] < 0.1
    for name in result["figures"]:
        assert_png(out / name)
    assert not (out / "bert_development.png").exists()  # one measurement: no development
    assert (out / "vocab.txt").read_text() == open(small_vocab).read()


# ---------------------------------------------------------------- BERT at checkpoints
@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory, small_corpus, small_vocab):
    model_dir = tmp_path_factory.mktemp("pretrain")
    run_trainer([f"--model_dir={model_dir}", f"--corpus={small_corpus}",
                 f"--vocab_file={small_vocab}", *TINY, "--train_steps=10",
                 "--checkpoint_every=5", "--eval_every=0", "--optimizer=adam",
                 "--learning_rate=5e-3", "--strategy=one_device", "--nojit_compile"])
    return model_dir


def test_checkpoints_of_a_pretraining_run(tmp_path, pretrain_dir):
    out = tmp_path / "ckpt"
    # No --seq_length or size flags: they must come from the run's flags.txt.
    run_noise(["--model=bert", f"--output_dir={out}", f"--pretrain_dir={pretrain_dir}",
               "--checkpoints=10", *MEASURE])
    result = json.load(open(out / "bert_noise.json"))
    measurements = result["measurements"]
    assert list(measurements) == ["init", "step 10"]
    for m in measurements.values():
        assert_valid_measurement(m)
    assert result["settings"]["seq_length"] == 32 and result["facts"]["hidden_dim"] == 32
    # Restored weights give other gradients than the fresh init.
    init, trained = (measurements[k]["statistics"] for k in ("init", "step 10"))
    assert trained["full_gradient_norm"] != pytest.approx(init["full_gradient_norm"], rel=1e-3)
    assert "bert_development.png" in result["figures"]
    for name in result["figures"]:
        assert_png(out / name)


def test_checkpoint_step_not_found(tmp_path, pretrain_dir):
    proc = run_noise(["--model=bert", f"--output_dir={tmp_path}", f"--pretrain_dir={pretrain_dir}",
                      "--checkpoints=5,7", *MEASURE], check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: checkpoint step 7 not found"), proc.stderr[-2000:]
    assert "available steps: 5, 10" in lines[-1]
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- Figure 4
def test_attention_ablation_writes_four_cells(tmp_path, small_corpus, small_vocab):
    out = tmp_path / "ablation"
    run_noise(["--model=attention_ablation", f"--output_dir={out}", f"--corpus={small_corpus}",
               f"--vocab_file={small_vocab}", *SIZE, *DATA, *MEASURE])
    result = json.load(open(out / "attention_ablation_noise.json"))
    assert list(result["measurements"]) == [
        "attention / text", "attention / gaussian", "no attention / text",
        "no attention / gaussian"]
    for m in result["measurements"].values():
        assert_valid_measurement(m)
    assert result["facts"]["gaussian_targets"] == "teacher"
    assert result["figures"] == ["attention_ablation_histograms.png",
                                 "attention_ablation_variance.png",
                                 "attention_ablation_tail_histograms.png",
                                 "attention_ablation_survival.png",
                                 "attention_ablation_shape_vs_k.png"]
    for name in result["figures"]:
        assert_png(out / name)


def test_ablation_models_differ_by_exactly_the_attention_sublayers():
    from trainers.noise.ablation import build_ablation_model

    config = dict(num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32)
    counts = {}
    for attention in (True, False):
        for gaussian in (True, False):
            model = build_ablation_model(50, 12, config, attention, gaussian, 3)
            counts[attention, gaussian] = model.count_params()
    h, layers = 16, 2
    # Per block: Q, K, V, O projections (h*h + h each) and one more LayerNorm (2h).
    attention_params = layers * (4 * (h * h + h) + 2 * h)
    for gaussian in (True, False):
        assert counts[True, gaussian] - counts[False, gaussian] == attention_params
    assert counts[True, False] - counts[True, True] == 50 * h  # the token-embedding table


def test_gaussian_stream_keeps_the_text_structure_and_repeats():
    import tensorflow as tf

    from trainers.noise.ablation import EMBEDDING_STDDEV, gaussian_stream

    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(5, 40, (4, 2, 6)).astype(np.int32),
         "padding_mask": np.ones((4, 2, 6), bool),
         "mask_positions": np.sort(rng.integers(1, 5, (4, 2, 3)), -1).astype(np.int32)}
    y = rng.integers(5, 40, (4, 2, 3)).astype(np.int32)
    w = np.ones((4, 2, 3), np.float32)
    text = tf.data.Dataset.from_tensor_slices((x, y, w))
    first = list(gaussian_stream(text, 8, 40, seed=3, targets="teacher"))
    second = list(gaussian_stream(text, 8, 40, seed=3, targets="teacher"))
    for i, ((gx, gy, gw), (hx, hy, _)) in enumerate(zip(first, second)):
        np.testing.assert_array_equal(gx["embeddings"], hx["embeddings"])
        np.testing.assert_array_equal(gy, hy)
        rms = np.sqrt(np.mean(gx["embeddings"].numpy() ** 2, -1))
        np.testing.assert_allclose(rms, EMBEDDING_STDDEV, rtol=1e-5)
        np.testing.assert_array_equal(gx["mask_positions"], x["mask_positions"][i])
        np.testing.assert_array_equal(gw, w[i])
        assert gy.shape == y[i].shape and np.all((gy.numpy() >= 0) & (gy.numpy() < 40))
    batches = np.stack([b[0]["embeddings"].numpy() for b in first])
    assert not np.allclose(batches[0], batches[1])  # a new draw per batch
    text_targets = list(gaussian_stream(text, 8, 40, seed=3, targets="text"))
    np.testing.assert_array_equal(text_targets[2][1], y[2])


# ---------------------------------------------------------------- ResNet
def test_resnet_at_init_on_digits(tmp_path):
    out = tmp_path / "resnet"
    run_noise(["--model=resnet", f"--output_dir={out}", "--image_model=resnet8",
               "--dataset=digits", *MEASURE])
    result = json.load(open(out / "resnet_noise.json"))
    assert result["model"] == "resnet" and list(result["measurements"]) == ["init"]
    assert result["facts"]["dataset"] == "digits" and result["facts"]["image_size"] == 8
    assert_valid_measurement(result["measurements"]["init"])
    assert_png(out / "resnet_histograms.png")


# ---------------------------------------------------------------- helpers and bad input
def test_select_checkpoints():
    from trainers.common.errors import TrainerError
    from trainers.noise.measurements import select_checkpoints

    available = {5: "a/ckpt-5", 10: "a/ckpt-10"}
    assert select_checkpoints(available, "all", "a") == [(5, "a/ckpt-5"), (10, "a/ckpt-10")]
    assert select_checkpoints(available, "10, 5,10", "a") == [(5, "a/ckpt-5"), (10, "a/ckpt-10")]
    with pytest.raises(TrainerError, match="step 3 not found.*available steps: 5, 10"):
        select_checkpoints(available, "3", "a")
    with pytest.raises(TrainerError, match="not a step number"):
        select_checkpoints(available, "last", "a")


BAD_INPUT = [
    (["--model=gpt"], "error: flag --model=gpt"),
    (["--model=bert", "--pretrain_dir=/nonexistent/run"], "error: --pretrain_dir=/nonexistent/run does not exist"),
    (["--model=bert", "--checkpoints=5"], "error: --checkpoints needs --pretrain_dir"),
    (["--model=resnet", "--dataset=folder:/nonexistent"], "error: "),
    (["--model=attention_ablation", "--checkpoints=5"], "error: --pretrain_dir and --checkpoints"),
    (["--model=bert", "--num_batches=4"], "error: --num_batches must be >= 16"),
]
def test_bad_input_is_one_line(tmp_path):
    cases = [[f"--output_dir={tmp_path}/out{i}", *args] for i, (args, _) in enumerate(BAD_INPUT)]
    results = run_program_cases(MODULE, cases, define_flags=True)
    for (args, message), (code, _, stderr) in zip(BAD_INPUT, results, strict=True):
        assert code not in (0, None), args
        lines = stderr.strip().splitlines()
        assert lines and lines[-1].startswith(message), (args, stderr[-2000:])
        assert "Traceback" not in stderr, args
