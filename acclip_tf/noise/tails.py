"""Location- and scale-invariant tail statistics for gradient-noise norms.

Why this module exists
----------------------
The noise norms ``||g_i - grad f(x)||`` of Section 2 sit on a large bulk
(the norm of a d-dimensional noise vector concentrates near ``sqrt(d)``
times its scale). Hill's estimator on the *raw* values (``hill_estimator``,
the same formula as ``acclip_tf.noise.hill_tail_index``) measures the tail
of ``log X`` relative to ``log X_(k+1)`` and is therefore not invariant to
adding a constant: a Pareto(1.5) tail added to a bulk of 100 scores about 15
at n = 150, the same range as Gaussian-vector norms. The statistics here
work on the *excesses* ``X_(i) - u`` over a high threshold ``u`` and are
exactly invariant to ``X -> a X + b`` (``a > 0``), up to floating-point
rounding.

Conventions
-----------
* ``x`` is a 1-D sample; ``X_(1) >= X_(2) >= ... >= X_(n)`` are its order
  statistics from the top. ``k`` is the number of upper order statistics
  (excesses) used; the threshold is ``u = X_(k+1)``, i.e. an empirical
  ``1 - k/n`` quantile.
* ``xi`` is the extreme-value index (the generalized-Pareto shape):
  ``xi > 0`` is a power-law (Frechet-domain) tail with tail index
  ``alpha = 1/xi`` (``P(X > t) ~ t**(-alpha)``); ``xi = 0`` is an
  exponential-type tail (Gaussian, chi, chi-square, Gamma, exponential);
  ``xi < 0`` is a bounded tail (uniform: -1).
* Gaussian-vector norms and normalised sums of squared Gaussians have
  ``xi = 0``. At finite thresholds their excesses look *slightly* bounded
  (penultimate ``xi`` a little below 0) because their hazard rate grows.

Estimators and where each is valid
----------------------------------
``gpd_fit`` (primary)
    Peaks over threshold: the ``k`` excesses over ``X_(k+1)`` are fitted by a
    generalized Pareto law with location 0 using the Zhang & Stephens (2009,
    Technometrics 51:316) empirical-Bayes estimator. Valid for every real
    ``xi`` (reliable for ``xi > -1/2``); always exists (the maximum-likelihood
    fit may not, and is slow and erratic at k ~ 20); vectorised over many
    samples, which makes bootstrap intervals and calibration cheap. Exactly
    location and scale invariant. ``gpd_fit_mle`` (scipy's
    ``genpareto.fit`` with ``floc=0``) is kept as an independent reference.
``pickands_estimator``
    Pickands (1975): ``log((X_(k) - X_(2k)) / (X_(2k) - X_(4k))) / log 2``.
    Valid for every real ``xi``, exactly location and scale invariant, but
    uses only three order statistics (high variance). Needs ``4k <= n``.
``moment_estimator``
    Dekkers, Einmahl & de Haan (1989): valid for every real ``xi`` and scale
    invariant, but computed from ``log X``, so **not** location invariant
    (a shift changes the estimate at every finite n). With ``reference=m``
    it is applied to ``X - X_(m)`` for an intermediate ``m > k + 1``, the
    location-invariant variant of Ling, Peng & Hu (2007).
``excess_hill_estimator``
    Hill on the excesses over a lower threshold (Fraga Alves 2001):
    ``mean_{i<=k0} log((X_(i) - X_(k+1)) / (X_(k0+1) - X_(k+1)))`` with
    ``k0 < k``. Location and scale invariant, but it estimates ``xi`` only
    when ``xi > 0``; for ``xi <= 0`` it is positive by construction and must
    not be read as evidence of a power law. This is why Hill on excesses is
    not used by the decision rule.
``hill_estimator`` / ``hill_estimates``
    Hill (1975) on the raw values, returned as a tail index ``alpha`` (the
    project's historical convention). Valid only for ``xi > 0`` *and* data
    whose location is negligible relative to the tail (``X`` itself, not a
    bulk plus a tail). Scale invariant, not location invariant.

Plots and intervals: ``shape_vs_k`` (Hill-type plot of any estimator over
k), ``stability_region`` (the k-window where the estimate varies least),
``empirical_survival`` (log-log CCDF data), ``bootstrap_shape_ci``
(percentile bootstrap of the GPD shape).

Decision rule: ``classify_tail`` (see its docstring; calibrated by
``bench/calibrate_tail_rule.py``, table in docs/evidence.md, section "Tail
statistics: estimators and calibration").

References of Figure 1 c/g: ``sum_of_squared_gaussians`` and
``sum_of_squared_stable``.

numpy and scipy only: this module must not import TensorFlow or Keras.
"""

