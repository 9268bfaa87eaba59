"""Gradient-noise measurement and tail statistics (Section 2, Figures 1, 2, 4).

The paper's evidence for heavy-tailed noise is the distribution of the
*noise norm* ``||g_i - grad f(x)||`` of minibatch gradients ``g_i`` at fixed
parameters ``x``, where ``grad f`` is estimated by the mean over many
minibatches. This module measures that sample for any Keras model, loss and
`tf.data` dataset (optionally under a `tf.distribute` strategy), and
summarises it:

* ``gradient_noise_norms``: the measurement itself (two passes over the data).
* ``noise_norms_from_gradients``: the same quantity from gradients already in
  memory (numpy), ``||g_i - mean_j g_j||``.
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

import dataclasses

import numpy as np
from scipy import stats

__all__ = [
    "GradientNoiseSample",
    "gaussian_reference_norms",
    "gradient_noise_norms",
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
# Input validation
# --------------------------------------------------------------------------


def _as_sample(samples, name="samples", min_size=2, positive=False):
    """A finite 1-D float64 array with at least ``min_size`` entries."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; received shape {x.shape}.")
    if x.size < min_size:
        raise ValueError(
            f"`{name}` needs at least {min_size} values; received {x.size}."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    if positive and np.any(x < 0):
        raise ValueError(f"`{name}` must be >= 0 (norms); found negative values.")
    return x


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


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
    x = _as_sample(samples, min_size=16)
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
    x = np.abs(_as_sample(samples, min_size=8))
    n = x.size
    k = int(np.floor(np.sqrt(n))) if num_tail is None else num_tail
    if not (isinstance(k, (int, np.integer)) and 2 <= k <= n - 1):
        raise ValueError(f"`num_tail` must be an integer in [2, {n - 1}]; received {num_tail!r}.")
    top = np.sort(x)[::-1][: k + 1]
    if top[k] <= 0:
        raise ValueError("The (k+1)-th largest |sample| is 0; Hill's estimator is undefined.")
    return float(k / np.sum(np.log(top[:k]) - np.log(top[k])))


def max_median_ratio(samples):
    """``max(x) / median(x)`` of a non-negative sample (large for heavy tails)."""
    x = _as_sample(samples, positive=True)
    median = np.median(x)
    if median == 0:
        raise ValueError("The median of `samples` is 0; the ratio is undefined.")
    return float(np.max(x) / median)


def kurtosis(samples):
    """Excess kurtosis ``E[(x - m)^4] / Var(x)^2 - 3`` (0 for a Gaussian)."""
    x = _as_sample(samples, min_size=4)
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
    x = _as_sample(samples, min_size=4, positive=True)
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
        x = x[_rng(shuffle_seed).permutation(n)]
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
    num_samples, dim = _check_counts(num_samples, dim)
    z = _rng(seed).standard_normal((num_samples, dim)) * float(scale)
    return np.linalg.norm(z, axis=1)


def stable_reference_norms(num_samples, dim, alpha, seed=None, beta=0.0, scale=1.0):
    """Norms ``||xi||`` of vectors with i.i.d. alpha-stable coordinates.

    The heavy-tailed reference of Figure 1 (g): each coordinate is
    ``scipy.stats.levy_stable(alpha, beta, scale=scale)`` (parameterisation
    S1); ``P(||xi|| > t) ~ C t**(-alpha)``, so the norm has tail index
    ``alpha`` whatever ``dim``. ``alpha == 2`` is the Gaussian
    ``N(0, 2 scale^2)``.
    """
    num_samples, dim = _check_counts(num_samples, dim)
    if not 0.0 < alpha <= 2.0:
        raise ValueError(f"`alpha` must be in (0, 2]; received {alpha!r}.")
    if not -1.0 <= beta <= 1.0:
        raise ValueError(f"`beta` must be in [-1, 1]; received {beta!r}.")
    xi = stats.levy_stable.rvs(
        alpha, beta, scale=scale, size=(num_samples, dim), random_state=_rng(seed)
    )
    return np.linalg.norm(xi, axis=1)


def _check_counts(num_samples, dim):
    for name, v in (("num_samples", num_samples), ("dim", dim)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer; received {v!r}.")
    return int(num_samples), int(dim)


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


@dataclasses.dataclass
class GradientNoiseSample:
    """What ``gradient_noise_norms`` measured.

    Attributes:
        noise_norms: ``||g_i - gbar||`` per minibatch, shape ``(num_batches,)``.
        gradient_norms: ``||g_i||`` per minibatch.
        full_gradient_norm: ``||gbar||``.
        num_batches: how many minibatches were used (in each pass).
        full_gradient: ``gbar`` as a list of numpy arrays (one per trainable
            variable) when requested, else None.
    """

    noise_norms: np.ndarray
    gradient_norms: np.ndarray
    full_gradient_norm: float
    num_batches: int
    full_gradient: list = None

    def statistics(self):
        """``tail_statistics(self.noise_norms)`` plus the two gradient norms."""
        out = tail_statistics(self.noise_norms)
        out["full_gradient_norm"] = self.full_gradient_norm
        out["mean_minibatch_gradient_norm"] = float(np.mean(self.gradient_norms))
        return out


def _unpack(batch):
    """(x, y, sample_weight) from a dataset element, Keras-style."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch[0], batch[1], batch[2]
    raise ValueError(
        "Dataset elements must be (x, y) or (x, y, sample_weight) tuples; "
        f"received {type(batch).__name__}."
    )


_AVERAGING_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def _cross_replica_op(loss_fn, cross_replica):
    """The `tf.distribute.ReduceOp` that aggregates per-replica gradients."""
    import keras
    import tensorflow as tf

    if cross_replica == "auto":
        keras_scaled = (
            isinstance(loss_fn, keras.losses.Loss)
            and getattr(loss_fn, "reduction", None) in _AVERAGING_REDUCTIONS
        )
        cross_replica = "sum" if keras_scaled else "mean"
    if cross_replica == "sum":
        return tf.distribute.ReduceOp.SUM
    if cross_replica == "mean":
        return tf.distribute.ReduceOp.MEAN
    raise ValueError(
        f"`cross_replica` must be 'auto', 'sum' or 'mean'; received {cross_replica!r}."
    )


def gradient_noise_norms(
    model,
    loss_fn,
    dataset,
    num_batches=None,
    full_gradient=None,
    strategy=None,
    training=False,
    include_model_losses=False,
    return_full_gradient=False,
    cross_replica="auto",
):
    """Noise norms ``||g_i - grad f(x)||`` of minibatch gradients at fixed weights.

    ``g_i`` is the gradient of ``loss_fn(y, model(x), sample_weight)`` over
    ``model.trainable_variables`` for the i-th element of ``dataset`` (one
    minibatch). Under ``strategy`` each element is a *global* batch split
    over the replicas, and ``g_i`` is the mean of the per-replica gradients
    (the aggregated gradient an optimizer would apply; equal to the
    global-batch gradient when the replicas' batches have equal size and
    ``loss_fn`` averages over the batch).

    ``grad f`` is estimated by ``gbar = (1/n) sum_i g_i`` over the same
    ``n`` minibatches (first pass), unless ``full_gradient`` is given (e.g.
    from a larger sample); the second pass computes ``||g_i - gbar||``. The
    dataset must therefore yield the same minibatches when iterated twice (no
    reshuffling between iterations: shuffle with a fixed seed and
    ``reshuffle_each_iteration=False``, or shuffle before caching). Use
    ``drop_remainder=True`` so that every minibatch has the same size.

    Args:
        model: a built Keras model (under ``strategy.scope()`` when a
            strategy is used). Its weights are not changed.
        loss_fn: ``loss_fn(y_true, y_pred)`` or, when the dataset yields
            sample weights, ``loss_fn(y_true, y_pred, sample_weight)``
            returning a scalar (a Keras loss object works).
        dataset: a finite `tf.data.Dataset` of ``(x, y)`` or
            ``(x, y, sample_weight)`` minibatches.
        num_batches: use only the first ``num_batches`` elements.
        full_gradient: optional list of arrays (one per trainable variable).
        strategy: optional `tf.distribute.Strategy`.
        training: passed to ``model(x, training=...)`` (False: no dropout,
            so the only randomness is the data).
        include_model_losses: add ``sum(model.losses)`` (regularisers).
        return_full_gradient: keep ``gbar`` (numpy) in the result.
        cross_replica: ``"sum"``, ``"mean"`` or ``"auto"`` (sum for an
            averaging `keras.losses.Loss`, mean otherwise). Ignored without a
            strategy.

    Returns:
        A `GradientNoiseSample`.
    """
    import tensorflow as tf  # Deferred: the statistics above need no TF.

    if not callable(loss_fn):
        raise ValueError(f"`loss_fn` must be callable; received {loss_fn!r}.")
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"`dataset` must be a tf.data.Dataset; received {type(dataset).__name__}."
        )
    reduce_op = _cross_replica_op(loss_fn, cross_replica)
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"`num_batches` must be a positive integer; received {num_batches!r}.")
    variables = list(model.trainable_variables)
    if not variables:
        raise ValueError("`model` has no trainable variables (is it built?).")
    if num_batches is not None:
        dataset = dataset.take(num_batches)

    def replica_gradients(batch):
        x, y, sample_weight = _unpack(batch)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=training)
            if sample_weight is None:
                loss = loss_fn(y, y_pred)
            else:
                loss = loss_fn(y, y_pred, sample_weight)
            if include_model_losses and model.losses:
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, variables)
        return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]

    if strategy is None:
        batches = dataset
        minibatch_gradients = replica_gradients
    else:
        batches = strategy.experimental_distribute_dataset(dataset)

        def minibatch_gradients(batch):
            per_replica = strategy.run(replica_gradients, args=(batch,))
            return [
                strategy.reduce(reduce_op, g, axis=None)
                for g in per_replica
            ]

    @tf.function
    def accumulate(batch, total):
        """``total += g_i`` in float64, on the device (no gradient copied to the host)."""
        for t, g in zip(total, minibatch_gradients(batch)):
            t.assign_add(tf.cast(g, tf.float64))

    @tf.function
    def noise_and_norm(batch, gbar):
        grads = [tf.cast(g, tf.float64) for g in minibatch_gradients(batch)]
        diffs = [g - m for g, m in zip(grads, gbar)]
        return tf.linalg.global_norm(diffs), tf.linalg.global_norm(grads)

    if full_gradient is None:
        total = [tf.Variable(tf.zeros(v.shape, tf.float64), trainable=False) for v in variables]
        count = 0
        for batch in batches:
            accumulate(batch, total)
            count += 1
        if count == 0:
            raise ValueError("`dataset` yielded no minibatches.")
        gbar = [t.numpy() / count for t in total]
    else:
        if len(full_gradient) != len(variables):
            raise ValueError(
                f"`full_gradient` has {len(full_gradient)} arrays; the model has "
                f"{len(variables)} trainable variables."
            )
        gbar = [np.asarray(g, np.float64) for g in full_gradient]
        for g, v in zip(gbar, variables):
            if tuple(g.shape) != tuple(v.shape):
                raise ValueError(
                    f"`full_gradient` entry of shape {g.shape} does not match variable "
                    f"{v.path} of shape {tuple(v.shape)}."
                )
    gbar_tensors = [tf.constant(g) for g in gbar]
    noise, norms = [], []
    for batch in batches:
        r, n = noise_and_norm(batch, gbar_tensors)
        noise.append(float(r))
        norms.append(float(n))
    if not noise:
        raise ValueError("`dataset` yielded no minibatches.")
    if full_gradient is None and len(noise) != count:
        raise ValueError(
            f"`dataset` yielded {count} minibatches in the first pass and {len(noise)} "
            "in the second; it must be deterministic and finite."
        )
    return GradientNoiseSample(
        noise_norms=np.asarray(noise),
        gradient_norms=np.asarray(norms),
        full_gradient_norm=float(np.sqrt(sum(np.sum(g**2) for g in gbar))),
        num_batches=len(noise),
        full_gradient=gbar if return_full_gradient else None,
    )
