"""Training loss per token-frequency bucket over steps (Kunstner et al. 2024, Figure 1):
one panel per optimizer of a sweep whose trainer ran with --frequency_buckets, each line a
bucket (0 = the rarest tenth of the training targets' mass), the mean over the chosen
setting's seeds. Reads the seeds' metrics.jsonl (``fixed_train_loss_bucket<k>``).

    python bench/frequency_buckets.py --sweep=runs/evidence/lm_full_batch

Writes ``<sweep>/frequency_buckets.{png,md}`` (the md: each bucket's first and last loss
per optimizer, and the last loss's gap between them).
"""

import argparse
import json
import os
import re

import numpy as np

BUCKET = re.compile(r"^fixed_train_loss_bucket(\d+)$")


def bucket_curves(run_dir):
    """{bucket: [(step, loss), ...]} of one run."""
    curves = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            for key, value in rec.items():
                m = BUCKET.match(key)
                if m and value is not None:
                    curves.setdefault(int(m.group(1)), []).append((rec["step"], value))
    return curves


def mean_curves(run_dirs):
    """{bucket: (steps, mean loss over runs)} on the steps every run has."""
    per_run = [bucket_curves(d) for d in run_dirs]
    out = {}
    for k in sorted(set.intersection(*(set(c) for c in per_run))):
        steps = sorted(set.intersection(*(set(s for s, _ in c[k]) for c in per_run)))
        values = np.array([[dict(c[k])[s] for s in steps] for c in per_run])
        out[k] = (steps, values.mean(axis=0))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", required=True)
    a = p.parse_args(argv)
    with open(os.path.join(a.sweep, "results.json")) as f:
        doc = json.load(f)
    names = [n for n in doc["meta"]["config"]["optimizers"] if (doc["finals"] or {}).get(n)]
    panels = {n: mean_curves([os.path.join(a.sweep, n, run)
                              for run in doc["finals"][n]["names"]]) for n in names}
    if not any(panels.values()):
        raise SystemExit(f"error: no fixed_train_loss_bucket<k> in {a.sweep}'s runs (run the "
                         "trainer with --frequency_buckets and --fixed_train_examples)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2), sharey=True,
                             squeeze=False)
    colours = plt.cm.viridis(np.linspace(0, 1, max(len(c) for c in panels.values())))
    for ax, name in zip(axes[0], names):
        for k, (steps, loss) in panels[name].items():
            ax.plot(steps, loss, color=colours[k], label=f"bucket {k}")
        c = doc["selections"][name]["chosen"]
        ax.set(title=f"{name} (lr {c['learning_rate']:g})", xlabel="step",
               ylabel="training loss of the bucket's targets")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, title="0 = rarest", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(a.sweep, "frequency_buckets.png"), dpi=120)
    plt.close(fig)
    lines = ["# Loss per frequency bucket (fixed training windows), mean over seeds", "",
             "| bucket | " + " | ".join(f"{n} first | {n} last" for n in names)
             + (" | last: " + " - ".join(names) if len(names) == 2 else "") + " |",
             "|" + "---|" * (1 + 2 * len(names) + (len(names) == 2))]
    for k in sorted(set.intersection(*(set(c) for c in panels.values()))):
        cells = [f"{panels[n][k][1][0]:.3f} | {panels[n][k][1][-1]:.3f}" for n in names]
        if len(names) == 2:
            cells.append(f"{panels[names[0]][k][1][-1] - panels[names[1]][k][1][-1]:+.3f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    with open(os.path.join(a.sweep, "frequency_buckets.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