import dataclasses
import math

import numpy as np
from scipy import stats

from acclip_tf.noise._checks import as_sample, check_counts, check_k, generator

__all__ = [
    "GPDFit",
    "TailVerdict",
    "bootstrap_shape_ci",
    "classify_tail",
    "empirical_survival",
    "excess_hill_estimator",
    "gpd_fit",
    "gpd_fit_mle",
    "gpd_shape_zhang_stephens",
    "hill_estimator",
    "hill_estimates",
    "moment_estimator",
    "num_excesses",
    "pickands_estimator",
    "shape_vs_k",
    "stability_region",
    "sum_of_squared_gaussians",
    "sum_of_squared_stable",
    "tail_report",
]

# Default parameters of the decision rule (documented in classify_tail and
# calibrated by bench/calibrate_tail_rule.py).
DEFAULT_TAIL_FRACTION = 0.1
DEFAULT_MIN_EXCESSES = 20
DEFAULT_HEAVY_MARGIN = 0.1
DEFAULT_LIGHT_MARGIN = 0.1
DEFAULT_LEVEL = 0.9
DEFAULT_NUM_BOOTSTRAP = 200


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _descending(x):
    return np.sort(x)[::-1]


def num_excesses(n, tail_fraction=DEFAULT_TAIL_FRACTION, min_excesses=DEFAULT_MIN_EXCESSES):
    """The number of excesses ``k`` the rule uses for a sample of size ``n``.

    ``k = max(min_excesses, ceil(tail_fraction * n))``, capped at ``n - 1``.
    """
    if not 0.0 < tail_fraction < 1.0:
        raise ValueError(f"`tail_fraction` must be in (0, 1); received {tail_fraction!r}.")
    if n < 3:
        raise ValueError(f"Need n >= 3; received {n}.")
    return int(min(n - 1, max(int(min_excesses), math.ceil(tail_fraction * n))))


# --------------------------------------------------------------------------
# Generalized Pareto fit of the excesses (peaks over threshold)
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GPDFit:
    """A generalized-Pareto fit of the excesses over ``threshold``.

    ``xi``: shape (extreme-value index); ``sigma``: scale of the excesses;
    ``threshold``: ``X_(k+1)``; ``k``: number of excesses; ``method``.
    ``tail_index`` is ``1/xi`` when ``xi > 0`` and ``inf`` otherwise.
    """

    xi: float
    sigma: float
    threshold: float
    k: int
    method: str

    @property
    def tail_index(self):
        return 1.0 / self.xi if self.xi > 0 else math.inf


