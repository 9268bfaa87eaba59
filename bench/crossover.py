"""The batch-size crossover of docs/evidence.md (issue 19): SGD vs Adam on the training
loss of fixed windows at each batch size that has a finished sweep, the gap as a
function of tokens per step, and the verdict of the rule written before the runs.

    python bench/crossover.py --runs=runs/evidence [--vocab_size=8192]

Reads ``<runs>/lm_crossover_b<B>[_v<V>]/results.json`` (the stages lm_crossover_b*) and,
for a stage that has none there (it ran on another machine), its committed copy
``docs/figures/evidence/lm_crossover_b<B>[_v<V>].json``; writes
``<runs>/lm_crossover[_v<V>].{md,png,json}``.

The rule: "Adam is ahead at batch B" when its mean fixed-train loss is lower than SGD's by
>= 0.1 nats and by >= 3 seed sds (the larger of the two sample sds); "SGD is ahead" the
same way round; otherwise "no difference by the rule".
"""

import argparse
import glob
import json
import math
import os
import re

LEAD = 0.1  # nats
SDS = 3.0
TOKENS_PER_WINDOW = 64
COMMITTED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                         "figures", "evidence")


def verdict(sgd, adam, lead=LEAD, sds=SDS):
    """The rule on two {mean, sd, n} aggregates: "adam ahead", "sgd ahead" or "no
    difference" (also when either is missing)."""
    if not sgd or not adam or not sgd.get("n") or not adam.get("n"):
        return "no difference"
    gap = sgd["mean"] - adam["mean"]  # > 0: Adam lower (better)
    noise = sds * max(sgd.get("sd") or 0.0, adam.get("sd") or 0.0)
    if abs(gap) >= lead and abs(gap) >= noise:
        return "adam ahead" if gap > 0 else "sgd ahead"
    return "no difference"


def cell(results_json):
    """One batch size's row from a sweep's results.json."""
    with open(results_json) as f:
        doc = json.load(f)
    flags = doc["meta"]["trainer_flags"]
    batch = int(re.search(r"--global_batch_size=(\d+)", flags).group(1))
    row = dict(batch=batch, tokens_per_step=batch * TOKENS_PER_WINDOW,
               steps=doc["meta"]["config"]["train_steps"], source=results_json)
    for name in ("sgd", "adam"):
        final = (doc.get("finals") or {}).get(name) or {}
        chosen = ((doc.get("selections") or {}).get(name) or {}).get("chosen") or {}
        row[name] = dict(fixed_train=final.get("fixed_train"), held_out=final.get("held_out"),
                         diverged=final.get("diverged"), learning_rate=chosen.get("learning_rate"),
                         options=chosen.get("options"))
    row["gap_fixed_train"] = _gap(row, "fixed_train")
    row["gap_held_out"] = _gap(row, "held_out")
    row["verdict"] = verdict(row["sgd"]["fixed_train"], row["adam"]["fixed_train"])
    return row


def _gap(row, metric):
    a, b = row["sgd"][metric], row["adam"][metric]
    if not a or not b or not a.get("n") or not b.get("n"):
        return None
    return dict(gap=a["mean"] - b["mean"],
                sd=math.sqrt((a["sd"] or 0.0) ** 2 + (b["sd"] or 0.0) ** 2))


def _fmt(agg):
    return "n/a" if not agg or not agg.get("n") else f"{agg['mean']:.4f} ± {agg['sd']:.4f}"


def table(rows, vocab_size):
    lines = [f"# Batch-size crossover, causal LM, word vocabulary {vocab_size}", "",
             "Fixed-train loss: the fixed training windows (the same for every run), dropout off (the optimisation-"
             "speed metric the sweeps chose on); held-out beside it. Gap = SGD - Adam "
             "(> 0: Adam lower). Rule: Adam (SGD) ahead when its lead is >= 0.1 nats and "
             ">= 3 seed sds.", "",
             "| batch | tokens/step | steps | SGD (lr, options) | SGD fixed-train | "
             "Adam (lr, options) | Adam fixed-train | gap fixed-train | gap held-out | "
             "verdict |", "|" + "---|" * 10]
    for r in rows:
        def arm(name):
            o = r[name]
            opts = ", ".join(f"{k} {v:g}" for k, v in sorted((o["options"] or {}).items()))
            return f"{o['learning_rate']:g} ({opts})" if o["learning_rate"] else "n/a"

        def gap(g):
            return "n/a" if not g else f"{g['gap']:+.4f} ± {g['sd']:.4f}"

        lines.append(f"| {r['batch']} | {r['tokens_per_step']} | {r['steps']} | {arm('sgd')} | "
                     f"{_fmt(r['sgd']['fixed_train'])} | {arm('adam')} | "
                     f"{_fmt(r['adam']['fixed_train'])} | {gap(r['gap_fixed_train'])} | "
                     f"{gap(r['gap_held_out'])} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def plot(rows, path, vocab_size):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for metric, marker in (("fixed_train", "o"), ("held_out", "s")):
        pts = [(r["tokens_per_step"], r[f"gap_{metric}"]) for r in rows if r[f"gap_{metric}"]]
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1]["gap"] for p in pts],
                        yerr=[p[1]["sd"] for p in pts], marker=marker, capsize=3,
                        label=f"{metric.replace('_', '-')} loss")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(LEAD, color="grey", lw=0.8, ls="--", label="rule: 0.1 nats")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="tokens per step", ylabel="SGD - Adam (nats; > 0: Adam ahead)",
           title=f"SGD-Adam gap vs batch size (word vocabulary {vocab_size})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, "error bar: sqrt(sd_SGD^2 + sd_Adam^2) over the seeds", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cell_paths(runs, committed, suffix):
    """{stage: results file} of every lm_crossover_b<B><suffix> stage: the sweep's own
    results.json under `runs`, else the stage's committed copy under `committed`."""
    found = {}
    for path in glob.glob(os.path.join(committed, "lm_crossover_b*.json")):
        found[os.path.basename(path)[:-len(".json")]] = path
    for path in glob.glob(os.path.join(runs, "lm_crossover_b*", "results.json")):
        found[os.path.basename(os.path.dirname(path))] = path
    return [path for stage, path in sorted(found.items())
            if re.fullmatch(rf"lm_crossover_b\d+{suffix}", stage)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=os.path.join("runs", "evidence"))
    p.add_argument("--vocab_size", type=int, default=8192)
    p.add_argument("--committed", default=COMMITTED,
                   help="the stages' committed results (used where --runs has none)")
    a = p.parse_args(argv)
    suffix = "" if a.vocab_size == 8192 else f"_v{a.vocab_size}"
    paths = cell_paths(a.runs, a.committed, suffix)
    rows = sorted((cell(path) for path in paths), key=lambda r: r["batch"])
    if not rows:
        raise SystemExit(f"error: no lm_crossover_b*{suffix}/results.json under {a.runs}")
    out = os.path.join(a.runs, f"lm_crossover{suffix}")
    with open(out + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    with open(out + ".md", "w") as f:
        f.write(table(rows, a.vocab_size))
    plot(rows, out + ".png", a.vocab_size)
    print(table(rows, a.vocab_size))


if __name__ == "__main__":
    main()
