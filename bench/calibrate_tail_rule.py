"""Calibrate acclip_tf.noise.tails.classify_tail on synthetic samples.

For every synthetic case (light: Gaussian-vector norms and normalised sums of
squared Gaussians, xi = 0; heavy: Pareto and alpha-stable tails on a bulk of
100, normalised sums of squared alpha-stable variables, xi > 0) and every
sample size n, draws `--replicates` independent samples, applies the rule
with its default parameters, and records how often it says "heavy", "light"
and "cannot tell":

* false-positive rate (light case called "heavy"),
* false-negative rate (heavy case called "light" or "cannot tell"),
  with the wrong-direction part (heavy called "light") given separately,

plus the median GPD shape xi, how often the bootstrap interval contains the
true xi (for the light cases the limit 0, which finite thresholds approach
from below), and, for comparison, the median of the raw-value
Hill tail index with k = floor(sqrt(n)) (the project's old statistic, which
is not location invariant).

Writes JSON to --output (default docs/figures/tail_rule_calibration.json)
and a markdown table next to it (same name, .md), and prints the table.

    PYTHONPATH=$PWD python bench/calibrate_tail_rule.py
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from acclip_tf.noise import tails as ts  # noqa: E402


def _chi_norm(d):
    # ||z|| for z ~ N(0, I_d), drawn exactly as sqrt(chi^2_d).
    return lambda n, rng: np.sqrt(rng.chisquare(d, size=n))


def _pareto_on_bulk(alpha, bulk=100.0):
    # bulk + classical Pareto(alpha) with minimum 1: P(X - bulk > t) = t**-alpha, t >= 1.
    return lambda n, rng: bulk + 1.0 + rng.pareto(alpha, size=n)


def _pareto_on_norm_bulk(alpha):
    # 10 * ||z||, z ~ N(0, I_100) (mean ~ 100, sd ~ 7), plus a Pareto(alpha) tail.
    return lambda n, rng: 10.0 * np.sqrt(rng.chisquare(100, size=n)) + 1.0 + rng.pareto(alpha, size=n)


def _stable_on_bulk(alpha, bulk=100.0):
    # bulk + |S|, S symmetric alpha-stable with unit scale.
    return lambda n, rng: bulk + np.abs(stats.levy_stable.rvs(alpha, 0.0, size=n, random_state=rng))


# (name, truth, true xi, sampler(n, rng))
CASES = [
    ("gaussian norm, d=1", "light", 0.0, _chi_norm(1)),
    ("gaussian norm, d=10", "light", 0.0, _chi_norm(10)),
    ("gaussian norm, d=100", "light", 0.0, _chi_norm(100)),
    ("gaussian norm, d=10000", "light", 0.0, _chi_norm(10000)),
    ("sum sq gaussians / dim, dim=1 (Fig 1c)", "light", 0.0,
     lambda n, rng: ts.sum_of_squared_gaussians(n, 1, rng)),
    ("sum sq gaussians / dim, dim=10 (Fig 1c)", "light", 0.0,
     lambda n, rng: ts.sum_of_squared_gaussians(n, 10, rng)),
    ("sum sq gaussians / dim, dim=100 (Fig 1c)", "light", 0.0,
     lambda n, rng: ts.sum_of_squared_gaussians(n, 100, rng)),
    ("sum sq stable / dim, alpha=1.5, dim=10 (Fig 1g)", "heavy", 2 / 1.5,
     lambda n, rng: ts.sum_of_squared_stable(n, 10, 1.5, rng)),
    ("sum sq stable / dim, alpha=1.8, dim=10 (Fig 1g)", "heavy", 2 / 1.8,
     lambda n, rng: ts.sum_of_squared_stable(n, 10, 1.8, rng)),
    ("100 + Pareto(1.5)", "heavy", 1 / 1.5, _pareto_on_bulk(1.5)),
    ("100 + Pareto(2.5)", "heavy", 1 / 2.5, _pareto_on_bulk(2.5)),
    ("100 + Pareto(4)", "heavy", 1 / 4.0, _pareto_on_bulk(4.0)),
    ("10 norm(N(0, I_100)) + Pareto(1.5)", "heavy", 1 / 1.5, _pareto_on_norm_bulk(1.5)),
    ("100 + abs(stable(1.5))", "heavy", 1 / 1.5, _stable_on_bulk(1.5)),
    ("100 + abs(stable(1.8))", "heavy", 1 / 1.8, _stable_on_bulk(1.8)),
]


def run(sizes, replicates, seed, num_bootstrap, cases=None):
    cases = CASES if cases is None else cases
    rows = []
    for ci, (name, truth, xi_true, sampler) in enumerate(cases):
        for n in sizes:
            counts = {"heavy": 0, "light": 0, "cannot tell": 0}
            xis, hills, covered = [], [], 0
            for r in range(replicates):
                rng = np.random.default_rng([seed, ci, n, r])
                x = sampler(n, rng)
                v = ts.classify_tail(x, num_bootstrap=num_bootstrap, seed=rng)
                counts[v.verdict] += 1
                xis.append(v.xi)
                covered += v.ci[0] <= xi_true <= v.ci[1]
                hills.append(ts.hill_estimator(x, int(np.floor(np.sqrt(n)))))
            p = {key: c / replicates for key, c in counts.items()}
            if truth == "light":
                error = p["heavy"]  # false positive
            else:
                error = p["light"] + p["cannot tell"]  # false negative
            rows.append(dict(
                case=name, truth=truth, xi_true=xi_true, n=n, replicates=replicates,
                rate_heavy=p["heavy"], rate_light=p["light"], rate_cannot_tell=p["cannot tell"],
                error_rate=error, error_kind="false positive" if truth == "light" else "false negative",
                wrong_direction_rate=p["heavy"] if truth == "light" else p["light"],
                median_xi=float(np.median(xis)), ci_coverage_of_true_xi=covered / replicates, median_raw_hill_alpha=float(np.median(hills)),
            ))
            print(f"{name:50s} n={n:5d} heavy {p['heavy']:.2f} light {p['light']:.2f} "
                  f"cannot {p['cannot tell']:.2f} median xi {np.median(xis):+.2f}", flush=True)
    return rows


def markdown(rows, sizes):
    by_case = {}
    for row in rows:
        by_case.setdefault((row["case"], row["truth"], row["xi_true"]), {})[row["n"]] = row
    head = "| case | truth (xi) | " + " | ".join(f"n = {n}" for n in sizes) + " |"
    lines = [head, "|---|---|" + "---|" * len(sizes)]
    for (case, truth, xi), per_n in by_case.items():
        cells = []
        for n in sizes:
            r = per_n[n]
            cells.append(
                f"{r['rate_heavy']:.2f} / {r['rate_cannot_tell']:.2f} / {r['rate_light']:.2f} "
                f"(xi {r['median_xi']:+.2f})"
            )
        lines.append(f"| {case} | {truth} ({xi:.2f}) | " + " | ".join(cells) + " |")
    lines += ["", "Error rate of the rule (false positive = light called heavy; false negative = heavy "
              "called light or cannot tell), and in brackets the median raw-value Hill alpha with "
              "k = floor(sqrt(n)) (the old statistic):", "",
              "| case | error | " + " | ".join(f"n = {n}" for n in sizes) + " |",
              "|---|---|" + "---|" * len(sizes)]
    for (case, truth, xi), per_n in by_case.items():
        kind = "FP" if truth == "light" else "FN"
        cells = [f"{per_n[n]['error_rate']:.2f} ({per_n[n]['median_raw_hill_alpha']:.1f})" for n in sizes]
        lines.append(f"| {case} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="docs/figures/tail_rule_calibration.json")
    parser.add_argument("--sizes", default="150,500,2000,5000")
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--num_bootstrap", type=int, default=ts.DEFAULT_NUM_BOOTSTRAP)
    parser.add_argument("--seed", type=int, default=20201130)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.time()
    rows = run(sizes, args.replicates, args.seed, args.num_bootstrap)
    wall = time.time() - t0
    table = markdown(rows, sizes)
    rule = dict(
        tail_fraction=ts.DEFAULT_TAIL_FRACTION, min_excesses=ts.DEFAULT_MIN_EXCESSES,
        heavy_margin=ts.DEFAULT_HEAVY_MARGIN, light_margin=ts.DEFAULT_LIGHT_MARGIN,
        level=ts.DEFAULT_LEVEL, num_bootstrap=args.num_bootstrap,
    )
    result = dict(
        command="PYTHONPATH=$PWD python bench/calibrate_tail_rule.py " + " ".join(sys.argv[1:] if argv is None else argv),
        date=time.strftime("%Y-%m-%d", time.gmtime()), wall_seconds=round(wall, 1),
        python=platform.python_version(), numpy=np.__version__,
        rule=rule, sizes=sizes, replicates=args.replicates, seed=args.seed,
        cell_format="P(heavy) / P(cannot tell) / P(light) (median xi)", rows=rows,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    md_path = os.path.splitext(args.output)[0] + ".md"
    with open(md_path, "w") as f:
        f.write(f"Rule: {rule}; {args.replicates} replicates per cell; seed {args.seed}; "
                f"wall {wall:.0f} s.\n\nCells: P(heavy) / P(cannot tell) / P(light) (median xi).\n\n")
        f.write(table + "\n")
    print(table)
    print(f"wall {wall:.1f} s -> {args.output}, {md_path}")


if __name__ == "__main__":
    main()
