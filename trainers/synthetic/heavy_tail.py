r"""Table 1 / Remark 1 as an experiment: SGD vs projected GClip under heavy-tailed noise.

Problem: ``f(x) = mu/2 ||x||^2`` on ``R^dim`` (``x* = 0``), stochastic gradient
``g_k = mu x_{k-1} + xi_k`` with i.i.d. coordinates
``xi ~ levy_stable(alpha, skewness, scale=noise_scale)`` (mean 0 for
``alpha > 1``; ``alpha = 2`` is Gaussian with variance ``2 noise_scale^2``),
so ``E||xi||^p < inf`` exactly for ``p < alpha``. Every method runs on the
*same* noise draws (common random numbers), vectorised over seeds:

* ``sgd``: ``x_k = x_{k-1} - eta_k g_k``, no projection (Remark 1's setting).
* ``gclip_theorem4``: projected GClip with Theorem 4's schedule as printed,
  ``tau_k = G k^(alpha-1)``,
  ``x_k = P_R(x_{k-1} - eta_k min(tau_k/||g_k||, 1) g_k)``.
* ``gclip_balanced``: the same with ``tau_k = G k^(1/alpha)``.

All use ``eta_k = 4 / (mu (k+1))`` and report the k-weighted average
``xbar_k = sum_{j<=k} j x_{j-1} / sum_{j<=k} j``; the error is
``f(xbar_k) - f* = mu/2 ||xbar_k||^2``. Theorem 4 bounds its expectation by
``16 G^2 / (mu (k+1)^(2(alpha-1)/alpha))``, so the fitted log-log slope of the
*mean over seeds* is compared with ``-2(alpha-1)/alpha``.

Why two schedules. With ``E||g||^alpha <= G^alpha`` clipping at ``tau``
leaves a bias ``<= G^alpha tau^(1-alpha)`` and a second moment
``<= G^alpha tau^(2-alpha)``. With ``eta_k ~ 1/(mu k)`` and k-weighted
averaging the variance term contributes ``~ k^(beta(2-alpha)-1)`` and the bias
term ``~ k^(-2 beta (alpha-1))`` for ``tau_k = G k^beta``; they balance at
``beta = 1/alpha`` and give exactly ``k^(-2(alpha-1)/alpha)``. With the printed
``beta = alpha - 1`` the bias term decays like ``k^(-2(alpha-1)^2)``
(``-0.5`` at ``alpha = 1.5``, ``-0.08`` at ``alpha = 1.2``), which dominates
when the noise is skewed (``skewness != 0``, the bias does not vanish at
``x*``). For symmetric noise the bias vanishes at ``x*`` and only the
variance term ``k^((alpha-1)(2-alpha)-1)`` remains. The experiment measures
both schedules; see docs/evidence.md.

    python -m trainers.heavy_tail_rates --output_dir=runs/heavy_tail_rates

writes ``rates.png`` and ``rates.json``.
"""

import json
import os
import time

import numpy as np
from scipy import stats

METHODS = ("sgd", "gclip_theorem4", "gclip_balanced")


def theoretical_slope(alpha):
    """Theorem 4 / Theorem 5: ``f(xbar_k) - f* = Theta(k^(-2(alpha-1)/alpha))``."""
    _check_alpha(alpha)
    return -2.0 * (alpha - 1.0) / alpha


def tau_power(method, alpha):
    """The exponent ``beta`` of ``tau_k = G k^beta`` (None: no clipping)."""
    _check_alpha(alpha)
    if method == "sgd":
        return None
    if method == "gclip_theorem4":
        return alpha - 1.0
    if method == "gclip_balanced":
        return 1.0 / alpha
    raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")


def gclip_scale(norms, tau):
    """``min(tau / ||g||, 1)``, 1 where ``||g|| == 0``.

    A numpy mirror of ``acclip_tf.clipping.global_clip_scale(norm, tau, 0)``
    (tests/test_heavy_tail_rates.py checks that they agree), broadcast over
    seeds and methods.
    """
    norms = np.asarray(norms, dtype=np.float64)
    safe = np.where(norms > 0, norms, 1.0)
    return np.where(norms > 0, np.minimum(tau / safe, 1.0), 1.0)


