"""gradient_noise's tail verdicts and minibatch-size sweep, in-process.

The JSON carries `acclip_tf.noise.tails.tail_report` for every measurement and
reference, each measurement prints one verdict line with the rule's calibrated
error rates, and ``--batch_sizes`` gives one measurement per size at the same
weights (a tiny Keras model stands in for a model path, so nothing here trains).
"""

import json
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from acclip_tf.noise import GradientNoiseSample
from trainers.common.errors import TrainerError
from trainers.noise import measurements

TAIL_KEYS = {"verdict", "xi", "ci", "k", "threshold", "n"}
CALIBRATION = {"sizes": [150, 2000], "rows": [
    {"n": 150, "truth": "light", "rate_heavy": 0.0, "rate_light": 0.1},
    {"n": 150, "truth": "heavy", "rate_heavy": 0.3, "rate_light": 0.04},
    {"n": 2000, "truth": "light", "rate_heavy": 0.01, "rate_light": 0.9},
    {"n": 2000, "truth": "heavy", "rate_heavy": 0.6, "rate_light": 0.0},
    {"n": 2000, "truth": "heavy", "rate_heavy": 0.9, "rate_light": 0.02},
]}


def fake_sample(norms):
    norms = np.asarray(norms, float)
    return GradientNoiseSample(noise_norms=norms, gradient_norms=norms + 1.0,
                               full_gradient_norm=1.0, num_batches=norms.size)


def test_calibrated_error_rates_at_the_nearest_size():
    rates = measurements.calibrated_error_rates(1500, CALIBRATION)
    assert rates == {"n": 2000, "false_positive": 0.01, "false_negative": pytest.approx(0.4),
                     "wrong_direction": 0.02, "light_cases": 1, "heavy_cases": 2}
    assert measurements.calibrated_error_rates(200, CALIBRATION)["n"] == 150
    assert measurements.calibrated_error_rates(200, None) is None
    # The shipped calibration is read from docs/figures.
    shipped = measurements.calibrated_error_rates(2000)
    assert shipped is not None and shipped["n"] == 2000 and shipped["false_positive"] <= 0.05
    assert measurements.load_calibration("/nonexistent/calibration.json") is None


def test_verdict_line():
    report = {"verdict": "cannot tell", "xi": 0.05, "ci": [-0.1, 0.2], "n": 2000, "k": 200}
    line = measurements.verdict_line("init", report, measurements.calibrated_error_rates(
        2000, CALIBRATION))
    assert line.strip().startswith("init: cannot tell, xi +0.050 [-0.100, +0.200], n=2000")
    assert "calibrated at n=2000: false positive <= 0.01" in line
    assert "false negative <= 0.40" in line and "\n" not in line
    assert measurements.verdict_line("init", report, None).endswith("; uncalibrated n")


def test_json_carries_the_tail_report(tmp_path):
    rng = np.random.default_rng(0)
    samples = {"light": fake_sample(10.0 + rng.standard_normal(300)),
               "heavy": fake_sample(100.0 + rng.pareto(1.0, 300))}
    refs = measurements.references(300, 10, 1.5, seed=0)
    result = measurements.write_outputs(str(tmp_path), "toy", samples, refs, {}, {},
                                        development=False)
    on_disk = json.load(open(tmp_path / "toy_noise.json"))
    assert on_disk["measurements"].keys() == result["measurements"].keys()
    for label, m in on_disk["measurements"].items():
        assert TAIL_KEYS <= set(m["tail"]) and m["tail"]["n"] == 300
        lo, hi = m["tail"]["ci"]
        assert lo <= hi and m["calibration"]["n"] == 500  # nearest to 300 on a log scale
        assert "hill_alpha" in m["statistics"]  # the older statistics stay
    assert on_disk["measurements"]["heavy"]["tail"]["verdict"] == "heavy"
    assert on_disk["measurements"]["light"]["tail"]["verdict"] != "heavy"
    assert all(TAIL_KEYS <= set(r["tail"]) for r in on_disk["references"].values())
    assert "batch_size_sweep" not in on_disk
    for name in ("toy_histograms.png", "toy_tail_histograms.png", "toy_survival.png",
                 "toy_shape_vs_k.png"):
        assert name in on_disk["figures"] and (tmp_path / name).stat().st_size > 1000


def test_references_are_the_sums_of_squares_of_figure_1():
    refs = measurements.references(500, 10, 1.5, seed=0)
    gauss, stable = refs.values()
    assert gauss.shape == stable.shape == (500,)
    assert np.mean(gauss) == pytest.approx(1.0, abs=0.05)  # chi^2_10 / 10
    assert np.max(stable) / np.median(stable) > 20 > np.max(gauss) / np.median(gauss)


