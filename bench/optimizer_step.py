"""Time `optimizer.apply` under `tf.function(jit_compile=True)` on BERT-base-sized variables.

    .venv/bin/python bench/optimizer_step.py [--repeats 15] [--scale 1.0]
    .venv/bin/python bench/optimizer_step.py --reductions   # GClip's norm alone

Builds the variable set of a 12-layer, 768-hidden BERT with a 30522-token
vocabulary (about 110M parameters in about 200 tensors; `--scale` shrinks
every dimension for a quick run), fixed random gradients, and times one
jit-compiled `apply` per optimizer, all in one process: after two warm-up
calls (compile), `--repeats` rounds that each time every optimizer once
(round-robin, so that outside load spreads evenly), median per optimizer. Prints a table
with ms/step, the ratio to Keras Adam, and the memory-traffic floor: bytes
that the update must read and write (words per parameter x parameters x 4)
divided by the copy bandwidth measured on the same machine with numpy's
in-place ``y += x`` (3 words per element).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

import acclip_tf  # noqa: E402


def bert_shapes(scale=1.0, layers=12, hidden=768, vocab=30522, positions=512):
    h = max(8, int(hidden * scale))
    ff = 4 * h
    v = max(64, int(vocab * scale))
    shapes = [(v, h), (positions, h), (2, h), (h,), (h,)]  # embeddings + LayerNorm
    for _ in range(layers):
        for _ in range(4):  # query, key, value, output projections
            shapes += [(h, h), (h,)]
        shapes += [(h,), (h,)]  # attention LayerNorm
        shapes += [(h, ff), (ff,), (ff, h), (h,)]  # feed-forward
        shapes += [(h,), (h,)]  # output LayerNorm
    shapes += [(h, h), (h,)]  # pooler
    shapes += [(h, h), (h,), (h,), (h,), (v,)]  # MLM head transform, LayerNorm, bias
    return shapes


# Words of 4 bytes read + written per parameter by one step.
TRAFFIC_WORDS = {
    "ACClip(alpha=1)": 7, "ACClip(alpha=1.5)": 7, "ACClip(alpha=2)": 7,
    "CClip": 3, "GClip": 4, "Keras Adam": 7, "Keras SGD": 3,
    "Keras SGD+global_clipnorm": 4,
    # The clip count comes out of the update's own pass (no second read).
    "GClip(skip_nonfinite)": 5, "ACClip(track_clip_fraction)": 7,
    "ACClip(normalize)": 9,  # + second_moment read and written
}

OPTIMIZERS = {
    "ACClip(alpha=1)": lambda: acclip_tf.ACClip(alpha=1.0),
    "ACClip(alpha=1.5)": lambda: acclip_tf.ACClip(alpha=1.5),
    "ACClip(alpha=2)": lambda: acclip_tf.ACClip(alpha=2.0),
    "CClip": lambda: acclip_tf.CClip(),
    "GClip": lambda: acclip_tf.GClip(),
    "Keras Adam": lambda: keras.optimizers.Adam(),
    "Keras SGD": lambda: keras.optimizers.SGD(),
    "Keras SGD+global_clipnorm": lambda: keras.optimizers.SGD(global_clipnorm=1.0),
    "GClip(skip_nonfinite)": lambda: acclip_tf.GClip(skip_nonfinite=True),
    "ACClip(track_clip_fraction)": lambda: acclip_tf.ACClip(track_clip_fraction=True),
    "ACClip(normalize)": lambda: acclip_tf.ACClip(normalize=True),
}


def _median_seconds(fn, repeats):
    fn()
    fn()  # compile + warm caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_bandwidth(num_elements, repeats):
    """Bytes/s of numpy's in-place ``y += x`` (reads 2, writes 1 word per element)."""
    x = np.ones(num_elements, np.float32)
    y = np.zeros(num_elements, np.float32)
    seconds = _median_seconds(lambda: np.add(x, y, out=y), repeats)
    return 3 * 4 * num_elements / seconds


def _blocked_sum(x, block):
    return tf.reduce_sum(tf.reduce_sum(tf.reshape(x, [-1, block]), 0))


