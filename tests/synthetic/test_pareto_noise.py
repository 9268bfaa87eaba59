"""The assumption-satisfying noise of the Table 1 experiment (``noise="pareto"``).

Checks, each with a stated tolerance:
* tail index: for symmetric noise |xi| is exactly Pareto I(a, s), so the Hill /
  maximum-likelihood estimate a_hat = n / sum log(|xi|/s) has sd a/sqrt(n);
  asserted within 5 sd. For skewed noise the empirical survival function at a
  few t matches the closed form (1+skew)/2 (s/(t+m))^a within 5 binomial
  standard errors.
* zero mean: the closed form (skew E[P] - m = 0) and a Monte Carlo mean within
  5 standard errors at an index with finite variance (a = 3).
* the alpha-th moment: closed form a s^alpha/(a-alpha) vs Monte Carlo within 5
  standard errors at a = 3 > 2 alpha (finite variance of |xi|^alpha), and, at
  the experiment's index a = alpha + 0.1 (infinite variance), the truncated
  moment E[P^alpha; P <= T] = a s^alpha/(a-alpha) (1 - (s/T)^(a-alpha)).
* G from the bound >= the Monte Carlo (E||mu x + xi||^alpha)^(1/alpha) at
  ||x|| = R (the worst case of the bound) in several directions.
"""

import numpy as np
import pytest

from trainers.synthetic import heavy_tail as H


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("alpha", [1.2, 1.5])
def test_symmetric_tail_index_hill(alpha):
    a = H.pareto_index(alpha)
    assert a == pytest.approx(alpha + 0.1)
    scale, n = 2.0, 200_000
    xi = H.pareto_noise(a, n, _rng(1), scale=scale, skewness=0.0)
    assert np.all(np.abs(xi) >= scale)
    a_hat = n / np.sum(np.log(np.abs(xi) / scale))
    assert abs(a_hat - a) < 5 * a / np.sqrt(n), (a_hat, a)
    # Both signs equally likely.
    assert abs(np.mean(xi > 0) - 0.5) < 5 * 0.5 / np.sqrt(n)


@pytest.mark.parametrize("skewness", [1.0, 0.5, -0.3])
def test_skewed_survival_matches_closed_form(skewness):
    a, scale, n = 1.3, 1.0, 400_000
    m = H.pareto_mean_shift(a, scale, skewness)
    xi = H.pareto_noise(a, n, _rng(2), scale=scale, skewness=skewness)
    for t in (5.0, 20.0, 100.0):
        right = 0.5 * (1 + skewness) * (scale / (t + m)) ** a
        left = 0.5 * (1 - skewness) * (scale / (t - m)) ** a if t - m >= scale else None
        for emp, p in ((np.mean(xi > t), right), (np.mean(xi < -t), left)):
            if p is None:
                continue
            assert abs(emp - p) <= 5 * np.sqrt(max(p, 1e-12) * (1 - p) / n) + 1e-12, (t, emp, p)
    if skewness == 1.0:
        assert xi.min() >= scale - m - 1e-12  # one-sided: bounded left tail


@pytest.mark.parametrize("skewness", [0.0, 1.0, -0.7])
def test_zero_mean(skewness):
    a, scale = 3.0, 1.5
    # Closed form: E[S] E[P] - m = skew * scale a/(a-1) - m = 0.
    assert skewness * scale * a / (a - 1) - H.pareto_mean_shift(a, scale, skewness) == pytest.approx(0.0, abs=1e-12)
    xi = H.pareto_noise(a, 1_000_000, _rng(3), scale=scale, skewness=skewness)
    assert abs(xi.mean()) < 5 * xi.std() / np.sqrt(xi.size), xi.mean()


def test_alpha_moment_closed_form_monte_carlo():
    alpha, a, scale, n = 1.2, 3.0, 1.0, 1_000_000  # Var |xi|^alpha finite since a > 2 alpha.
    xi = H.pareto_noise(a, n, _rng(4), scale=scale, skewness=0.0)
    y = np.abs(xi) ** alpha
    closed = H.pareto_abs_moment(alpha, a, scale)
    assert closed == pytest.approx(a / (a - alpha))
    assert abs(y.mean() - closed) < 5 * y.std() / np.sqrt(n), (y.mean(), closed)
    assert H.pareto_abs_moment(alpha, alpha, scale) == np.inf
    assert H.pareto_abs_moment(2.0, 1.3, scale) == np.inf  # infinite variance at the experiment's index


