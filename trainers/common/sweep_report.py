"""A sweep's outputs: results.json, the markdown table and the Figure-3-style plot.

No TensorFlow here (matplotlib with the Agg backend for the plot).

results.json::

    {"meta": {"program", "trainer_flags", "config": {...}, "metric", "perplexity",
              "updated"},
     "trials": [{optimizer, learning_rate, tau, seed, split, steps, name, stage,
                 final_loss, initial_loss, curve: [[step, held-out loss], ...],
                 diverged, divergence_reason, score, wall_seconds, steps_trained,
                 clip_fraction, train_loss, exit_code, message, reused}, ...],
     "selections": {optimizer: {"chosen": {learning_rate, tau, validation_loss,
                                           steps, split} or null,
                                "lr_search": {values, scores, best, best_score,
                                              extensions, at_edge, bound_hit, stopped},
                                "tau_search": (the same, or null)}},
     "finals": {optimizer: {losses, mean, sd, n, diverged, seeds, names,
                            clip_fraction} or null}}

Non-finite numbers (a diverged loss, a +inf score) are written as null, so the
file is strict JSON.
"""

import datetime
import json
import math
import textwrap

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
    with open(path) as f:
        return json.load(f)


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


def ranking_line(rows, metric="loss"):
    """Who won and by how much: the optimizers by mean test metric (lower first), each
    after the first with its gap to the best; '' when fewer than two have one."""
    ranked = sorted(((r["final"]["mean"], r["final"]["sd"], r["optimizer"]) for r in rows
                     if r["final"] and r["final"]["n"] and r["final"]["mean"] is not None))
    if len(ranked) < 2:
        return ""
    best = ranked[0][0]
    parts = [f"{name} {mean:.4f}" + ("" if i == 0 else f" (+{mean - best:.4f})")
             for i, (mean, _, name) in enumerate(ranked)]
    return f"Ranking by mean test {metric} (lower is better): " + ", ".join(parts) + "."


def markdown_table(doc, title):
    """results.md: optimizer, chosen lr and tau, validation loss at the chosen point,
    test loss mean +- sd over seeds, perplexity, clip fraction, diverged runs, grid."""
    meta = doc["meta"]
    cfg = meta["config"]
    ppl = meta.get("perplexity", False)
    screen = cfg.get("screen_steps") or cfg["train_steps"]
    head = ["optimizer", "chosen lr", "tau",
            f"validation {meta.get('metric', 'loss')} ({screen} steps)",
            f"test {meta.get('metric', 'loss')} (mean ± sd, {cfg['train_steps']} steps)"]
    if ppl:
        head.append("test perplexity")
    head += ["clip fraction", "diverged (grid / seeds)", "lr grid", "tau grid"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in table_rows(doc):
        c, f = r["chosen"], r["final"]
        if c is None:
            cells = [r["optimizer"], "all diverged", "", "n/a", "n/a"] + (["n/a"] if ppl else [])
        else:
            test = "n/a"
            if f and f["n"]:
                test = f"{_num(f['mean'])} ± {_num(f['sd'])} (n={f['n']})"
            cells = [r["optimizer"], f"{c['learning_rate']:g}",
                     "" if c["tau"] is None else f"{c['tau']:g}",
                     _num(c["validation_loss"]), test]
            if ppl:
                cells.append(_num(math.exp(f["mean"]), ".2f")
                             if f and f["n"] and f["mean"] is not None else "n/a")
        clip = f.get("clip_fraction") if f else None
        fixed = bool(c and c.get("fixed"))
        cells += [_num(clip, ".3g"),
                  f"{r['grid_diverged']}/{r['grid_runs']} / {r['seed_diverged']}/{r['seed_runs']}",
                  f"{c['learning_rate']:g} (fixed)" if fixed else _grid_range(r["lr_search"]),
                  ("" if c["tau"] is None else f"{c['tau']:g} (fixed)") if fixed
                  else _grid_range(r["tau_search"])]
        lines.append("| " + " | ".join(cells) + " |")
    ranking = ranking_line(table_rows(doc), meta.get("metric", "loss"))
    notes = [""] + ([ranking, ""] if ranking else []) + [
        f"Chosen on the validation split by the final held-out {meta.get('metric', 'loss')} of "
        f"one run (seed 0) of {screen} steps per grid point; the chosen setting then ran "
        f"{cfg['seeds']} seeds (0..{cfg['seeds'] - 1}) of {cfg['train_steps']} steps on the "
        "test split: mean ± sample sd (ddof=1) over the seeds that did not diverge.",
    ]
    if ppl:
        notes.append("Perplexity: exp(mean test loss).")
    notes += [
        f"Diverged: final held-out loss NaN/inf or more than {cfg['divergence_margin']:g} above "
        "the run's initial (step-0) held-out loss, or the trainer stopped on a non-finite "
        "value; a diverged grid point is never chosen. Counts: diverged/runs of the grid, "
        "then of the seeds.",
        f"Grids: log-spaced; while the best point is at an edge the grid grows on that side "
        f"(at most {cfg['max_extensions']} times per search; 'extension bound hit' marks a "
        f"best still at the edge). Tau search: {cfg['tau_search']}.",
        "Clip fraction: the final clip fraction of the chosen setting's seeds (mean), for the "
        "clipping optimizers.",
        "",
    ]
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


def plot_bands(doc, path, title):
    """Held-out loss vs step of each optimizer's seeded runs: the mean over the seeds
    that did not diverge, and a min-max band. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = {t["name"]: t for t in doc["trials"]}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bands = []
    for r in table_rows(doc):
        f = r["final"]
        if not f:
            continue
        runs = [trials[n] for n in f.get("names", []) if n in trials]
        ok = [t for t in runs if not t["diverged"] and t["curve"]]
        if not ok:
            continue
        steps, mean, lo, hi, _ = _band(ok)
        c = r["chosen"]
        label = f"{r['optimizer']} (lr {c['learning_rate']:g}"
        label += f", tau {c['tau']:g})" if c["tau"] is not None else ")"
        label += f": {_num(f['mean'], '.3f')} ± {_num(f['sd'], '.3f')}"
        if len(runs) > len(ok):
            label += f", {len(runs) - len(ok)} diverged"
        (line,) = ax.plot(steps, mean, label=label)
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        bands.append((steps, lo, hi))
    note = "line: mean over seeds; band: min-max"
    limits = focus_limits(bands)
    if limits:
        ax.set_ylim(limits[0], limits[1])
        note += f"; the first evaluation (up to {limits[2]:.3g}) lies above the axis"
    metric = doc["meta"].get("metric", "loss")
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)
    ax.set(xlabel="step", ylabel=f"held-out (test) {metric}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.text(0.01, 0.01, note, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
