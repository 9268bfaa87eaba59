"""Table 1 / Remark 1 as an experiment: SGD vs projected GClip under heavy-tailed noise.

The simulation and its analysis live in `trainers.synthetic.heavy_tail` (its
docstring explains the problem, the methods and the two clipping schedules).

    python -m trainers.heavy_tail_rates --output_dir=runs/heavy_tail_rates
    python -m trainers.heavy_tail_rates --noise=pareto --G=auto --output_dir=runs/heavy_tail_rates_pareto

write ``rates.png`` and ``rates.json``. The first is the original setting
(alpha-stable noise with the theorem's alpha, so Assumption 4 fails, and
G = 1); the second satisfies Assumption 4 (Pareto tails of index
alpha + 0.1, G from the moment bound; formula in
``trainers.synthetic.heavy_tail.gradient_moment_bound``).
"""

from trainers.synthetic.heavy_tail import METHODS, run_experiment


def main(argv):
    del argv
    from absl import flags

    from trainers.common import files
    from trainers.common.errors import TrainerError, first_line

    f = flags.FLAGS
    files.makedirs(f.output_dir, what="--output_dir")
    try:
        alphas = [float(a) for a in f.alphas]
    except ValueError as e:
        raise TrainerError(f"--alphas must be numbers: {first_line(e)}") from e
    try:
        payload = _run(f, alphas)
    except ValueError as e:  # the simulation's checks of its arguments
        raise TrainerError(first_line(e)) from e
    for alpha, r in payload["results"].items():
        line = [f"{r['noise']} alpha={alpha} G={r['G']:.4g} theory {r['theory_slope']:+.3f}"]
        for name, s in r["methods"].items():
            line.append(
                f"{name}: slope {s['slope_of_mean']:+.3f} (repeats {s['repeat_slope_mean']:+.3f} +- {s['repeat_slope_sd']:.3f}) "
                f"final mean {s['final_mean_error']:.3g} median {s['final_median_error']:.3g}")
        print(" | ".join(line), flush=True)
    print(f"wrote {files.join(f.output_dir, 'rates.json')} and rates.png")


def _run(f, alphas):
    return run_experiment(
        alphas,
        f.output_dir,
        fit_from=f.fit_from,
        methods=tuple(f.methods),
        num_steps=f.num_steps,
        num_seeds=f.num_seeds,
        dim=f.dim,
        mu=f.mu,
        clip_scale=f.G,
        noise=f.noise,
        pareto_offset=f.pareto_offset,
        num_repeats=f.num_repeats,
        noise_scale=f.noise_scale,
        skewness=f.skewness,
        radius=f.radius,
        seed=f.seed,
    )


def _define_flags():
    from absl import flags

    flags.DEFINE_string("output_dir", None, "Where rates.json and rates.png go.", required=True)
    flags.DEFINE_list("alphas", ["1.2", "1.5", "1.8", "2.0"], "Tail indices of the noise, each in (1, 2].")
    flags.DEFINE_list("methods", list(METHODS), f"Subset of {METHODS}.")
    flags.DEFINE_integer("num_steps", 20000, "Iterations k.")
    flags.DEFINE_integer("num_seeds", 500, "Independent runs (vectorised).")
    flags.DEFINE_integer("dim", 2, "Dimension of x.")
    flags.DEFINE_float("mu", 1.0, "Strong convexity (f = mu/2 ||x||^2).")
    flags.DEFINE_string("G", "1.0", "G in tau_k = G k^beta: a positive number, or 'auto' for the moment bound "
                        "mu R + dim^(1/alpha) (E|xi_1|^alpha)^(1/alpha) (pareto noise only).")
    flags.DEFINE_enum("noise", "stable", ["stable", "pareto"],
                      "stable: alpha-stable with the theorem's alpha (E|g|^alpha = inf, Assumption 4 fails); "
                      "pareto: Pareto tails of index alpha + pareto_offset, mean 0 (Assumption 4 holds).")
    flags.DEFINE_float("pareto_offset", 0.1, "Pareto tail index minus alpha (> 0).")
    flags.DEFINE_float("noise_scale", 1.0, "Scale of each noise coordinate (stable scale, or the Pareto minimum).")
    flags.DEFINE_float("skewness", 1.0, "In [-1, 1]; 0 is symmetric noise (stable beta, or the Pareto sign balance).")
    flags.DEFINE_integer("num_repeats", 1, "Split the seeds into this many groups; report the sd of their slopes.")
    flags.DEFINE_float("radius", 10.0, "Radius of the projection ball (GClip).")
    flags.DEFINE_float("fit_from", 0.01, "Fit the slope over k >= fit_from * num_steps.")
    flags.DEFINE_integer("seed", 0, "Random seed.")


if __name__ == "__main__":
    from trainers.common import cli

    _define_flags()
    cli.run(main)
