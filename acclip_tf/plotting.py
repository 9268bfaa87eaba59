"""Matplotlib figures for gradient noise and convergence rates (Agg backend, PNG files).

* ``plot_noise_histograms``: one histogram panel per sample (Figure 1 b/c/f/g
  and Figure 4 style), each annotated with its tail statistics.
* ``plot_variance_curves``: empirical variance vs sample size (Figure 1 d/h).
* ``plot_noise_development``: noise-norm histograms at several checkpoints
  of a training run (Figure 2).
* ``plot_error_curves``: error vs iteration on log-log axes with fitted and
  theoretical slopes (Table 1 / Remark 1 experiment).

Every function writes one PNG to ``path`` (creating its directory) and
returns the path. No figure stays open.
"""

import os

try:
    import matplotlib
except ModuleNotFoundError as e:  # the light install: pip install acclip-tf
    raise ModuleNotFoundError(
        "acclip_tf.plotting needs matplotlib, which `pip install acclip-tf` does not "
        "install: pip install 'acclip-tf[plots]' (or matplotlib itself)",
        name=e.name,
    ) from e

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from acclip_tf.noise import stats as noise  # noqa: E402  (numpy only)

__all__ = [
    "plot_error_curves",
    "plot_noise_development",
    "plot_noise_histograms",
    "plot_variance_curves",
]


def _check_path(path):
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"`path` must end with .png; received {path!r}.")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return path


def _check_samples(samples, name):
    if not hasattr(samples, "items") or len(samples) == 0:
        raise ValueError(f"`{name}` must be a non-empty mapping label -> 1-D array.")
    return {str(k): noise._as_sample(v, name=f"{name}[{k!r}]", positive=True) for k, v in samples.items()}


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _stats_text(x):
    s = noise.tail_statistics(x)
    lines = [f"n={s['num_samples']}", f"max/median={s['max_median_ratio']:.3g}", f"kurtosis={s['kurtosis']:.3g}"]
    if s["stable_alpha"] is not None:
        lines.append(f"alpha stable={s['stable_alpha']:.2f}")
        lines.append(f"alpha Hill={s['hill_alpha']:.2f}")
    return "\n".join(lines)


def plot_noise_histograms(samples, path, bins=60, title=None, annotate=True):
    """Histograms of noise norms, one panel per entry of ``samples``.

    Args:
        samples: mapping label -> 1-D array of non-negative norms (e.g.
            ``{"ResNet": ..., "sum of squared Gaussians": ...}``).
        path: the PNG to write.
        bins: histogram bins per panel.
        title: optional figure title.
        annotate: write the tail statistics into each panel.
    """
    path = _check_path(path)
    samples = _check_samples(samples, "samples")
    n = len(samples)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (label, x) in zip(axes[0], samples.items()):
        ax.hist(x, bins=bins, density=True, color="tab:blue", alpha=0.8)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("noise norm")
        ax.set_ylabel("density")
        if annotate:
            ax.text(0.97, 0.95, _stats_text(x), transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    bbox=dict(boxstyle="round", fc="white", alpha=0.8))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_variance_curves(curves, path, title=None):
    """Empirical variance vs sample size on log-log axes (Figure 1 d/h).

    Args:
        curves: mapping label -> ``(sizes, variances)`` as returned by
            `acclip_tf.noise.variance_vs_sample_size`.
        path: the PNG to write.
    """
    path = _check_path(path)
    if not hasattr(curves, "items") or len(curves) == 0:
        raise ValueError("`curves` must be a non-empty mapping label -> (sizes, variances).")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, curve in curves.items():
        if len(curve) != 2:
            raise ValueError(f"`curves[{label!r}]` must be a (sizes, variances) pair.")
        sizes, variances = np.asarray(curve[0]), np.asarray(curve[1])
        if sizes.shape != variances.shape or sizes.ndim != 1:
            raise ValueError(f"`curves[{label!r}]`: sizes and variances must be 1-D of equal length.")
        ax.loglog(sizes, variances, marker=".", label=str(label))
    ax.set_xlabel("sample size")
    ax.set_ylabel("empirical variance")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_noise_development(samples_by_checkpoint, path, bins=50, title=None):
    """Noise-norm histograms at successive checkpoints, one row (Figure 2).

    Args:
        samples_by_checkpoint: ordered mapping checkpoint label (e.g.
            ``"step 0"``) -> 1-D array of noise norms.
        path: the PNG to write.
    """
    return plot_noise_histograms(samples_by_checkpoint, path, bins=bins, title=title or "noise norm during training")


def plot_error_curves(results, path, title=None):
    """Error vs iteration, log-log, one panel per alpha (Table 1 experiment).

    Args:
        results: mapping panel label (e.g. ``"alpha=1.5"``) -> mapping method
            -> dict with ``iterations``, ``error`` (1-D, same length),
            optional ``fit`` = ``(slope, intercept, k_min)`` of
            ``log error = intercept + slope log k`` and optional
            ``theory_slope`` (drawn as a dashed line through the fit's first
            point).
        path: the PNG to write.
    """
    path = _check_path(path)
    if not hasattr(results, "items") or len(results) == 0:
        raise ValueError("`results` must be a non-empty mapping panel -> {method: curve}.")
    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for ax, (panel, methods) in zip(axes[0], results.items()):
        for i, (method, curve) in enumerate(methods.items()):
            k = np.asarray(curve["iterations"], dtype=float)
            err = np.asarray(curve["error"], dtype=float)
            if k.shape != err.shape or k.ndim != 1:
                raise ValueError(f"`results[{panel!r}][{method!r}]`: iterations and error must be 1-D of equal length.")
            color = f"C{i}"
            line_label = method
            if curve.get("fit") is not None:
                slope, intercept, k_min = curve["fit"]
                line_label += f" (slope {slope:.2f})"
                kk = k[k >= k_min]
                ax.loglog(kk, np.exp(intercept) * kk**slope, color=color, lw=0.8, ls=":")
                if curve.get("theory_slope") is not None and kk.size:
                    y0 = np.exp(intercept) * kk[0] ** slope
                    ax.loglog(kk, y0 * (kk / kk[0]) ** curve["theory_slope"], color="k", lw=0.8, ls="--")
            ax.loglog(k, err, color=color, label=line_label)
        ax.set_title(str(panel))
        ax.set_xlabel("iteration k")
        ax.set_ylabel("f(x_bar_k) - f*")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title + "   (dashed: theory slope)")
    return _save(fig, path)
