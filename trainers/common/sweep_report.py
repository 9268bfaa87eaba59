"""A sweep's outputs: results.json, the markdown table and the Figure-3-style plot.

No TensorFlow here (matplotlib with the Agg backend for the plot).

results.json::

    {"meta": {"program", "trainer_flags", "config": {...}, "metric", "objective",
              "perplexity", "trials" (in_process/subprocess), "pruner": {kind, min_steps},
              "pruning": {trials, pruned, full_steps, run_steps, saved_steps,
                          saved_fraction} (the screens), "updated"},
     "trials": [{optimizer, learning_rate, tau, options, seed, split, steps, name, stage,
                 final_loss, initial_loss, curve: [[step, objective], ...],
                 held_out_curve, fixed_train_curve, held_out_final, fixed_train_final,
                 diverged, divergence_reason, pruned, score, wall_seconds, train_seconds,
                 steps_trained, clip_fraction, train_loss, exit_code, message,
                 reused (added from another search or sweep, not run here)}, ...],
     "selections": {optimizer: {"chosen": {learning_rate, tau, options, validation_loss,
                                           steps, split} or null,
                                "lr_search": {values, scores, best, best_score,
                                              extensions, at_edge, bound_hit, stopped},
                                "tau_search": (the same, or null),
                                "arms": [{options, learning_rate, tau, score, trials}] or null,
                                "trials": validation runs, "tied_learning_rates": [...]}},
     "finals": {optimizer: {losses, mean, sd, n, diverged, seeds, names, clip_fraction,
                            held_out: {mean, sd, n}, fixed_train: {mean, sd, n}} or null}}

`final_loss`, `score` and the finals' `mean`/`sd` are of the sweep's objective
(`held_out` or `fixed_train`); `held_out`/`fixed_train` give both metrics.

Non-finite numbers (a diverged loss, a +inf score) are written as null, so the
file is strict JSON.
"""

import datetime
import json
import math
import re
import textwrap
import warnings

from trainers.common import files
from trainers.common.files import write_text_atomically


def jsonable(value):
    """`value` with non-finite floats as None and tuples as lists (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def results_document(state, meta):
    doc = dict(meta=dict(meta), **state)
    doc["meta"]["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    return jsonable(doc)


def write_results(path, state, meta):
    doc = results_document(state, meta)
    write_text_atomically(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return doc


def load_results(path):
    return json.loads(files.read_text(path))


def pruning_line(pruning, kind):
    """The pruner's report: the screens it stopped and the steps saved vs full screens."""
    if kind == "none" or not pruning or not pruning.get("trials"):
        return f"pruning: {'off' if kind == 'none' else 'no screen run here'}"
    return (f"pruning ({kind}): {pruning['pruned']} of {pruning['trials']} screens stopped "
            f"early; they trained {pruning['run_steps']} of {pruning['full_steps']} steps "
            f"({pruning['saved_steps']} saved, {100 * pruning['saved_fraction']:.0f} %)")


def _num(value, spec=".4f"):
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _grid_range(search):
    if not search or not search.get("values"):
        return "n/a"
    values = search["values"]
    if len(values) == 1:
        return f"{values[0]:g} (fixed)"
    text = f"{values[0]:g} .. {values[-1]:g} ({len(values)} pts"
    if search.get("extensions"):
        text += f", {search['extensions']} ext"
    text += ")"
    if search.get("bound_hit"):
        text += " **best at edge: extension bound hit**"
    elif search.get("at_edge"):
        text += " best at edge"
    return text


def table_rows(doc):
    """One dict per optimizer (the order of meta.config.optimizers)."""
    trials = doc["trials"]
    rows = []
    for name in doc["meta"]["config"]["optimizers"]:
        sel = (doc["selections"] or {}).get(name) or {}
        chosen = sel.get("chosen")
        final = (doc["finals"] or {}).get(name)
        grid = [t for t in trials if t["optimizer"] == name and t["split"] == "validation"]
        seeds = [t for t in trials if final and t["optimizer"] == name
                 and t["name"] in final.get("names", [])]
        rows.append(dict(
            optimizer=name, chosen=chosen, final=final, lr_search=sel.get("lr_search"),
            tau_search=sel.get("tau_search"),
            grid_runs=len(grid), grid_diverged=sum(bool(t["diverged"]) for t in grid),
            seed_runs=len(seeds), seed_diverged=sum(bool(t["diverged"]) for t in seeds)))
    return rows