# Ways to compute sum(g**2) over all tensors: what GClip's global norm costs.
REDUCTIONS = {
    "acclip_tf.clipping.global_norm, XLA": (
        lambda gs: acclip_tf.clipping.global_norm(gs) ** 2, True),
    "acclip_tf.clipping.global_norm, no XLA": (
        lambda gs: acclip_tf.clipping.global_norm(gs) ** 2, False),
    "one flat tensor, XLA": (
        lambda gs: tf.reduce_sum(tf.square(tf.concat([tf.reshape(g, [-1]) for g in gs], 0))),
        True),
    "[n/8, 8] column sums per tensor, XLA": (
        lambda gs: tf.add_n([_blocked_sum(tf.square(g), 8) if g.shape.num_elements() % 8 == 0
                             else tf.reduce_sum(tf.square(g)) for g in gs]), True),
    "tf.tensordot per tensor (BLAS dot), XLA": (
        lambda gs: tf.add_n([tf.tensordot(tf.reshape(g, [-1]), tf.reshape(g, [-1]), 1)
                             for g in gs]), True),
}


def time_reductions(grads, repeats):
    """ms and relative error vs float64 numpy of each way to sum the squares."""
    exact = sum(float(np.sum(np.square(g.numpy().astype(np.float64)))) for g in grads)
    print("\n| sum of squares | ms | relative error vs float64 |")
    print("|---|---|---|")
    for name, (fn, jit) in REDUCTIONS.items():
        compiled = tf.function(lambda fn=fn: fn(grads), jit_compile=jit)
        seconds = _median_seconds(lambda: compiled().numpy(), repeats)
        error = abs(float(compiled().numpy()) - exact) / exact
        print(f"| {name} | {seconds * 1e3:.1f} | {error:.1e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default="", help="comma-separated subset of the optimizers")
    parser.add_argument("--reductions", action="store_true",
                        help="time only the global sum of squares (GClip's norm), several ways")
    args = parser.parse_args()

    shapes = bert_shapes(args.scale)
    num_params = sum(int(np.prod(s)) for s in shapes)
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.standard_normal(s, dtype=np.float32) * 1e-2) for s in shapes]
    init = [rng.standard_normal(s, dtype=np.float32) * 0.02 for s in shapes]
    bandwidth = copy_bandwidth(num_params, args.repeats)
    print(f"{len(shapes)} tensors, {num_params / 1e6:.1f}M parameters; "
          f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; TF {tf.__version__}, "
          f"Keras {keras.__version__}, {os.cpu_count()} CPUs")
    if args.reductions:
        time_reductions(grads, args.repeats)
        return

    names = [n for n in OPTIMIZERS if not args.only or n in args.only.split(",")]
    steps = {}
    for name in names:
        variables = [tf.Variable(x) for x in init]
        optimizer = OPTIMIZERS[name]()
        optimizer.build(variables)
        step = tf.function(
            lambda o=optimizer, v=variables: o.apply(grads, v), jit_compile=True
        )
        sync = variables[0]
        steps[name] = lambda step=step, sync=sync: (step(), sync[0, 0].numpy())
        steps[name]()
        steps[name]()  # compile + warm caches
    # Round-robin: every round times each optimizer once, so that load from
    # other processes spreads evenly over all of them.
    times = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    results = {name: statistics.median(t) for name, t in times.items()}

    adam = results.get("Keras Adam")
    print("\n| optimizer | ms/step | vs Keras Adam | vs Keras SGD | floor ms (words/param) |")
    print("|---|---|---|---|---|")
    for name, seconds in results.items():
        floor = TRAFFIC_WORDS[name] * 4 * num_params / bandwidth
        vs_adam = f"{seconds / adam:.2f}x" if adam else "-"
        sgd = results.get("Keras SGD")
        vs_sgd = f"{seconds / sgd:.2f}x" if sgd else "-"
        print(f"| {name} | {seconds * 1e3:.1f} | {vs_adam} | {vs_sgd} | "
              f"{floor * 1e3:.1f} ({TRAFFIC_WORDS[name]}) |")


if __name__ == "__main__":
    main()
