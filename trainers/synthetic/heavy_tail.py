r"""Table 1 / Remark 1 as an experiment: SGD vs projected GClip under heavy-tailed noise.

Problem: ``f(x) = mu/2 ||x||^2`` on ``R^dim`` (``x* = 0``), stochastic gradient
``g_k = mu x_{k-1} + xi_k`` with i.i.d. noise coordinates from one of two laws
(``noise=``):

* ``"stable"`` (default, the original experiment):
  ``xi ~ levy_stable(alpha, skewness, scale=noise_scale)`` (mean 0 for
  ``alpha > 1``; ``alpha = 2`` is Gaussian with variance ``2 noise_scale^2``),
  so ``E||xi||^p < inf`` exactly for ``p < alpha``. With the *same* alpha as
  the theorem, ``E||g||^alpha = inf``: Assumption 4
  (``E||g(x)||^alpha <= G^alpha`` on the domain) does **not** hold.
* ``"pareto"`` (satisfies Assumption 4): ``xi = S P - m`` with
  ``P = noise_scale (1 + Lomax(a))``, i.e. Pareto type I with tail index
  ``a = alpha + pareto_offset`` (default ``alpha + 0.1``) and minimum
  ``noise_scale``; ``S = +1`` with probability ``(1 + skewness)/2``, else
  ``-1``; ``m = skewness E[P] = skewness noise_scale a/(a-1)`` makes the mean
  0. Tails: ``P(xi > t) = (1+skewness)/2 (noise_scale/(t+m))^a`` for
  ``t + m >= noise_scale`` (and ``(1-skewness)/2 (noise_scale/(t-m))^a`` for
  ``xi < -t``). Since ``a > alpha`` the alpha-th moment is finite,
  ``E|S P|^alpha = E P^alpha = a noise_scale^alpha / (a - alpha)`` (closed
  form), while ``E xi^2 = inf`` for ``a <= 2``.

``clip_scale`` is Theorem 4's ``G``: a number, or ``"auto"`` for the moment
bound (pareto noise only; it is infinite for stable noise)::

    G = mu R + dim^(1/alpha) [ (a noise_scale^alpha / (a-alpha))^(1/alpha) + |m| ]

It bounds ``(E||mu x + xi||^alpha)^(1/alpha)`` for every ``||x|| <= R``
(``R = radius``): by Minkowski's inequality in ``L^alpha``,
``(E||mu x + xi||^alpha)^(1/alpha) <= mu ||x|| + (E||xi||^alpha)^(1/alpha)``;
since ``alpha/2 <= 1``, ``||xi||_2^alpha <= sum_i |xi_i|^alpha`` so
``E||xi||^alpha <= dim E|xi_1|^alpha``; and, again by Minkowski,
``(E|S P - m|^alpha)^(1/alpha) <= (E P^alpha)^(1/alpha) + |m|`` (equality for
``skewness = 0``, where ``m = 0``). See ``gradient_moment_bound``.

Every method runs on the *same* noise draws (common random numbers),
vectorised over seeds:

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
    python -m trainers.heavy_tail_rates --noise=pareto --G=auto --output_dir=runs/heavy_tail_rates_pareto

write ``rates.png`` and ``rates.json``. ``num_repeats`` splits the seeds
into that many equal groups and reports the slope of each group's mean error
(their mean and standard deviation give the slope an error bar).
"""

import inspect
import json
import time

import numpy as np
from scipy import stats

from trainers.common import files

METHODS = ("sgd", "gclip_theorem4", "gclip_balanced")
NOISES = ("stable", "pareto")
DEFAULT_PARETO_OFFSET = 0.1


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


def pareto_index(alpha, pareto_offset=DEFAULT_PARETO_OFFSET):
    """Tail index ``a = alpha + pareto_offset`` of the ``"pareto"`` noise."""
    _check_alpha(alpha)
    if not pareto_offset > 0:
        raise ValueError(f"`pareto_offset` must be > 0 (a finite alpha-th moment needs index > alpha); received {pareto_offset!r}.")
    return alpha + pareto_offset


def pareto_mean_shift(index, scale=1.0, skewness=0.0):
    """``m = skewness E[P] = skewness scale index/(index-1)``: ``S P - m`` has mean 0."""
    if not index > 1:
        raise ValueError(f"`index` must be > 1 (finite mean); received {index!r}.")
    return skewness * scale * index / (index - 1.0)


def pareto_noise(index, size, rng, scale=1.0, skewness=0.0):
    """Mean-zero noise ``S P - m`` (see the module docstring), shape ``size``.

    ``P = scale (1 + Lomax(index))`` is Pareto type I (``P >= scale``,
    ``P(P > t) = (scale/t)^index``); ``S = +1`` with probability
    ``(1+skewness)/2``.
    """
    if not -1.0 <= skewness <= 1.0:
        raise ValueError(f"`skewness` must be in [-1, 1]; received {skewness!r}.")
    m = pareto_mean_shift(index, scale, skewness)
    p = scale * (1.0 + rng.pareto(index, size=size))
    if skewness == 1.0:
        return p - m
    sign = np.where(rng.random(size) < 0.5 * (1.0 + skewness), 1.0, -1.0)
    return sign * p - m