def ranking_line(rows, metric="loss", objective="held_out"):
    """Who won and by how much: the optimizers by mean final objective (lower first), each
    after the first with its gap to the best, marked a tie when the gap is within the
    larger of the two seed sds; '' when fewer than two have one."""
    ranked = sorted(((r["final"]["mean"], r["final"]["sd"], r["optimizer"]) for r in rows
                     if r["final"] and r["final"]["n"] and r["final"]["mean"] is not None))
    if len(ranked) < 2:
        return ""
    best, best_sd = ranked[0][0], ranked[0][1] or 0.0
    parts = []
    for i, (mean, sd, name) in enumerate(ranked):
        text = f"{name} {mean:.4f}"
        if i:
            gap = mean - best
            text += f" (+{gap:.4f}" + (", tie: within 1 sd" if gap <= max(best_sd, sd or 0.0)
                                       else "") + ")"
        parts.append(text)
    return (f"Ranking by mean {OBJECTIVE_NAMES[objective]} {metric} over the seeds (lower is "
            "better): " + ", ".join(parts) + ".")


OBJECTIVE_NAMES = {"held_out": "test (held-out)", "fixed_train": "fixed-training-examples"}


def _mean_sd(agg):
    if not agg or not agg.get("n"):
        return "n/a"
    return f"{_num(agg['mean'])} ± {_num(agg['sd'])} (n={agg['n']})"


def _options(options):
    return ", ".join(f"{k} {v:g}" for k, v in sorted((options or {}).items()))


def _tie(selection):
    tied = (selection or {}).get("tied_learning_rates") or []
    if len(tied) < 2:
        return ""
    return f" **tie: {min(tied):g} .. {max(tied):g} within 1 seed sd**"