# ---------------------------------------------------------------- the sweep, in-process
def toy_path(f, strategy):
    """A model path: a linear model on Gaussian data, minibatches of f.batch_size."""
    del strategy
    rng = np.random.default_rng(0)
    x = rng.standard_normal((f.num_batches * f.batch_size, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5], "float32") + rng.standard_normal(len(x))).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y[:, None])).batch(
        f.batch_size, drop_remainder=True).cache()

    def model_fn():
        keras.utils.set_random_seed(f.seed)
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])

    loss = keras.losses.MeanSquaredError()
    return [("init", model_fn, loss, dataset)], {"toy": True}, {"parameters": 4}


def test_batch_size_sweep_gives_one_measurement_per_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(measurements.PATHS, "bert", toy_path)
    f = types.SimpleNamespace(model="bert", batch_sizes=["16", "1", "4", "4"], batch_size=32,
                              num_batches=40, seed=0, output_dir=str(tmp_path))
    samples, settings, facts, sweep, groups = measurements.collect(f, None)
    assert groups is None
    assert list(samples) == ["init / batch 1", "init / batch 4", "init / batch 16"]
    assert sweep == {"init": {1: "init / batch 1", 4: "init / batch 4", 16: "init / batch 16"}}
    assert all(s.num_batches == 40 for s in samples.values())
    # Averaging more examples shrinks the noise (same weights, same data law).
    spread = [np.median(samples[f"init / batch {b}"].noise_norms) for b in (1, 4, 16)]
    assert spread[0] > spread[1] > spread[2]
    printed = capsys.readouterr().out
    assert printed.count("init / batch") >= 3 and "calibrated at n=150" in printed
    result = measurements.write_outputs(str(tmp_path), "toy", samples, {}, settings, facts,
                                        development=False, sweep=sweep)
    entry = result["batch_size_sweep"]["init"]
    assert entry["batch_sizes"] == [1, 4, 16] and len(entry["xi"]) == len(entry["ci"]) == 3
    assert "toy_xi_vs_batch_size.png" in result["figures"]
    assert (tmp_path / "toy_xi_vs_batch_size.png").stat().st_size > 1000


def test_bad_batch_sizes():
    f = types.SimpleNamespace(batch_sizes=["4", "x"])
    with pytest.raises(TrainerError, match="--batch_sizes: 'x' is not a positive integer"):
        measurements.batch_sizes(f)
    assert measurements.batch_sizes(types.SimpleNamespace(batch_sizes=None)) is None


# ---------------------------------------------------------------- parameter groups
@pytest.mark.parametrize("path, shape, group", [
    ("bert_backbone/token_embedding/embeddings", (100, 8), "token embedding"),
    ("bert_backbone/position_embedding/embeddings", (16, 8), "position/segment embedding"),
    ("transformer_layer_0/self_attention/query/kernel", (8, 2, 4), "attention"),
    ("transformer_layer_0/self_attention_layer_norm/gamma", (8,), "LayerNorm"),
    ("transformer_layer_0/feedforward_intermediate_dense/kernel", (8, 32), "feed-forward"),
    ("masked_lm_head/bias", (100,), "output bias"),
    ("masked_lm_head/intermediate_dense/kernel", (8, 8), "output head (dense)"),
    ("masked_lm_head/intermediate_layer_norm/gamma", (8,), "LayerNorm"),
    ("pooled_dense/kernel", (8, 8), "other"),
])
def test_group_of(path, shape, group):
    from trainers.noise.groups import group_of

    assert group_of(path, shape) == group


def test_group_norms_add_up_to_the_total(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(measurements.PATHS, "bert", toy_path)
    f = types.SimpleNamespace(model="bert", batch_sizes=None, batch_size=4, num_batches=30,
                              seed=0, output_dir=str(tmp_path), parameter_groups=False)
    plain, *_ = measurements.collect(f, None)
    f.parameter_groups = True
    samples, settings, facts, sweep, groups = measurements.collect(f, None)
    np.testing.assert_allclose(samples["init"].noise_norms, plain["init"].noise_norms, rtol=1e-5)
    np.testing.assert_allclose(samples["init"].full_gradient_norm,
                               plain["init"].full_gradient_norm, rtol=1e-4)
    per_group = groups["init"]["noise"]
    assert set(per_group) == {"other"}  # a Dense layer's kernel and bias
    assert "init / other: " in capsys.readouterr().out
    result = measurements.write_outputs(str(tmp_path), "toy", samples, {}, settings, facts,
                                        development=False, groups=groups)
    entry = result["measurements"]["init"]["groups"]["other"]
    assert entry["parameters"] == 4 and entry["share_of_squared_noise"] == pytest.approx(1.0)
    assert TAIL_KEYS <= set(entry["tail"])
    assert "toy_groups_0.png" in result["figures"]