def gpd_shape_zhang_stephens(excesses):
    """Zhang & Stephens (2009) estimate of the GPD ``(xi, sigma)``, vectorised.

    Args:
        excesses: array ``(..., k)`` of non-negative excesses over a threshold
            (location 0), ``k >= 2``, each row with a positive maximum. Rows
            need not be sorted.

    Returns:
        ``(xi, sigma)``, arrays of shape ``excesses.shape[:-1]``.

    The estimator (ZS's ``k`` is ``-xi``; their ``theta = -xi / sigma``):
    for a grid ``theta_j = 1/y_max + (1 - sqrt(m / (j - 1/2))) / (3 y_q)``,
    ``j = 1..m``, ``m = 30 + floor(sqrt(k))``, ``y_q`` the first quartile of
    the excesses, the profile shape is ``xi(theta) = mean log(1 - theta y)``
    and the profile log-likelihood ``k (log(-theta/xi(theta)) - xi(theta) - 1)``;
    ``theta_hat`` is the likelihood-weighted mean of the grid and
    ``xi_hat = mean log(1 - theta_hat y)``, ``sigma_hat = -xi_hat/theta_hat``.
    No prior shrinkage of ``xi`` (unlike PSIS's variant, which shrinks
    towards 1/2 and would bias a heavy/light decision).
    """
    y = np.sort(np.asarray(excesses, dtype=np.float64), axis=-1)
    if y.shape[-1] < 2:
        raise ValueError("Need at least 2 excesses.")
    if np.any(y < 0) or not np.all(np.isfinite(y)):
        raise ValueError("Excesses must be finite and >= 0.")
    batch_shape = y.shape[:-1]
    k = y.shape[-1]
    y = y.reshape(-1, k)
    ymax = y[:, -1]
    if np.any(ymax <= 0):
        raise ValueError("Each row of excesses needs a positive maximum.")
    quartile = y[:, int(k / 4.0 + 0.5) - 1]
    # Ties at the threshold (bootstrap resamples) can make the quartile 0.
    quartile = np.where(quartile > 0, quartile, ymax / k)
    m = 30 + int(math.sqrt(k))
    j = np.arange(1, m + 1, dtype=np.float64)
    grid = (1.0 - np.sqrt(m / (j - 0.5)))  # all < 0, so theta < 1/ymax
    xi_out = np.empty(y.shape[0])
    theta_out = np.empty(y.shape[0])
    # Chunk rows so the (rows, m, k) temporary stays below ~16M doubles.
    chunk = max(1, int(16_000_000 // (m * k)))
    for start in range(0, y.shape[0], chunk):
        yc = y[start:start + chunk]
        theta = 1.0 / yc[:, -1:] + grid[None, :] / (3.0 * quartile[start:start + chunk, None])
        xi_grid = np.mean(np.log1p(-theta[:, :, None] * yc[:, None, :]), axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            loglik = k * (np.log(-theta / xi_grid) - xi_grid - 1.0)
        loglik = np.where(np.isfinite(loglik), loglik, -np.inf)
        loglik -= loglik.max(axis=1, keepdims=True)
        w = np.exp(loglik)
        w /= w.sum(axis=1, keepdims=True)
        theta_hat = np.sum(theta * w, axis=1)
        theta_out[start:start + chunk] = theta_hat
        xi_out[start:start + chunk] = np.mean(np.log1p(-theta_hat[:, None] * yc), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(theta_out != 0, -xi_out / theta_out, np.mean(y, axis=1))
    return xi_out.reshape(batch_shape), sigma.reshape(batch_shape)


def _top_excesses(x_desc, k):
    """Excesses ``X_(i) - X_(k+1)``, ``i = 1..k``, from descending-sorted rows."""
    return x_desc[..., :k] - x_desc[..., k:k + 1]


def gpd_fit(x, k=None, tail_fraction=DEFAULT_TAIL_FRACTION, min_excesses=DEFAULT_MIN_EXCESSES):
    """Peaks-over-threshold GPD fit (Zhang-Stephens) of the top ``k`` excesses.

    Args:
        x: 1-D sample, at least 4 values.
        k: number of excesses (threshold ``X_(k+1)``); defaults to
            ``num_excesses(n, tail_fraction, min_excesses)``.

    Returns:
        A ``GPDFit``. Invariant to ``x -> a x + b`` (``a > 0``): ``xi`` and
        ``k`` unchanged, ``sigma`` times ``a``, ``threshold`` mapped.
    """
    x = as_sample(x, min_size=4)
    n = x.size
    k = num_excesses(n, tail_fraction, min_excesses) if k is None else check_k(k, n, low=2)
    xd = _descending(x)
    y = _top_excesses(xd, k)
    if y[0] <= 0:
        raise ValueError("The top k+1 values are all equal; the excesses are 0.")
    xi, sigma = gpd_shape_zhang_stephens(y)
    return GPDFit(float(xi), float(sigma), float(xd[k]), k, "zhang-stephens")


def gpd_fit_mle(x, k=None, tail_fraction=DEFAULT_TAIL_FRACTION, min_excesses=DEFAULT_MIN_EXCESSES):
    """The same fit by maximum likelihood: ``scipy.stats.genpareto.fit(y, floc=0)``.

    An independent reference for ``gpd_fit`` (slow; the MLE is erratic for
    small ``k`` and does not exist for ``xi < -1``).
    """
    x = as_sample(x, min_size=4)
    n = x.size
    k = num_excesses(n, tail_fraction, min_excesses) if k is None else check_k(k, n, low=2)
    xd = _descending(x)
    y = _top_excesses(xd, k)
    xi, _, sigma = stats.genpareto.fit(y, floc=0.0)
    return GPDFit(float(xi), float(sigma), float(xd[k]), k, "mle")


# --------------------------------------------------------------------------
# Other extreme-value-index estimators
# --------------------------------------------------------------------------


def pickands_estimator(x, k):
    """Pickands (1975): ``xi = log((X_(k) - X_(2k)) / (X_(2k) - X_(4k))) / log 2``.

    Valid for every real ``xi``; exactly location and scale invariant; high
    variance. Requires ``1 <= k`` and ``4k <= n``. Returns ``nan`` when a
    spacing is 0 (ties).
    """
    x = as_sample(x, min_size=4)
    n = x.size
    k = check_k(k, n, low=1, high=n // 4)
    xd = _descending(x)
    a, b, c = xd[k - 1], xd[2 * k - 1], xd[4 * k - 1]
    if a - b <= 0 or b - c <= 0:
        return math.nan
    return float(math.log((a - b) / (b - c)) / math.log(2.0))


def moment_estimator(x, k, reference=None):
    """Dekkers-Einmahl-de Haan (1989) moment estimator of ``xi``.

    With ``L_i = log X_(i) - log X_(k+1)``, ``M1 = mean L``, ``M2 = mean L^2``:
    ``xi = M1 + 1 - 1 / (2 (1 - M1^2 / M2))``. Valid for every real ``xi``,
    scale invariant; NOT location invariant when ``reference`` is None
    (needs ``X_(k+1) > 0``).

    Args:
        reference: an order ``m`` with ``k + 1 < m <= n``; the estimator is then
            applied to ``X - X_(m)`` (Ling, Peng & Hu 2007), which makes it
            location invariant. ``k`` should be small relative to ``m``.
    """
    x = as_sample(x, min_size=4)
    n = x.size
    k = check_k(k, n, low=2)
    xd = _descending(x)
    if reference is not None:
        m = check_k(reference, n, name="reference", low=k + 2, high=n)
        xd = xd - xd[m - 1]
    if xd[k] <= 0:
        raise ValueError("X_(k+1) (after the reference shift) must be > 0.")
    logs = np.log(xd[:k]) - np.log(xd[k])
    m1 = np.mean(logs)
    m2 = np.mean(logs**2)
    if m2 <= 0:
        return math.nan
    return float(m1 + 1.0 - 0.5 / (1.0 - m1 * m1 / m2))


def excess_hill_estimator(x, k0, k):
    """Hill on excesses over a lower threshold (Fraga Alves 2001).

    ``mean_{i<=k0} log((X_(i) - X_(k+1)) / (X_(k0+1) - X_(k+1)))``, ``k0 < k``.
    Location and scale invariant; estimates ``xi`` only when ``xi > 0`` (it is
    positive for every sample, so it cannot show a light tail).
    """
    x = as_sample(x, min_size=4)
    n = x.size
    k = check_k(k, n, low=2)
    k0 = check_k(k0, n, name="k0", low=1, high=k - 1)
    xd = _descending(x)
    y = xd[: k0 + 1] - xd[k]
    if y[k0] <= 0:
        raise ValueError("X_(k0+1) equals X_(k+1); choose a larger k.")
    return float(np.mean(np.log(y[:k0]) - np.log(y[k0])))


def hill_estimator(x, k):
    """Hill (1975) tail index ``alpha = k / sum_{i<=k} (log X_(i) - log X_(k+1))``.

    Same formula as ``acclip_tf.noise.hill_tail_index`` (which uses |x|).
    On raw values: scale invariant, NOT location invariant; valid only for
    power-law tails of data whose location is negligible. Returns ``alpha``
    (``1/xi``), not ``xi``.
    """
    x = as_sample(x, min_size=3)
    return float(hill_estimates(x, np.array([check_k(k, x.size)]))[0])


def hill_estimates(x, ks=None):
    """Hill's ``alpha`` for every ``k`` in ``ks`` (default ``2..n-1``), vectorised."""
    x = as_sample(x, min_size=3)
    n = x.size
    ks = np.arange(2, n) if ks is None else np.asarray(ks, dtype=np.int64)
    if ks.ndim != 1 or np.any(ks < 1) or np.any(ks > n - 1):
        raise ValueError(f"`ks` must be integers in [1, {n - 1}].")
    xd = _descending(x)
    if xd[ks.max()] <= 0:
        raise ValueError("Hill's estimator needs X_(k+1) > 0.")
    logs = np.log(xd[: ks.max() + 1])
    csum = np.cumsum(logs)
    h = csum[ks - 1] / ks - logs[ks]
    with np.errstate(divide="ignore"):
        return 1.0 / h


# --------------------------------------------------------------------------
# Plots over k, survival curves
# --------------------------------------------------------------------------


_SHAPE_ESTIMATORS = ("gpd", "moment", "pickands", "hill")


def shape_vs_k(x, ks=None, estimator="gpd"):
    """The estimate of ``xi`` against ``k`` (a Hill-type plot), as arrays.

    Args:
        x: 1-D sample.
        ks: the values of ``k``; default: 30 values log-spaced in
            ``[10, n/2]`` (``[4, n/4]`` for Pickands), unique integers.
        estimator: ``"gpd"`` (Zhang-Stephens on excesses, vectorised),
            ``"moment"``, ``"pickands"`` or ``"hill"`` (``1/alpha`` of Hill on
            raw values; see the module docstring for validity).

    Returns:
        ``(ks, xi)``: int array and float array of the same length.
    """
    x = as_sample(x, min_size=8)
    n = x.size
    if estimator not in _SHAPE_ESTIMATORS:
        raise ValueError(f"`estimator` must be one of {_SHAPE_ESTIMATORS}; received {estimator!r}.")
    if ks is None:
        hi = n // 4 if estimator == "pickands" else n // 2
        lo = min(10, hi)
        ks = np.unique(np.round(np.geomspace(max(2, lo), max(2, hi), 30)).astype(np.int64))
    ks = np.asarray(ks, dtype=np.int64)
    if estimator == "hill":
        return ks, 1.0 / hill_estimates(x, ks)
    if estimator == "pickands":
        return ks, np.array([pickands_estimator(x, int(k)) for k in ks])
    if estimator == "moment":
        return ks, np.array([moment_estimator(x, int(k)) for k in ks])
    xd = _descending(x)
    out = np.empty(ks.size)
    for i, k in enumerate(ks):
        check_k(int(k), n, low=2)
        out[i] = gpd_shape_zhang_stephens(_top_excesses(xd, int(k)))[0]
    return ks, out


def stability_region(ks, estimates, window=None):
    """The window of consecutive ``k`` where the estimate varies least.

    Args:
        ks, estimates: output of ``shape_vs_k`` (``nan`` entries are skipped).
        window: number of consecutive points; default ``max(3, len // 4)``.

    Returns:
        ``(k_low, k_high, median_estimate, spread)``, where ``spread`` is the
        max minus the min of the estimates in the window (the criterion).
    """
    ks = np.asarray(ks)
    est = np.asarray(estimates, dtype=np.float64)
    ok = np.isfinite(est)
    ks, est = ks[ok], est[ok]
    if ks.size == 0:
        raise ValueError("No finite estimates.")
    w = max(3, ks.size // 4) if window is None else int(window)
    w = min(w, ks.size)
    windows = np.lib.stride_tricks.sliding_window_view(est, w)
    spread = windows.max(axis=1) - windows.min(axis=1)
    i = int(np.argmin(spread))
    return int(ks[i]), int(ks[i + w - 1]), float(np.median(windows[i])), float(spread[i])


def empirical_survival(x):
    """Log-log survival-curve data: ``(sorted x, P_n(X >= x_(i)))``.

    Values sorted ascending; the survival is ``(n - i) / n`` for the 0-based
    ascending rank ``i``, so it runs from 1 down to ``1/n`` (never 0, so
    every point can be drawn on log axes). For a location-free picture plot
    the excesses ``x - threshold`` of the points above a threshold.
    """
    x = np.sort(as_sample(x, min_size=1))
    n = x.size
    return x, (n - np.arange(n)) / n


# --------------------------------------------------------------------------
# Bootstrap and the decision rule
# --------------------------------------------------------------------------


def bootstrap_shape_ci(
    x,
    k=None,
    tail_fraction=DEFAULT_TAIL_FRACTION,
    min_excesses=DEFAULT_MIN_EXCESSES,
    num_bootstrap=DEFAULT_NUM_BOOTSTRAP,
    level=DEFAULT_LEVEL,
    seed=0,
):
    """Percentile-bootstrap interval for the GPD shape ``xi`` (Zhang-Stephens).

    Each replicate resamples all ``n`` values with replacement, takes its own
    threshold ``X*_(k+1)`` (same ``k``) and refits; the interval is the
    ``(1-level)/2`` and ``(1+level)/2`` quantiles of the replicates.

    Returns:
        ``(low, high, replicates)``; replicates whose top ``k+1`` values are
        all tied (no excess) are dropped.
    """
    x = as_sample(x, min_size=4)
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must be in (0, 1); received {level!r}.")
    if int(num_bootstrap) < 10:
        raise ValueError("`num_bootstrap` must be >= 10.")
    n = x.size
    k = num_excesses(n, tail_fraction, min_excesses) if k is None else check_k(k, n, low=2)
    rng = generator(seed)
    num_bootstrap = int(num_bootstrap)
    # Resample in chunks of at most ~4M values (one chunk whenever
    # num_bootstrap * n <= 4M, e.g. 200 x 20000).
    chunk = max(1, 4_000_000 // n)
    tops = []
    for start in range(0, num_bootstrap, chunk):
        idx = rng.integers(0, n, size=(min(chunk, num_bootstrap - start), n))
        # Only the top k+1 of each resample matter: partition instead of sort.
        tops.append(-np.partition(-x[idx], k, axis=1)[:, : k + 1])
    top = -np.sort(-np.concatenate(tops), axis=1)
    y = _top_excesses(top, k)
    y = y[y[:, 0] > 0]
    xi, _ = gpd_shape_zhang_stephens(y)
    lo, hi = np.quantile(xi, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi), xi


@dataclasses.dataclass(frozen=True)
class TailVerdict:
    """Output of ``classify_tail``.

    ``verdict``: ``"heavy"``, ``"light"`` or ``"cannot tell"``; ``xi``: the
    GPD shape of the sample; ``ci``: its bootstrap interval; ``k``,
    ``threshold``: the excesses used; ``params``: the rule's parameters.
    """

    verdict: str
    xi: float
    ci: tuple
    k: int
    threshold: float
    n: int
    params: dict


def classify_tail(
    x,
    tail_fraction=DEFAULT_TAIL_FRACTION,
    min_excesses=DEFAULT_MIN_EXCESSES,
    heavy_margin=DEFAULT_HEAVY_MARGIN,
    light_margin=DEFAULT_LIGHT_MARGIN,
    level=DEFAULT_LEVEL,
    num_bootstrap=DEFAULT_NUM_BOOTSTRAP,
    seed=0,
):
    """Heavy (power-law) tail, light tail, or cannot tell at this ``n``.

    The rule: fit the GPD shape ``xi`` to the ``k = max(min_excesses,
    ceil(tail_fraction * n))`` excesses over ``X_(k+1)`` (Zhang-Stephens),
    and take its ``level`` percentile-bootstrap interval ``[lo, hi]``
    (``num_bootstrap`` replicates, ``seed``). Then

    * ``"heavy"`` if ``lo > heavy_margin`` (a power-law tail with index below
      ``1/heavy_margin`` = 10 by default);
    * ``"light"`` if ``hi < light_margin`` (no power law with index below
      ``1/light_margin``: exponential-type, i.e. ``xi = 0`` as for Gaussian
      norms and chi-square sums, or bounded);
    * ``"cannot tell"`` otherwise.

    Defaults: ``tail_fraction=0.1``, ``min_excesses=20``, margins 0.1,
    ``level=0.9``, 200 bootstrap replicates. Requires ``light_margin <=
    heavy_margin`` (so at most one of the two conditions holds). Location and
    scale invariant (the bootstrap resamples indices, so with the same seed
    the verdict of ``a x + b`` equals that of ``x``). The measured error rates
    per case and ``n`` are in docs/evidence.md and
    docs/figures/tail_rule_calibration.json.
    """
    if light_margin > heavy_margin:
        raise ValueError("`light_margin` must be <= `heavy_margin`.")
    x = as_sample(x, min_size=4)
    n = x.size
    fit = gpd_fit(x, tail_fraction=tail_fraction, min_excesses=min_excesses)
    lo, hi, _ = bootstrap_shape_ci(
        x, k=fit.k, num_bootstrap=num_bootstrap, level=level, seed=seed
    )
    if lo > heavy_margin:
        verdict = "heavy"
    elif hi < light_margin:
        verdict = "light"
    else:
        verdict = "cannot tell"
    params = dict(
        tail_fraction=tail_fraction,
        min_excesses=min_excesses,
        heavy_margin=heavy_margin,
        light_margin=light_margin,
        level=level,
        num_bootstrap=num_bootstrap,
        seed=seed if isinstance(seed, (int, np.integer)) or seed is None else "generator",
        estimator="zhang-stephens GPD on excesses over X_(k+1)",
    )
    return TailVerdict(verdict, fit.xi, (lo, hi), fit.k, fit.threshold, n, params)


def tail_report(x, seed=0, **rule_kwargs):
    """Every statistic of this module for one sample, as a JSON-ready dict.

    Keys: ``n``, ``verdict``, ``xi``, ``ci`` (from ``classify_tail`` with
    ``rule_kwargs``), ``k``, ``threshold``, ``tail_index`` (``1/xi`` or
    ``None``), ``pickands`` (at ``k // 4``... see below), ``moment_location_invariant``,
    ``stability_region`` of the GPD shape over k (``k_low``, ``k_high``,
    ``median_xi``, ``spread``), ``raw_hill_alpha`` (Hill on raw values at
    ``k = floor(sqrt(n))``, for comparison with older numbers only) and
    ``max_over_median``. Pickands is evaluated at ``min(k, n // 4)`` and the
    location-invariant moment estimator at ``k`` with reference order
    ``min(n, 4k)``; either is ``None`` when undefined for this sample.
    """
    x = as_sample(x, min_size=16)
    n = x.size
    v = classify_tail(x, seed=seed, **rule_kwargs)
    k = v.k
    try:
        pick = pickands_estimator(x, max(1, min(k, n // 4)))
    except ValueError:
        pick = math.nan
    try:
        mom = moment_estimator(x, k, reference=min(n, 4 * k)) if 4 * k <= n else math.nan
    except ValueError:
        mom = math.nan
    ks, est = shape_vs_k(x)
    k_lo, k_hi, med, spread = stability_region(ks, est)
    try:
        raw_hill = hill_estimator(x, max(2, int(math.floor(math.sqrt(n)))))
    except ValueError:
        raw_hill = math.nan
    median = float(np.median(x))

    def finite(value):
        return float(value) if np.isfinite(value) else None

    return dict(
        n=n, verdict=v.verdict, xi=v.xi, ci=list(v.ci), k=k, threshold=v.threshold,
        tail_index=finite(1.0 / v.xi) if v.xi > 0 else None,
        pickands=finite(pick), moment_location_invariant=finite(mom),
        stability_region=dict(k_low=k_lo, k_high=k_hi, median_xi=med, spread=spread),
        raw_hill_alpha=finite(raw_hill),
        max_over_median=finite(float(np.max(x)) / median) if median > 0 else None,
        rule=v.params,
    )


# --------------------------------------------------------------------------
# References of Figure 1 c/g
# --------------------------------------------------------------------------


def sum_of_squared_gaussians(n, dim, rng=None):
    """Figure 1 (c): ``n`` draws of ``(1/dim) sum_{j<=dim} Z_j^2``, ``Z_j ~ N(0, 1)``.

    The paper calls it "a normalized sum of squared Gaussians" without giving
    ``dim`` or the normalisation; we divide by ``dim`` (mean 1, a
    ``chi^2_dim / dim`` law, i.e. Gamma(dim/2, scale 2/dim)). Exponential-type
    tail: ``xi = 0``. Note that it is the *squared* norm, not the norm.
    """
    n, dim = check_counts(n=n, dim=dim)
    return stats.chi2.rvs(dim, size=n, random_state=generator(rng)) / dim


def sum_of_squared_stable(n, dim, alpha, rng=None, beta=0.0):
    """Figure 1 (g): ``n`` draws of ``(1/dim) sum_{j<=dim} S_j^2``, ``S_j`` alpha-stable.

    ``S_j ~ scipy.stats.levy_stable(alpha, beta)`` (unit scale). The paper
    says "a sum of squared alpha-stable random variables" (caption) and
    plots it next to the normalised Gaussian sum; we use the same ``1/dim``
    normalisation, so ``alpha = 2`` gives ``2 chi^2_dim / dim``. ``S^2`` has
    tail index ``alpha/2``, so the sum has ``xi = 2/alpha`` (> 1: infinite
    mean) for ``alpha < 2``.
    """
    n, dim = check_counts(n=n, dim=dim)
    if not 0.0 < alpha <= 2.0:
        raise ValueError(f"`alpha` must be in (0, 2]; received {alpha!r}.")
    s = stats.levy_stable.rvs(alpha, beta, size=(n, dim), random_state=generator(rng))
    return np.mean(s * s, axis=1)