def pareto_abs_moment(p, index, scale=1.0):
    """``E|S P|^p = E P^p = index scale^p / (index - p)`` (closed form); inf if ``p >= index``."""
    if not p > 0:
        raise ValueError(f"`p` must be > 0; received {p!r}.")
    return np.inf if p >= index else index * scale**p / (index - p)


def noise_moment_root(alpha, noise="pareto", noise_scale=1.0, skewness=0.0, pareto_offset=DEFAULT_PARETO_OFFSET):
    """An upper bound on ``(E|xi_1|^alpha)^(1/alpha)`` for one noise coordinate.

    ``"pareto"``: ``(index scale^alpha/(index-alpha))^(1/alpha) + |m|``
    (exact for ``skewness = 0``); ``"stable"``: ``inf`` (same alpha).
    """
    _check_noise(noise)
    _check_alpha(alpha)
    if noise == "stable":
        return np.inf
    a = pareto_index(alpha, pareto_offset)
    return pareto_abs_moment(alpha, a, noise_scale) ** (1.0 / alpha) + abs(pareto_mean_shift(a, noise_scale, skewness))


def gradient_moment_bound(alpha, mu=1.0, radius=10.0, dim=2, noise="pareto", noise_scale=1.0, skewness=0.0,
                          pareto_offset=DEFAULT_PARETO_OFFSET):
    """Assumption 4's ``G``: ``sup_{||x|| <= R} (E||mu x + xi||^alpha)^(1/alpha) <= G``.

    ``G = mu R + dim^(1/alpha) noise_moment_root(alpha, ...)``, i.e. for the
    pareto noise ``mu R + dim^(1/alpha) [(a s^alpha/(a-alpha))^(1/alpha) + |m|]``
    with ``a = alpha + pareto_offset``, ``s = noise_scale``,
    ``m = skewness s a/(a-1)`` (derivation in the module docstring). ``inf``
    for stable noise.
    """
    return mu * radius + dim ** (1.0 / alpha) * noise_moment_root(alpha, noise, noise_scale, skewness, pareto_offset)


def resolve_clip_scale(clip_scale, alpha, mu=1.0, radius=10.0, dim=2, noise="stable", noise_scale=1.0, skewness=1.0,
                       pareto_offset=DEFAULT_PARETO_OFFSET):
    """``G`` as a float: ``clip_scale`` itself, or ``gradient_moment_bound`` for ``"auto"``.

    The defaults are ``simulate``'s (skewness 1).
    """
    if isinstance(clip_scale, str):
        if clip_scale.strip().lower() != "auto":
            try:
                clip_scale = float(clip_scale)
            except ValueError:
                raise ValueError(f"`clip_scale` (G) must be a positive number or 'auto'; received {clip_scale!r}.") from None
        else:
            if noise == "stable":
                raise ValueError(
                    "`clip_scale='auto'` (G from the moment bound) needs a finite alpha-th moment; alpha-stable noise "
                    "with the same alpha has E|xi|^alpha = inf. Use noise='pareto' or a numeric G.")
            return float(gradient_moment_bound(alpha, mu, radius, dim, noise, noise_scale, skewness, pareto_offset))
    if not (isinstance(clip_scale, (int, float)) and clip_scale > 0 and np.isfinite(clip_scale)):
        raise ValueError(f"`clip_scale` (G) must be a positive number or 'auto'; received {clip_scale!r}.")
    return float(clip_scale)


