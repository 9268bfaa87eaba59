"""Tail statistics of gradient noise (Section 2, Figures 1, 2, 4): numpy/scipy only.

The paper's evidence for heavy-tailed noise is the distribution of the
*noise norm* ``||g_i - grad f(x)||`` of minibatch gradients ``g_i`` at fixed
parameters ``x``, where ``grad f`` is estimated by the mean over many
minibatches. `acclip_tf.noise.measure` measures that sample with TensorFlow;
this module summarises it and needs neither TensorFlow nor Keras:

* ``noise_norms_from_gradients``: the noise norms ``||g_i - mean_j g_j||`` of
  gradients already in memory (numpy).
* ``stable_tail_index``: the alpha-stable tail-index estimator of Mohammadi,
  Mohammadpour and Ogata (2015) that Simsekli et al. (2019, the paper's [25])
  use, on block sums.
* ``hill_tail_index``: Hill's (1975) estimator from the top order statistics.
* ``max_median_ratio``, ``kurtosis`` and ``tail_statistics`` (all of them).
* ``variance_vs_sample_size``: the running empirical variance (Figure 1 d/h).
* ``gaussian_reference_norms`` and ``stable_reference_norms``: synthetic
  references (Figure 1 c/g).

All statistics are vectorised numpy/scipy and take plain arrays, so they
work on norms from any source (a TensorBoard export, another framework).
"""

import numpy as np
from scipy import stats

from acclip_tf.noise import tails
from acclip_tf.noise._checks import as_sample, check_counts, check_k, generator

__all__ = [
    "gaussian_reference_norms",
    "hill_tail_index",
    "kurtosis",
    "max_median_ratio",
    "noise_norms_from_gradients",
    "stable_reference_norms",
    "stable_tail_index",
    "tail_statistics",
    "variance_vs_sample_size",
]


# --------------------------------------------------------------------------
# Tail statistics
# --------------------------------------------------------------------------


def stable_tail_index(samples, block_size=None, center=True):
    """Tail index of an alpha-stable law from block sums (Mohammadi et al. 2015).

    The estimator used by Simsekli, Sagun and Gurbuzbalaban (2019): split the
    ``K = K1 * K2`` (centred) samples ``X_i`` into ``K2`` blocks of ``K1`` and
    let ``Y_i`` be the block sums. For a strictly alpha-stable law
    ``Y ~ K1**(1/alpha) X`` in distribution, so

        1/alpha_hat = ( mean_i log|Y_i| - mean_i log|X_i| ) / log K1.

    It is consistent for samples in the domain of attraction of a strictly
    stable law; light tails (finite variance) give ``alpha_hat ~ 2``. The
    estimate is not clipped to ``(0, 2]``.

    Args:
        samples: 1-D array, at least 16 values.
        block_size: ``K1`` (>= 2); defaults to ``floor(sqrt(K))``. Samples
            beyond ``K1 * floor(K / K1)`` are dropped.
        center: subtract the sample mean first (needed for one-sided samples
            such as norms, whose sums otherwise grow like ``K1`` and bias the
            estimate towards 1). Use ``False`` for samples known to be
            centred at 0.

    Returns:
        The estimated tail index (a float).
    """
    x = as_sample(samples, min_size=16)
    if center:
        x = x - x.mean()
    k = x.size
    k1 = int(np.floor(np.sqrt(k))) if block_size is None else int(block_size)
    if block_size is not None and (k1 != block_size or k1 < 2):
        raise ValueError(f"`block_size` must be an integer >= 2; received {block_size!r}.")
    k2 = k // k1
    if k2 < 2:
        raise ValueError(
            f"`block_size`={k1} leaves fewer than 2 blocks of {k} samples."
        )
    x = x[: k1 * k2]
    absx = np.abs(x)
    if np.any(absx == 0):
        raise ValueError("`samples` has exact zeros (after centring); log|X| is undefined.")
    y = np.abs(x.reshape(k2, k1).sum(axis=1))
    if np.any(y == 0):
        raise ValueError("A block sum is exactly 0; log|Y| is undefined.")
    inv_alpha = (np.mean(np.log(y)) - np.mean(np.log(absx))) / np.log(k1)
    return float(1.0 / inv_alpha)


