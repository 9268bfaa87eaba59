"""Rare tokens vs gradient noise (issue 11, measurement 3): which minibatches form the tail?

Reads `trainers.gradient_noise` outputs (``bert_noise.json`` or
``causal_lm_noise.json``, with or without ``--parameter_groups``) of a model whose
minibatches this script can rebuild: the trainer run in ``--pretrain_dir`` (its
``config.json`` and ``vocab.txt``, the task classes the measurement used), the
first ``num_batches`` training minibatches at the measurement's ``batch_size``.
For each measurement (init, checkpoints) and each parameter group it relates the
per-minibatch noise norm to the rarity of the minibatch's prediction targets
(`trainers.noise.tokens`): Spearman's rho and the tail-vs-bulk comparison.

    python bench/rare_tokens.py --pretrain_dir=runs/noise/fig2_pretrain \
        --noise_json=runs/noise/fig2/bert_noise.json --output=runs/noise/rare_tokens

A JSON measured without ``--pretrain_dir`` (a fresh model) is accepted when its
minibatch stream is the run's (same seed, segments, vocabulary and batch size:
checked on the recorded facts), e.g. the init measurement of the same seed.
Writes ``rare_tokens.json``, ``rare_tokens.md`` and ``rare_tokens.png``.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers.noise import tasks, tokens  # noqa: E402

#: Facts that must agree between a JSON and the rebuilt task (same minibatch stream).
SAME_STREAM = ("vocab_size", "seq_length", "train_sequences", "train_documents")


class _Args:
    def __init__(self, pretrain_dir, batch_size):
        self.pretrain_dir = pretrain_dir
        self.batch_size = batch_size
        self.output_dir = None


def minibatch_targets(model, pretrain_dir, batch_size, num_batches):
    """(targets, weights, counts, facts) of the run's first minibatches."""
    if model == "bert":
        args = _Args(pretrain_dir, batch_size)
        task = tasks.bert_task(args, tasks.bert_experiment(args))
        train = task.data.train_segments
        pick = lambda b: (b["mask_ids"], b["mask_weights"])  # noqa: E731
    elif model == "causal_lm":
        _, task = tasks.lm_task(_Args(pretrain_dir, batch_size))
        train = task.data.train_windows
        pick = lambda b: (b["tokens"][:, 1:], np.ones_like(b["tokens"][:, 1:]))  # noqa: E731
    else:
        raise SystemExit(f"error: {model!r} measurements have no prediction targets "
                         "(bert or causal_lm only)")
    targets, weights = [], []
    for batch in task.train_dataset(None, batch_size, 0).take(num_batches).as_numpy_iterator():
        t, w = pick(batch)
        targets.append(np.asarray(t))
        weights.append(np.asarray(w))
    counts = tokens.unigram_counts([train], len(task.vocab))
    return targets, weights, counts, task.facts


def analyse(noise_docs, rarity):
    """{json name: {measurement: {group: {"spearman", "tail_vs_bulk"}}}}."""
    out = {}
    for name, doc in noise_docs.items():
        for label, m in doc["measurements"].items():
            series = {"total": m["noise_norms"]}
            for group, g in (m.get("groups") or {}).items():
                if g and g.get("noise_norms") and np.ptp(g["noise_norms"]) > 0:
                    series[group] = g["noise_norms"]
            out.setdefault(name, {})[label] = {
                group: {"spearman": tokens.rank_correlations(rarity, norms),
                        "tail_vs_bulk": tokens.tail_versus_bulk(rarity, norms)}
                for group, norms in series.items()}
    return out