@pytest.mark.parametrize("alpha", [1.2, 1.5])
def test_alpha_moment_at_experiment_index_truncated(alpha):
    a, scale, n, cap = alpha + 0.1, 1.0, 1_000_000, 50.0
    p = np.abs(H.pareto_noise(a, n, _rng(5), scale=scale, skewness=0.0))
    y = np.where(p <= cap, p**alpha, 0.0)
    closed = H.pareto_abs_moment(alpha, a, scale) * (1 - (scale / cap) ** (a - alpha))
    assert abs(y.mean() - closed) < 5 * y.std() / np.sqrt(n), (y.mean(), closed)


@pytest.mark.parametrize("alpha, skewness", [(1.2, 1.0), (1.2, 0.0), (1.5, 1.0), (1.5, 0.0)])
def test_G_bound_exceeds_monte_carlo(alpha, skewness):
    mu, radius, dim, scale = 1.0, 10.0, 2, 1.0
    G = H.resolve_clip_scale("auto", alpha, mu=mu, radius=radius, dim=dim, noise="pareto", noise_scale=scale,
                             skewness=skewness)
    a = H.pareto_index(alpha)
    m = abs(H.pareto_mean_shift(a, scale, skewness))
    assert G == pytest.approx(mu * radius + dim ** (1 / alpha) * ((a * scale**alpha / (a - alpha)) ** (1 / alpha) + m))
    xi = H.pareto_noise(a, (400_000, dim), _rng(6), scale=scale, skewness=skewness)
    for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        x = radius * np.array([np.cos(angle), np.sin(angle)])
        mc = np.mean(np.linalg.norm(mu * x + xi, axis=1) ** alpha) ** (1 / alpha)
        assert mc <= G, (angle, mc, G)
    # The noise part alone: (E||xi||^alpha)^(1/alpha) <= G - mu R.
    assert np.mean(np.linalg.norm(xi, axis=1) ** alpha) ** (1 / alpha) <= G - mu * radius


def test_G_auto_refused_for_stable_noise_and_numbers_pass_through():
    with pytest.raises(ValueError, match="E\\|xi\\|\\^alpha = inf"):
        H.resolve_clip_scale("auto", 1.5, noise="stable")
    with pytest.raises(ValueError, match="E\\|xi\\|\\^alpha = inf"):
        H.simulate(1.5, num_steps=10, num_seeds=2, clip_scale="auto")
    assert H.noise_moment_root(1.5, "stable") == np.inf
    assert H.resolve_clip_scale("2.5", 1.5) == 2.5
    assert H.resolve_clip_scale(1, 1.5, noise="pareto") == 1.0
    for bad in ("abc", 0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="clip_scale"):
            H.resolve_clip_scale(bad, 1.5)
    with pytest.raises(ValueError, match="noise"):
        H.simulate(1.5, num_steps=10, num_seeds=2, noise="gauss")
    with pytest.raises(ValueError, match="pareto_offset"):
        H.simulate(1.5, num_steps=10, num_seeds=2, noise="pareto", pareto_offset=0.0)


def test_pareto_simulation_and_repeats(tmp_path):
    import json

    it, errors = H.simulate(1.5, num_steps=400, num_seeds=40, noise="pareto", clip_scale="auto", seed=0)
    it2, errors2 = H.simulate(1.5, num_steps=400, num_seeds=40, noise="pareto", clip_scale="auto", seed=0)
    for name in H.METHODS:
        np.testing.assert_array_equal(errors[name], errors2[name])  # seeded: deterministic
        assert np.all(np.isfinite(errors[name]))
    r = H.summarize(1.5, it, errors, fit_from=0.05, num_repeats=4)
    for s in r["methods"].values():
        assert len(s["repeat_slopes"]) == 4 and s["repeat_slope_sd"] >= 0
        assert s["repeat_slope_mean"] == pytest.approx(np.mean(s["repeat_slopes"]))
    with pytest.raises(ValueError, match="num_repeats"):
        H.summarize(1.5, it, errors, fit_from=0.05, num_repeats=41)
    payload = H.run_experiment([1.2], str(tmp_path), num_steps=200, num_seeds=12, num_repeats=3, noise="pareto",
                               clip_scale="auto")
    data = json.loads((tmp_path / "rates.json").read_text())["results"]["1.2"]
    assert data["noise"] == "pareto" and data["noise_index"] == pytest.approx(1.3)
    assert data["G"] == pytest.approx(H.gradient_moment_bound(1.2, skewness=1.0))
    assert payload["config"]["num_repeats"] == 3