def hill_tail_index(samples, num_tail=None):
    """Hill's estimator of the tail index of ``|X|`` from its ``k`` largest values.

    With the order statistics ``X_(1) >= X_(2) >= ... >= X_(n)`` of ``|X|``,

        alpha_hat = k / sum_{i=1}^{k} ( log X_(i) - log X_(k+1) ).

    For a Pareto-type tail ``P(|X| > t) ~ C t**(-alpha)`` this estimates
    ``alpha``; for light tails (Gaussian, chi) the estimate is large and grows
    with ``n``.

    Args:
        samples: 1-D array (absolute values are used), at least 8 values.
        num_tail: ``k``, the number of top order statistics, in
            ``[2, n - 1]``; defaults to ``floor(sqrt(n))``.
    """
    x = np.abs(as_sample(samples, name="samples", min_size=8))
    n = x.size
    k = int(np.floor(np.sqrt(n))) if num_tail is None else num_tail
    check_k(k, n, name="num_tail", low=2)
    return float(tails.hill_estimates(x, [k])[0])


def max_median_ratio(samples):
    """``max(x) / median(x)`` of a non-negative sample (large for heavy tails)."""
    x = as_sample(samples, positive=True)
    median = np.median(x)
    if median == 0:
        raise ValueError("The median of `samples` is 0; the ratio is undefined.")
    return float(np.max(x) / median)


def kurtosis(samples):
    """Excess kurtosis ``E[(x - m)^4] / Var(x)^2 - 3`` (0 for a Gaussian)."""
    x = as_sample(samples, min_size=4)
    if np.all(x == x[0]):
        raise ValueError("`samples` is constant; kurtosis is undefined.")
    return float(stats.kurtosis(x, fisher=True, bias=True))


def tail_statistics(samples):
    """All tail statistics of a non-negative sample (e.g. noise norms), as a dict.

    Keys: ``num_samples``, ``mean``, ``median``, ``std``, ``max``, ``q99``,
    ``max_median_ratio``, ``kurtosis``, ``stable_alpha`` (centred,
    ``stable_tail_index``) and ``hill_alpha`` (``hill_tail_index``). The two
    estimators need at least 16 values; with fewer they are ``None``.
    """
    x = as_sample(samples, min_size=4, positive=True)
    out = {
        "num_samples": int(x.size),
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "std": float(x.std()),
        "max": float(x.max()),
        "q99": float(np.quantile(x, 0.99)),
        "max_median_ratio": max_median_ratio(x),
        "kurtosis": kurtosis(x),
        "stable_alpha": None,
        "hill_alpha": None,
    }
    if x.size >= 16:
        out["stable_alpha"] = stable_tail_index(x)
        out["hill_alpha"] = hill_tail_index(x)
    return out


# --------------------------------------------------------------------------
# Variance vs sample size (Figure 1 d/h)
# --------------------------------------------------------------------------