def markdown(results):
    lines = ["| noise JSON | measurement | group | rho(surprisal) | rho(rare fraction) | "
             "surprisal tail / bulk (p) | rare fraction tail / bulk (p) |",
             "|---|---|---|---|---|---|---|"]
    for name, by_label in results.items():
        for label, by_group in by_label.items():
            for group, r in by_group.items():
                s, f = r["spearman"], r["tail_vs_bulk"]
                lines.append(
                    f"| {name} | {label} | {group} | {s['surprisal']['rho']:+.2f} | "
                    f"{s['rare_fraction']['rho']:+.2f} | {f['surprisal']['tail_mean']:.2f} / "
                    f"{f['surprisal']['bulk_mean']:.2f} ({f['surprisal']['p']:.1g}) | "
                    f"{f['rare_fraction']['tail_mean']:.3f} / "
                    f"{f['rare_fraction']['bulk_mean']:.3f} ({f['rare_fraction']['p']:.1g}) |")
    return "\n".join(lines) + "\n"


def plot(noise_docs, rarity, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, label, m) for name, doc in noise_docs.items()
              for label, m in doc["measurements"].items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (name, label, m) in zip(axes[0], panels):
        norms = np.asarray(m["noise_norms"])
        tail = norms >= np.quantile(norms, 1 - tokens.TAIL_FRACTION)
        ax.scatter(rarity["surprisal"][~tail], norms[~tail], s=3, alpha=0.4, label="bulk")
        ax.scatter(rarity["surprisal"][tail], norms[tail], s=5, color="C3",
                   label=f"top {tokens.TAIL_FRACTION:.0%}")
        rho = tokens.rank_correlations(rarity, norms)["surprisal"]["rho"]
        ax.set_title(f"{name}: {label} (rho {rho:+.2f})", fontsize=9)
        ax.set_xlabel("mean unigram surprisal of the targets (nats)")
        ax.set_ylabel("noise norm")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrain_dir", required=True,
                   help="the bert_pretrain or causal_lm run whose minibatches were measured")
    p.add_argument("--noise_json", required=True, action="append",
                   help="a gradient_noise JSON (repeatable)")
    p.add_argument("--output", required=True, help="output directory")
    a = p.parse_args(argv)
    docs = {}
    for path in a.noise_json:
        with open(path) as f:
            label = os.path.join(os.path.basename(os.path.dirname(os.path.abspath(path))),
                                 os.path.basename(path))
            docs[label] = json.load(f)
    first = next(iter(docs.values()))
    model, batch_size = first["model"], first["settings"]["batch_size"]
    num_batches = first["settings"]["num_batches"]
    for name, doc in docs.items():
        got = (doc["model"], doc["settings"]["batch_size"], doc["settings"]["num_batches"])
        if got != (model, batch_size, num_batches):
            raise SystemExit(f"error: {name} measured {got}, not {(model, batch_size, num_batches)}")
    targets, weights, counts, facts = minibatch_targets(model, a.pretrain_dir, batch_size,
                                                        num_batches)
    for name, doc in docs.items():
        diff = {k: (doc["facts"].get(k), facts.get(k)) for k in SAME_STREAM
                if k in doc["facts"] and doc["facts"].get(k) != facts.get(k)}
        if diff:
            raise SystemExit(f"error: {name} was measured on another minibatch stream: {diff}")
    rarity = tokens.batch_rarity(targets, weights, counts)
    results = analyse(docs, rarity)
    os.makedirs(a.output, exist_ok=True)
    record = dict(pretrain_dir=a.pretrain_dir, model=model, batch_size=batch_size,
                  num_batches=num_batches, rare_count=tokens.RARE_COUNT,
                  tail_fraction=tokens.TAIL_FRACTION,
                  rarity_summary={k: [float(np.mean(v)), float(np.std(v))]
                                  for k, v in rarity.items()},
                  results=results)
    with open(os.path.join(a.output, "rare_tokens.json"), "w") as f:
        json.dump(record, f, indent=1)
    table = markdown(results)
    with open(os.path.join(a.output, "rare_tokens.md"), "w") as f:
        f.write(table)
    plot(docs, rarity, os.path.join(a.output, "rare_tokens.png"))
    print(table)


if __name__ == "__main__":
    main()
