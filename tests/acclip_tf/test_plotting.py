"""acclip_tf.plotting writes non-empty PNG files and rejects bad input."""

import numpy as np
import pytest

from acclip_tf import noise, plotting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


def test_all_plots_write_png(tmp_path):
    light = noise.gaussian_reference_norms(500, 10, seed=0)
    heavy = noise.stable_reference_norms(500, 10, 1.5, seed=1)
    paths = [
        plotting.plot_noise_histograms({"Gaussian": light, "stable 1.5": heavy}, tmp_path / "a" / "hist.png"),
        plotting.plot_variance_curves(
            {"Gaussian": noise.variance_vs_sample_size(light), "stable": noise.variance_vs_sample_size(heavy)},
            tmp_path / "var.png",
        ),
        plotting.plot_noise_development({"step 0": heavy, "step 100": light}, tmp_path / "dev.png"),
        plotting.plot_error_curves(
            {"alpha=1.5": {"gclip": {"iterations": np.arange(1, 11), "error": 1.0 / np.arange(1, 11),
                                     "fit": (-1.0, 0.0, 2), "theory_slope": -0.67}}},
            tmp_path / "rates.png",
        ),
    ]
    for p in paths:
        assert _is_png(p)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: plotting.plot_noise_histograms({"a": [1.0, 2.0]}, p / "x.jpg"), ".png"),
        (lambda p: plotting.plot_noise_histograms({}, p / "x.png"), "non-empty mapping"),
        (lambda p: plotting.plot_noise_histograms({"a": [1.0, np.inf]}, p / "x.png"), "NaN or infinite"),
        (lambda p: plotting.plot_variance_curves({"a": ([1, 2], [1.0])}, p / "x.png"), "equal length"),
        (lambda p: plotting.plot_error_curves({}, p / "x.png"), "non-empty mapping"),
    ],
)
def test_bad_input_raises(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)


def test_tail_plots_write_png_on_synthetic_data(tmp_path):
    from acclip_tf.noise import tails

    rng = np.random.default_rng(0)
    light = noise.gaussian_reference_norms(400, 100, seed=0)
    heavy = 100.0 + rng.pareto(1.5, 400) + 1.0
    refs = {"Fig. 1c": tails.sum_of_squared_gaussians(400, 10, rng),
            "Fig. 1g": tails.sum_of_squared_stable(400, 10, 1.5, rng)}
    samples = {"light": light, "heavy": heavy}
    reports = {label: tails.tail_report(x) for label, x in {**samples, **refs}.items()}
    paths = [
        plotting.plot_tail_histograms(samples, refs, tmp_path / "tails.png", reports=reports),
        plotting.plot_tail_histograms({"light": light}, {}, tmp_path / "alone.png"),
        plotting.plot_survival_curves(samples, tmp_path / "survival.png", references=refs),
        plotting.plot_shape_vs_k(samples, tmp_path / "shape.png"),
        plotting.plot_xi_vs_batch_size(
            {"init": ([1, 4, 16], [0.5, 0.2, -0.1], [(0.3, 0.7), (0.0, 0.4), (-0.2, 0.0)])},
            tmp_path / "xi_batch.png"),
    ]
    for p in paths:
        assert _is_png(p)
    with pytest.raises(ValueError, match="equal length"):
        plotting.plot_xi_vs_batch_size({"a": ([1, 4], [0.1], [(0, 1)])}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-empty mapping"):
        plotting.plot_survival_curves({}, tmp_path / "x.png")