def project_to_ball(x, radius):
    """Euclidean projection of each row (last axis) onto ``{||x|| <= radius}``."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x * np.minimum(1.0, radius / np.maximum(norms, 1e-300))


def _check_alpha(alpha):
    if not (isinstance(alpha, (int, float)) and 1.0 < alpha <= 2.0):
        raise ValueError(f"`alpha` must be in (1, 2]; received {alpha!r}.")


def simulate(
    alpha,
    methods=METHODS,
    num_steps=20000,
    num_seeds=500,
    dim=2,
    mu=1.0,
    clip_scale=1.0,
    noise_scale=1.0,
    skewness=1.0,
    radius=10.0,
    x0_norm=1.0,
    num_records=60,
    seed=0,
    chunk=500,
):
    """Runs the methods on shared noise; returns ``(iterations, {method: errors})``.

    ``errors[m]`` has shape ``(len(iterations), num_seeds)``:
    ``mu/2 ||xbar_k||^2`` at the recorded ``k`` (log-spaced in
    ``[1, num_steps]``). ``clip_scale`` is Theorem 4's ``G``; ``radius``
    the projection ball (GClip only); ``x0 = x0_norm e_1``.
    """
    _check_alpha(alpha)
    methods = tuple(methods)
    if not methods:
        raise ValueError("`methods` is empty.")
    powers = [tau_power(m, alpha) for m in methods]
    for name, v in (("num_steps", num_steps), ("num_seeds", num_seeds), ("dim", dim), ("num_records", num_records), ("chunk", chunk)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer; received {v!r}.")
    for name, v in (("mu", mu), ("clip_scale", clip_scale), ("noise_scale", noise_scale), ("radius", radius)):
        if not v > 0:
            raise ValueError(f"`{name}` must be > 0; received {v!r}.")
    if not -1.0 <= skewness <= 1.0:
        raise ValueError(f"`skewness` must be in [-1, 1]; received {skewness!r}.")
    if not 0 <= x0_norm <= radius:
        raise ValueError(f"`x0_norm` must be in [0, radius]; received {x0_norm!r}.")

    rng = np.random.default_rng(seed)
    m = len(methods)
    # Per-method constants, broadcast against (methods, seeds, dim).
    clipped = np.array([p is not None for p in powers])[:, None, None]
    power = np.array([0.0 if p is None else p for p in powers])[:, None, None]
    ball = np.where(clipped, radius, np.inf)
    x = np.zeros((m, num_seeds, dim))
    x[..., 0] = x0_norm
    weighted_sum = np.zeros_like(x)
    weight_total = 0.0
    iterations = np.unique(np.round(np.logspace(0, np.log10(num_steps), num_records)).astype(int))
    record_at = {int(k): i for i, k in enumerate(iterations)}
    errors = np.empty((m, iterations.size, num_seeds))
    for start in range(0, num_steps, chunk):
        n = min(chunk, num_steps - start)
        xi = stats.levy_stable.rvs(alpha, skewness, scale=noise_scale, size=(n, num_seeds, dim), random_state=rng)
        for i in range(n):
            k = start + i + 1
            weighted_sum += k * x  # xbar_k uses x_{k-1} with weight k.
            weight_total += k
            if k in record_at:
                xbar = weighted_sum / weight_total
                errors[:, record_at[k], :] = 0.5 * mu * np.sum(xbar**2, axis=-1)
            g = mu * x + xi[i]
            tau = clip_scale * float(k) ** power
            factor = gclip_scale(np.linalg.norm(g, axis=-1, keepdims=True), tau)
            g = np.where(clipped, factor * g, g)
            x = x - (4.0 / (mu * (k + 1))) * g
            x = np.where(clipped, project_to_ball(x, ball), x)
    return iterations, {name: errors[j] for j, name in enumerate(methods)}


def fit_slope(iterations, error, k_min):
    """Least-squares fit ``log error = intercept + slope log k`` over ``k >= k_min``.

    Returns ``(slope, intercept)``; needs at least 3 points with positive error.
    """
    k = np.asarray(iterations, dtype=np.float64)
    e = np.asarray(error, dtype=np.float64)
    if k.shape != e.shape or k.ndim != 1:
        raise ValueError("`iterations` and `error` must be 1-D of equal length.")
    sel = (k >= k_min) & (e > 0) & np.isfinite(e)
    if sel.sum() < 3:
        raise ValueError(f"Fewer than 3 points with k >= {k_min} and positive error.")
    slope, intercept = np.polyfit(np.log(k[sel]), np.log(e[sel]), 1)
    return float(slope), float(intercept)


def summarize(alpha, iterations, errors, fit_from):
    """Per-method statistics of one ``simulate`` run (JSON-ready dict).

    ``fit_from`` is the fraction of ``num_steps`` where the fit window starts.
    The main statistic is the mean over seeds (Theorem 4 bounds the
    expectation); the median and the 90% quantile over seeds are reported too.
    """
    k_min = max(1, int(fit_from * iterations[-1]))
    out = {"alpha": alpha, "theory_slope": theoretical_slope(alpha), "fit_k_min": k_min, "methods": {}}
    for name, e in errors.items():
        mean, median, q90 = e.mean(axis=1), np.median(e, axis=1), np.quantile(e, 0.9, axis=1)
        slope, intercept = fit_slope(iterations, mean, k_min)
        out["methods"][name] = {
            "tau_power": tau_power(name, alpha),
            "slope_of_mean": slope,
            "intercept_of_mean": intercept,
            "slope_of_median": fit_slope(iterations, median, k_min)[0],
            "final_mean_error": float(mean[-1]),
            "final_median_error": float(median[-1]),
            "final_q90_error": float(np.quantile(e[-1], 0.9)),
            "final_max_error": float(e[-1].max()),
            "mean_error": mean.tolist(),
            "median_error": median.tolist(),
            "q90_error": q90.tolist(),
        }
    out["iterations"] = iterations.tolist()
    return out


def run_experiment(alphas, output_dir, fit_from=0.01, **simulate_kwargs):
    """Simulates every alpha, writes ``rates.json`` and ``rates.png``; returns the dict."""
    from acclip_tf import plotting

    os.makedirs(output_dir, exist_ok=True)
    results, panels = {}, {}
    for alpha in alphas:
        start = time.time()
        iterations, errors = simulate(alpha, **simulate_kwargs)
        summary = summarize(alpha, iterations, errors, fit_from)
        summary["seconds"] = time.time() - start
        results[f"{alpha:g}"] = summary
        panels[f"alpha={alpha:g} (theory {summary['theory_slope']:.2f})"] = {
            name: {
                "iterations": iterations,
                "error": np.asarray(s["mean_error"]),
                "fit": (s["slope_of_mean"], s["intercept_of_mean"], summary["fit_k_min"]),
                "theory_slope": summary["theory_slope"] if name != "sgd" else None,
            }
            for name, s in summary["methods"].items()
        }
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in simulate_kwargs.items()}
    payload = {"config": dict(config, alphas=list(alphas), fit_from=fit_from), "results": results}
    with open(os.path.join(output_dir, "rates.json"), "w") as f:
        json.dump(payload, f, indent=1)
    plotting.plot_error_curves(panels, os.path.join(output_dir, "rates.png"),
                               title="mean over seeds of f(x_bar_k) - f*")
    return payload
