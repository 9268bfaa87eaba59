"""Argument checks and the random generator shared by `stats` and `tails` (numpy only)."""

import numpy as np


def as_sample(x, name="x", min_size=2, positive=False):
    """A finite 1-D float64 array with at least ``min_size`` entries (``positive``: >= 0)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; received shape {x.shape}.")
    if x.size < min_size:
        raise ValueError(f"`{name}` needs at least {min_size} values; received {x.size}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    if positive and np.any(x < 0):
        raise ValueError(f"`{name}` must be >= 0 (norms); found negative values.")
    return x


def check_k(k, n, name="k", low=1, high=None):
    """``k`` as an int in ``[low, high]`` (default ``high = n - 1``), else a ValueError."""
    high = n - 1 if high is None else high
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not low <= k <= high:
        raise ValueError(f"`{name}` must be an integer in [{low}, {high}]; received {k!r}.")
    return int(k)


def check_counts(**counts):
    """The given counts (e.g. ``n=..., dim=...``) as ints, each a positive integer."""
    for name, v in counts.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer; received {v!r}.")
    return tuple(int(v) for v in counts.values())


def generator(seed):
    """A numpy Generator: ``seed`` itself if it is one, else ``default_rng(seed)``."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