def variance_vs_sample_size(samples, sample_sizes=None, num_points=50, shuffle_seed=None):
    """Running empirical variance of a stochastic gradient as the sample grows.

    For gradient vectors ``g_1..g_N`` (a 2-D array ``(N, dim)``) the variance
    estimate from the first ``n`` of them is

        V_n = (1/n) sum_{i<=n} ||g_i - gbar_n||^2
            = (1/n) sum_{i<=n} ||g_i||^2 - ||gbar_n||^2,   gbar_n = mean_{i<=n} g_i,

    computed for all ``n`` at once with cumulative sums. For noise norms
    ``r_i = ||g_i - grad f||`` (a 1-D array, the mean already removed) it is
    ``V_n = (1/n) sum_{i<=n} r_i^2``. For finite-variance noise ``V_n``
    converges; for heavy tails it keeps jumping (Figure 1 d vs h).

    Args:
        samples: 1-D noise norms or 2-D ``(N, dim)`` gradients (N >= 2).
        sample_sizes: increasing integers in ``[1, N]``; defaults to
            ``num_points`` log-spaced sizes from 2 to N.
        num_points: used only without ``sample_sizes``.
        shuffle_seed: if not None, the order of the samples is permuted first.

    Returns:
        ``(sizes, variances)``, two 1-D numpy arrays.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"`samples` must be 1-D norms or 2-D gradients; received shape {x.shape}.")
    if x.shape[0] < 2:
        raise ValueError(f"`samples` needs at least 2 entries; received {x.shape[0]}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`samples` contains NaN or infinite values.")
    n = x.shape[0]
    if shuffle_seed is not None:
        x = x[generator(shuffle_seed).permutation(n)]
    if sample_sizes is None:
        sizes = np.unique(np.round(np.logspace(np.log10(2), np.log10(n), num_points)).astype(int))
    else:
        sizes = np.asarray(sample_sizes)
        if sizes.ndim != 1 or sizes.size == 0 or not np.issubdtype(sizes.dtype, np.integer):
            raise ValueError("`sample_sizes` must be a non-empty 1-D array of integers.")
        if sizes.min() < 1 or sizes.max() > n or np.any(np.diff(sizes) <= 0):
            raise ValueError(f"`sample_sizes` must be strictly increasing within [1, {n}].")
    counts = np.arange(1, n + 1, dtype=np.float64)
    if x.ndim == 1:
        variances = np.cumsum(x**2) / counts
    else:
        mean_sq = np.cumsum(np.sum(x**2, axis=1)) / counts
        running_mean = np.cumsum(x, axis=0) / counts[:, None]
        variances = np.maximum(mean_sq - np.sum(running_mean**2, axis=1), 0.0)
    return sizes, variances[sizes - 1]


# --------------------------------------------------------------------------
# Synthetic references (Figure 1 c/g)
# --------------------------------------------------------------------------


def gaussian_reference_norms(num_samples, dim, seed=None, scale=1.0):
    """Norms ``||z||`` of ``z ~ N(0, scale^2 I_dim)``: sqrt of a sum of squared Gaussians.

    The well-concentrated reference of Figure 1 (c): relative spread
    ``std/mean -> 1/sqrt(2 dim)``.
    """
    num_samples, dim = check_counts(num_samples=num_samples, dim=dim)
    z = generator(seed).standard_normal((num_samples, dim)) * float(scale)
    return np.linalg.norm(z, axis=1)


def stable_reference_norms(num_samples, dim, alpha, seed=None, beta=0.0, scale=1.0):
    """Norms ``||xi||`` of vectors with i.i.d. alpha-stable coordinates.

    The heavy-tailed reference of Figure 1 (g): each coordinate is
    ``scipy.stats.levy_stable(alpha, beta, scale=scale)`` (parameterisation
    S1); ``P(||xi|| > t) ~ C t**(-alpha)``, so the norm has tail index
    ``alpha`` whatever ``dim``. ``alpha == 2`` is the Gaussian
    ``N(0, 2 scale^2)``.
    """
    num_samples, dim = check_counts(num_samples=num_samples, dim=dim)
    if not 0.0 < alpha <= 2.0:
        raise ValueError(f"`alpha` must be in (0, 2]; received {alpha!r}.")
    if not -1.0 <= beta <= 1.0:
        raise ValueError(f"`beta` must be in [-1, 1]; received {beta!r}.")
    xi = stats.levy_stable.rvs(
        alpha, beta, scale=scale, size=(num_samples, dim), random_state=generator(seed)
    )
    return np.linalg.norm(xi, axis=1)


# --------------------------------------------------------------------------
# Noise norms
# --------------------------------------------------------------------------


def noise_norms_from_gradients(gradients, full_gradient=None):
    """``||g_i - gbar||`` for stacked flat gradients ``(N, dim)``.

    ``gbar`` is ``full_gradient`` when given, else ``mean_i g_i``.
    """
    g = np.asarray(gradients, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] < 1:
        raise ValueError(f"`gradients` must be 2-D (num_batches, dim); received shape {g.shape}.")
    gbar = g.mean(axis=0) if full_gradient is None else np.asarray(full_gradient, np.float64)
    if gbar.shape != (g.shape[1],):
        raise ValueError(f"`full_gradient` must have shape ({g.shape[1]},); received {gbar.shape}.")
    return np.linalg.norm(g - gbar, axis=1)
