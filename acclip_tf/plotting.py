"""Matplotlib figures for gradient noise and convergence rates (Agg backend, PNG files).

* ``plot_noise_histograms``: one histogram panel per sample (Figure 1 b/c/f/g
  and Figure 4 style), each annotated with its tail statistics.
* ``plot_variance_curves``: empirical variance vs sample size (Figure 1 d/h).
* ``plot_noise_development``: noise-norm histograms at several checkpoints
  of a training run (Figure 2).
* ``plot_error_curves``: error vs iteration on log-log axes with fitted and
  theoretical slopes (Table 1 / Remark 1 experiment).
* ``plot_tail_histograms``: histograms of measured norms next to the Figure 1
  c/g references (normalised sums of squared Gaussians / alpha-stable
  variables), each annotated with the calibrated tail verdict.
* ``plot_survival_curves``: empirical survival functions on log-log axes, of
  the values over their median and of the excesses over the rule's threshold.
* ``plot_shape_vs_k``: the GPD shape ``xi`` over the number of excesses ``k``
  (a Hill-type plot) with its stability region and the rule's margins.
* ``plot_xi_vs_batch_size``: ``xi`` with its interval against the minibatch
  size (a stable-law tail keeps its index under averaging; a finite-variance
  one tends to a Gaussian).

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
from acclip_tf.noise import tails  # noqa: E402  (numpy/scipy only)
from acclip_tf.noise._checks import as_sample  # noqa: E402  (numpy only)

__all__ = [
    "plot_error_curves",
    "plot_noise_development",
    "plot_noise_histograms",
    "plot_shape_vs_k",
    "plot_survival_curves",
    "plot_tail_histograms",
    "plot_variance_curves",
    "plot_xi_vs_batch_size",
]


def _check_path(path):
    """`path` as a string (a local path or any filesystem TensorFlow knows: gs://, ram://),
    its folder made."""
    import tensorflow as tf

    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"`path` must end with .png; received {path!r}.")
    directory = path.rsplit("/", 1)[0] if "/" in path else ""
    if directory:
        tf.io.gfile.makedirs(directory)
    return path


def _check_samples(samples, name):
    if not hasattr(samples, "items") or len(samples) == 0:
        raise ValueError(f"`{name}` must be a non-empty mapping label -> 1-D array.")
    return {str(k): as_sample(v, name=f"{name}[{k!r}]", positive=True) for k, v in samples.items()}


def _save(fig, path):
    """Write the figure as PNG through tf.io.gfile (so gs:// and ram:// paths work)."""
    import io

    import tensorflow as tf

    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    with tf.io.gfile.GFile(path, "wb") as out:
        out.write(png.getvalue())
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


# ---------------------------------------------------------------- tail plots (acclip_tf.noise.tails)
def _verdict_text(report):
    lo, hi = report["ci"]
    return f"{report['verdict']}\nxi={report['xi']:+.2f} [{lo:+.2f}, {hi:+.2f}]\nn={report['n']}, k={report['k']}"


def plot_tail_histograms(samples, references, path, reports=None, bins=60, title=None):
    """Histograms of measured norms, then of the Figure 1 c/g references, one row.

    Args:
        samples: mapping label -> 1-D array of measured noise norms.
        references: mapping label -> 1-D array (e.g. ``tails.sum_of_squared_gaussians``
            and ``tails.sum_of_squared_stable``, as many draws as measured); may be empty.
            As in the paper, a heavy-tailed reference is drawn over its bulk: the
            x axis stops at its 99th percentile and the panel says how many draws lie
            beyond.
        path: the PNG to write.
        reports: optional mapping label -> ``tails.tail_report`` (computed when absent).
    """
    path = _check_path(path)
    samples = _check_samples(samples, "samples")
    refs = _check_samples(references, "references") if references else {}
    panels = {**samples, **refs}
    reports = dict(reports or {})
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.4), squeeze=False)
    for ax, (label, x) in zip(axes[0], panels.items()):
        is_ref = label in refs
        report = reports.get(label) or tails.tail_report(x)
        shown = x
        note = ""
        if is_ref:
            cut = np.quantile(x, 0.99)
            shown = x[x <= cut]
            if shown.size < x.size:
                note = f"\n{x.size - shown.size} draws > {cut:.3g} not shown"
        ax.hist(shown, bins=bins, density=True, color="tab:gray" if is_ref else "tab:blue", alpha=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("value" if is_ref else "noise norm")
        ax.set_ylabel("density")
        ax.text(0.97, 0.95, _verdict_text(report) + note, transform=ax.transAxes, ha="right",
                va="top", fontsize=7, bbox=dict(boxstyle="round", fc="white", alpha=0.8))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_survival_curves(samples, path, references=None, tail_fraction=tails.DEFAULT_TAIL_FRACTION, title=None):
    """Empirical survival ``P(X >= x)`` on log-log axes, two panels.

    Left: every value divided by its sample's median (a bulk shows as a cliff near
    1; a power-law tail as a straight line of slope ``-alpha``). Right: the excesses
    over the decision rule's threshold ``X_(k+1)`` (``k = tails.num_excesses(n)``)
    divided by their mean, with ``P(X - u >= y | X > u)``: location free;
    an exponential-type tail (``xi = 0``) follows the dashed ``exp(-y)``, a power
    law bends away above it.

    Args:
        samples: mapping label -> 1-D array of positive values (measured norms).
        path: the PNG to write.
        references: optional mapping label -> 1-D array, drawn in grey tones.
    """
    path = _check_path(path)
    samples = _check_samples(samples, "samples")
    refs = _check_samples(references, "references") if references else {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    styles = [(label, x, dict(lw=1.4)) for label, x in samples.items()]
    styles += [(label, x, dict(lw=1.0, ls="--", color=str(0.2 + 0.4 * i / max(1, len(refs) - 1))))
               for i, (label, x) in enumerate(refs.items())]
    for label, x, style in styles:
        values, surv = tails.empirical_survival(x / np.median(x))
        left.loglog(values, surv, label=label, **style)
        if x.size >= 4:
            k = tails.num_excesses(x.size, tail_fraction)
            top = np.sort(x)[::-1]
            excess = top[:k] - top[k]
            excess = excess[excess > 0]
            if excess.size:
                values, surv = tails.empirical_survival(excess / excess.mean())
                right.loglog(values, surv, label=label, **style)
    y = np.geomspace(1e-3, 20, 200)
    right.loglog(y, np.exp(-y), color="k", lw=0.8, ls=":", label="exp(-y) (xi = 0)")
    right.set_ylim(bottom=1e-3)
    left.set_xlabel("value / median")
    left.set_ylabel("P(X >= x)")
    left.set_title("all values", fontsize=10)
    right.set_xlabel("excess over X_(k+1) / mean excess")
    right.set_ylabel("P(excess >= y | X > X_(k+1))")
    right.set_title(f"top {tail_fraction:.0%} (the rule's excesses)", fontsize=10)
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_shape_vs_k(samples, path, estimator="gpd", margins=(tails.DEFAULT_LIGHT_MARGIN, tails.DEFAULT_HEAVY_MARGIN), title=None):
    """The shape ``xi`` against ``k`` (``tails.shape_vs_k``), one panel per sample.

    Each panel shades the stability region (``tails.stability_region``), marks the
    rule's ``k`` and draws ``xi = 0`` and the rule's margins (``xi > 0.1`` heavy,
    ``xi < 0.1`` light when the whole interval is on that side).

    Args:
        samples: mapping label -> 1-D array (at least 16 values).
        path: the PNG to write.
        estimator: passed to ``tails.shape_vs_k`` ("gpd", "moment", "pickands", "hill").
    """
    path = _check_path(path)
    samples = _check_samples(samples, "samples")
    n = len(samples)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (label, x) in zip(axes[0], samples.items()):
        ks, est = tails.shape_vs_k(x, estimator=estimator)
        ax.semilogx(ks, est, marker=".", color="tab:blue")
        k_lo, k_hi, median, _ = tails.stability_region(ks, est)
        ax.axvspan(k_lo, k_hi, color="tab:green", alpha=0.15, label=f"stable k {k_lo}-{k_hi}: xi {median:+.2f}")
        ax.axvline(tails.num_excesses(x.size), color="tab:red", lw=0.8, ls=":", label="the rule's k")
        ax.axhline(0.0, color="k", lw=0.6)
        for m in sorted(set(margins)):
            ax.axhline(m, color="gray", lw=0.6, ls="--")
        ax.set_title(f"{label} (n={x.size})", fontsize=9)
        ax.set_xlabel("k (excesses)")
        ax.set_ylabel(f"xi ({estimator})")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_xi_vs_batch_size(results, path, title=None):
    """The shape ``xi`` and its interval against the minibatch size (log x axis).

    Args:
        results: mapping label -> ``(batch_sizes, xi, intervals)``, ``intervals`` a
            list of ``(low, high)``.
        path: the PNG to write.
    """
    path = _check_path(path)
    if not hasattr(results, "items") or len(results) == 0:
        raise ValueError("`results` must be a non-empty mapping label -> (batch_sizes, xi, intervals).")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, entry in results.items():
        if len(entry) != 3:
            raise ValueError(f"`results[{label!r}]` must be (batch_sizes, xi, intervals).")
        sizes = np.asarray(entry[0], dtype=float)
        xi = np.asarray(entry[1], dtype=float)
        ci = np.asarray(entry[2], dtype=float).reshape(-1, 2)
        if not sizes.shape == xi.shape == ci.shape[:1] or sizes.ndim != 1:
            raise ValueError(f"`results[{label!r}]`: batch_sizes, xi and intervals must have equal length.")
        ax.errorbar(sizes, xi, yerr=[xi - ci[:, 0], ci[:, 1] - xi], marker="o", capsize=3, label=str(label))
    ax.set_xscale("log", base=2)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.axhline(tails.DEFAULT_HEAVY_MARGIN, color="gray", lw=0.6, ls="--", label="rule margin (xi = 0.1)")
    ax.set_xlabel("minibatch size")
    ax.set_ylabel("GPD shape xi of the noise norm (90 % interval)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