def _check_noise(noise):
    if noise not in NOISES:
        raise ValueError(f"Unknown noise {noise!r}; expected one of {NOISES}.")


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
    noise="stable",
    pareto_offset=DEFAULT_PARETO_OFFSET,
):
    """Runs the methods on shared noise; returns ``(iterations, {method: errors})``.

    ``errors[m]`` has shape ``(len(iterations), num_seeds)``:
    ``mu/2 ||xbar_k||^2`` at the recorded ``k`` (log-spaced in
    ``[1, num_steps]``). ``clip_scale`` is Theorem 4's ``G`` (a number or
    ``"auto"``, see ``resolve_clip_scale``); ``radius`` the projection ball
    (GClip only); ``x0 = x0_norm e_1``; ``noise`` one of ``NOISES``.
    """
    _check_alpha(alpha)
    _check_noise(noise)
    methods = tuple(methods)
    if not methods:
        raise ValueError("`methods` is empty.")
    powers = [tau_power(m, alpha) for m in methods]
    for name, v in (("num_steps", num_steps), ("num_seeds", num_seeds), ("dim", dim), ("num_records", num_records), ("chunk", chunk)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer; received {v!r}.")
    for name, v in (("mu", mu), ("noise_scale", noise_scale), ("radius", radius)):
        if not v > 0:
            raise ValueError(f"`{name}` must be > 0; received {v!r}.")
    if not -1.0 <= skewness <= 1.0:
        raise ValueError(f"`skewness` must be in [-1, 1]; received {skewness!r}.")
    if not 0 <= x0_norm <= radius:
        raise ValueError(f"`x0_norm` must be in [0, radius]; received {x0_norm!r}.")
    clip_scale = resolve_clip_scale(clip_scale, alpha, mu, radius, dim, noise, noise_scale, skewness, pareto_offset)
    index = pareto_index(alpha, pareto_offset) if noise == "pareto" else None

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
        if noise == "stable":
            xi = stats.levy_stable.rvs(alpha, skewness, scale=noise_scale, size=(n, num_seeds, dim), random_state=rng)
        else:
            xi = pareto_noise(index, (n, num_seeds, dim), rng, noise_scale, skewness)
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


def summarize(alpha, iterations, errors, fit_from, num_repeats=1):
    """Per-method statistics of one ``simulate`` run (JSON-ready dict).

    ``fit_from`` is the fraction of ``num_steps`` where the fit window starts.
    The main statistic is the mean over seeds (Theorem 4 bounds the
    expectation); the median and the 90% quantile over seeds are reported too.
    ``num_repeats`` splits the seeds into that many equal consecutive groups
    (independent repetitions) and adds ``repeat_slopes`` (the slope of each
    group's mean error), ``repeat_slope_mean`` and ``repeat_slope_sd`` (sample
    standard deviation, ``ddof=1``; 0 for one group).
    """
    k_min = max(1, int(fit_from * iterations[-1]))
    if not isinstance(num_repeats, (int, np.integer)) or num_repeats < 1:
        raise ValueError(f"`num_repeats` must be a positive integer; received {num_repeats!r}.")
    out = {"alpha": alpha, "theory_slope": theoretical_slope(alpha), "fit_k_min": k_min, "num_repeats": int(num_repeats),
           "methods": {}}
    for name, e in errors.items():
        if e.shape[1] < num_repeats:
            raise ValueError(f"`num_repeats` ({num_repeats}) exceeds the number of seeds ({e.shape[1]}).")
        mean, median, q90 = e.mean(axis=1), np.median(e, axis=1), np.quantile(e, 0.9, axis=1)
        slope, intercept = fit_slope(iterations, mean, k_min)
        groups = np.array_split(np.arange(e.shape[1]), num_repeats)
        repeat_slopes = [fit_slope(iterations, e[:, g].mean(axis=1), k_min)[0] for g in groups]
        out["methods"][name] = {
            "tau_power": tau_power(name, alpha),
            "slope_of_mean": slope,
            "repeat_slopes": repeat_slopes,
            "repeat_slope_mean": float(np.mean(repeat_slopes)),
            "repeat_slope_sd": float(np.std(repeat_slopes, ddof=1)) if num_repeats > 1 else 0.0,
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


def run_experiment(alphas, output_dir, fit_from=0.01, num_repeats=1, **simulate_kwargs):
    """Simulates every alpha, writes ``rates.json`` and ``rates.png``; returns the dict.

    Each alpha's entry records ``G`` (the resolved ``clip_scale``) and, for
    pareto noise, ``noise_index``.
    """
    from acclip_tf import plotting

    files.makedirs(output_dir, "--output_dir")
    results, panels = {}, {}
    # simulate's defaults, overridden by the caller's: what each run used.
    settings = {name: p.default for name, p in inspect.signature(simulate).parameters.items()
                if p.default is not inspect.Parameter.empty}
    settings.update(simulate_kwargs)
    noise = settings["noise"]
    for alpha in alphas:
        start = time.time()
        iterations, errors = simulate(alpha, **simulate_kwargs)
        summary = summarize(alpha, iterations, errors, fit_from, num_repeats=num_repeats)
        summary["seconds"] = time.time() - start
        summary["G"] = resolve_clip_scale(
            settings["clip_scale"], alpha,
            **{k: settings[k] for k in ("mu", "radius", "dim", "noise", "noise_scale", "skewness", "pareto_offset")})
        summary["noise"] = noise
        if noise == "pareto":
            summary["noise_index"] = pareto_index(alpha, settings["pareto_offset"])
        results[f"{alpha:g}"] = summary
        panels[f"alpha={alpha:g}, G={summary['G']:.3g} (theory {summary['theory_slope']:.2f})"] = {
            name: {
                "iterations": iterations,
                "error": np.asarray(s["mean_error"]),
                "fit": (s["slope_of_mean"], s["intercept_of_mean"], summary["fit_k_min"]),
                "theory_slope": summary["theory_slope"] if name != "sgd" else None,
            }
            for name, s in summary["methods"].items()
        }
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in simulate_kwargs.items()}
    payload = {"config": dict(config, alphas=list(alphas), fit_from=fit_from, num_repeats=num_repeats), "results": results}
    files.write_text_atomically(files.join(output_dir, "rates.json"),
                                json.dumps(payload, indent=1))
    plotting.plot_error_curves(panels, files.join(output_dir, "rates.png"),
                               title=f"{noise} noise: mean over seeds of f(x_bar_k) - f*")
    return payload
