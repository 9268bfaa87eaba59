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