def markdown_table(doc, title):
    """results.md: optimizer, chosen lr, tau and options, validation runs, the objective at
    the chosen point, both metrics (fixed training examples, held-out test) mean +- sd over
    seeds, perplexity, clip fraction, diverged runs, grids (ties marked)."""
    meta = doc["meta"]
    cfg = meta["config"]
    metric = meta.get("metric", "loss")
    objective = meta.get("objective", "held_out")
    ppl = meta.get("perplexity", False)
    steps = cfg["train_steps"]
    head = ["optimizer", "chosen lr", "tau", "options", "validation runs",
            f"{objective} {metric} at the choice (validation run)",
            f"fixed-train {metric} (mean ± sd)", f"test {metric} (mean ± sd)"]
    if ppl:
        head.append("test perplexity")
    head += ["clip fraction", "diverged (grid / seeds)", "lr grid", "tau grid"]
    lines = [f"# {title}", "", f"Objective: **{objective}** ({OBJECTIVE_NAMES[objective]} "
             f"{metric}); every run {steps} steps with the same schedule.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table_rows(doc):
        c, f = r["chosen"], r["final"]
        sel = (doc["selections"] or {}).get(r["optimizer"]) or {}
        if c is None:
            cells = [r["optimizer"], "all diverged", "", "", str(sel.get("trials", "")),
                     "n/a", "n/a", "n/a"] + (["n/a"] if ppl else [])
        else:
            held = (f or {}).get("held_out")
            if f and held is None and objective == "held_out":  # an older results.json
                held = dict(mean=f["mean"], sd=f["sd"], n=f["n"])
            cells = [r["optimizer"], f"{c['learning_rate']:g}",
                     "" if c["tau"] is None else f"{c['tau']:g}", _options(c.get("options")),
                     str(sel.get("trials", r["grid_runs"])), _num(c["validation_loss"]),
                     _mean_sd((f or {}).get("fixed_train")), _mean_sd(held)]
            if ppl:
                cells.append(_num(math.exp(held["mean"]), ".2f")
                             if held and held.get("n") and held["mean"] is not None else "n/a")
        clip = f.get("clip_fraction") if f else None
        fixed = bool(c and c.get("fixed"))
        cells += [_num(clip, ".3g"),
                  f"{r['grid_diverged']}/{r['grid_runs']} / {r['seed_diverged']}/{r['seed_runs']}",
                  f"{c['learning_rate']:g} (fixed)" if fixed
                  else _grid_range(r["lr_search"]) + _tie(sel),
                  ("" if c["tau"] is None else f"{c['tau']:g} (fixed)") if fixed
                  else _grid_range(r["tau_search"])]
        lines.append("| " + " | ".join(cells) + " |")
        for arm in sel.get("arms") or []:
            lr = "all diverged" if arm["learning_rate"] is None else f"lr {arm['learning_rate']:g}"
            lines.append(f"| ↳ arm | {lr} | | {_options(arm['options'])} | {arm['trials']} | "
                         f"{_num(arm['score'])} |" + " |" * (len(head) - 6))
    ranking = ranking_line(table_rows(doc), metric, objective)
    notes = [""] + ([ranking, ""] if ranking else []) + [
        f"Chosen on the validation split by the final {objective} {metric} of one run (seed "
        f"0) per grid point, each of the full {steps} steps (the seeded runs' schedule); the "
        f"chosen setting then ran {cfg['seeds']} seeds (0..{cfg['seeds'] - 1}) on the test "
        "split: mean ± sample sd (ddof=1) over the seeds that did not diverge. Fixed-train: "
        "the trainer's fixed training examples (the same for every optimizer and seed, "
        "dropout off); test: the held-out test split.",
        "Ties: grid values whose validation score lies within one seed sd of the chosen "
        "one's are marked; such a grid has no winner.",
    ]
    if ppl:
        notes.append("Perplexity: exp(mean test loss).")
    notes += [
        f"Diverged: final {objective} {metric} NaN/inf or more than "
        f"{cfg['divergence_margin']:g} above the run's initial (step-0) value, or the trainer "
        "stopped on a non-finite value; a diverged grid point is never chosen. Counts: "
        "diverged/runs of the grid, then of the seeds.",
        f"Grids: log-spaced; while the best point is at an edge the grid grows on that side "
        f"(at most {cfg['max_extensions']} times per search; 'extension bound hit' marks a "
        f"best still at the edge). Tau search: {cfg['tau_search']}. Arms (options): each "
        "gets its own rate search; the best arm is chosen.",
        "Clip fraction: the final clip fraction of the chosen setting's seeds (mean), for the "
        "clipping optimizers.",
    ]
    pruner = meta.get("pruner") or {}
    if pruner.get("kind", "none") != "none":
        notes.append(pruning_line(meta.get("pruning"), pruner["kind"]).capitalize() + f"; "
                     f"first rung at step {pruner['min_steps']}; a stopped screen is never "
                     "chosen.")
    notes.append("")
    return "\n".join(lines + notes)


def _band(records):
    """(steps, mean, lo, hi, sd) over records' curves, on the steps they all share."""
    import numpy as np

    curves = [dict((int(s), v) for s, v in r["curve"]) for r in records]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    values = np.array([[c[s] if c[s] is not None else np.nan for s in steps] for c in curves],
                      dtype=float)
    return (steps, values.mean(axis=0), values.min(axis=0), values.max(axis=0),
            values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(steps)))


def focus_limits(bands, ratio=3.0, margin=0.05):
    """y-limits that leave out an initial evaluation far above the rest (a ResNet's
    step-0 loss with untrained batch-norm statistics is ~100 where training ends near 1),
    or None when every value fits. `bands`: (steps, lo, hi) per curve. The initial
    values are left out when their largest exceeds `ratio` times the largest later value."""
    curves = [(lo, hi) for steps, lo, hi in bands if len(steps) > 1]
    if not curves:
        return None
    first = max(hi[0] for lo, hi in curves)
    low = min(min(lo[1:]) for lo, hi in curves)
    high = max(max(hi[1:]) for lo, hi in curves)
    if not high > 0 or first <= ratio * high:
        return None
    pad = margin * (high - low) or margin * abs(high)
    return low - pad, high + pad, first


def _metric_curve(trial, metric):
    """The trial's curve of `metric` (held_out / fixed_train); older records hold only
    the held-out one, as `curve`."""
    points = trial.get(f"{metric}_curve")
    if points is None and metric == "held_out" and "held_out_curve" not in trial:
        points = trial.get("curve")
    return points


def plot_bands(doc, path, title):
    """Each optimizer's seeded runs, one panel per recorded metric (fixed training
    examples, held-out test): the mean over the seeds that did not diverge and a min-max
    band, vs step. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = {t["name"]: t for t in doc["trials"]}
    rows = [r for r in table_rows(doc) if r["final"]]
    panels = [m for m in ("fixed_train", "held_out")
              if any(_metric_curve(trials[n], m) for r in rows
                     for n in r["final"].get("names", []) if n in trials)]
    panels = panels or ["held_out"]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    metric = doc["meta"].get("metric", "loss")
    notes = ["line: mean over seeds; band: min-max"]
    for ax, panel in zip(axes[0], panels):
        bands = []
        for r in rows:
            f = r["final"]
            runs = [trials[n] for n in f.get("names", []) if n in trials]
            ok = [dict(t, curve=_metric_curve(t, panel)) for t in runs
                  if not t["diverged"] and _metric_curve(t, panel)]
            if not ok:
                continue
            steps, mean, lo, hi, _ = _band(ok)
            c = r["chosen"]
            label = f"{r['optimizer']} (lr {c['learning_rate']:g}"
            label += f", tau {c['tau']:g})" if c["tau"] is not None else ")"
            agg = f.get(panel) or (f if panel == doc["meta"].get("objective", "held_out")
                                   else None)
            if agg and agg.get("n"):
                label += f": {_num(agg['mean'], '.3f')} ± {_num(agg['sd'], '.3f')}"
            if len(runs) > len(ok):
                label += f", {len(runs) - len(ok)} diverged"
            (line,) = ax.plot(steps, mean, label=label, marker="." if len(steps) < 30 else None)
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
            bands.append((steps, lo, hi))
        limits = focus_limits(bands)
        if limits:
            ax.set_ylim(limits[0], limits[1])
            notes.append(f"{panel}: the first evaluation (up to {limits[2]:.3g}) lies above "
                         "the axis")
        ax.set(xlabel="step", ylabel=("fixed training examples " if panel == "fixed_train"
                                      else "held-out (test) ") + metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap(title, 80 * len(panels))), fontsize=9)
    fig.text(0.01, 0.01, "; ".join(notes), fontsize=7)
    fig.tight_layout()
    with files.open_file(path, "wb") as fh:
        fig.savefig(fh, dpi=120, format="png")
    plt.close(fig)
    return path


def plot_screens(studies, directory):
    """Optuna's own view of each screen search under a pruner: every trial's reported
    curve (`optuna.visualization.matplotlib.plot_intermediate_values`; a pruned trial's
    curve ends at its rung), one PNG per study in `directory`, named after the study.
    Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    paths = []
    for name, study in sorted(studies.items()):
        if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = optuna.visualization.matplotlib.plot_intermediate_values(study)
        labels = {f"Trial{t.number}": ", ".join(f"{k} {v:g}" for k, v in t.params.items())
                  + (" (pruned)" if t.state == optuna.trial.TrialState.PRUNED else "")
                  for t in study.get_trials(deepcopy=False)}
        for line in ax.get_lines():
            line.set_label(labels.get(line.get_label(), line.get_label()))
        ax.legend(fontsize=7)
        ax.set_title(name, fontsize=8)
        ax.set(xlabel="step", ylabel="reported loss")
        path = files.join(directory, re.sub(r"[^A-Za-z0-9.=_-]+", "_", name).strip("_") + ".png")
        files.makedirs(directory)
        with files.open_file(path, "wb") as fh:
            ax.figure.savefig(fh, dpi=100, format="png")
        plt.close(ax.figure)
        paths.append(path)
    return paths
