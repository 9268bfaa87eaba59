"""The batch-size crossover and Figure 3a past this CPU's reach, on a GPU host that has
JAX and Keras but no TensorFlow (issue 19, item 9; never part of the tests' GPU-free
runs or of CI).

On the 2-core CPU the crossover stops at 16k tokens per step (a 97-minute cell). The
optimizers are pure `keras.ops`, and so are the trainers' optimizer factory and
schedule (`trainers.common.optimizers`, no TensorFlow), so the larger cells run under
``KERAS_BACKEND=jax``:

1. On a TensorFlow host (this one), the causal LM's windows as `trainers.causal_lm`
   makes them (corpus, document split, word vocabulary, 64-token windows, the fixed
   training windows of the metric) and its model shape, into one file:

       python bench/gpu_crossover.py export --out=runs/gpu/lm_windows.npz

2. On the GPU host, with this repository and the Keras wheel carried (JAX there):

       KERAS_BACKEND=jax python bench/gpu_crossover.py run \\
           --data=lm_windows.npz --out=gpu_crossover.json

   For each batch (`--batches`, windows of 64 tokens) and optimizer: the tiny LM's
   shape as a GPT-2 decoder in plain Keras layers (pre-LayerNorm blocks, causal
   self-attention, learned positions, GELU MLP, tied output: KerasHub's GPT2Backbone's
   structure, not its code, so the numbers are comparable in trend, not digit for digit,
   with the CPU cells), `--steps` steps of linear warm-up then linear decay to 0, a
   factor-2 rate grid around the 16k cell's choice x sqrt(batch / 256) (grown at an
   edge, up to twice), the best rate by the final fixed-train loss of seed 0, then
   seeds 0 .. `--seeds`-1 at it. Every run is appended to the JSON as it ends, so a run
   stopped by `--max_minutes` keeps what finished; the markdown table beside it gives
   each cell's mean +- sd and the pre-written rule's verdict (bench/crossover.py).

3. Copy the JSON and the table to docs/figures/evidence/ and cite them.

Metric: the mean next-token cross-entropy on the fixed training windows, dropout off
(optimisation speed, as the CPU cells), the held-out windows' loss beside it.
"""

import argparse
import importlib.util
import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from trainers.common import sweep as sweep_lib  # noqa: E402 - no TensorFlow, no Optuna

# The 16k-tokens/step cell's choices (docs/figures/evidence/lm_crossover_b256.md and
# lm_figure3a_b256.md), the centre of each optimizer's grid at 256 windows.
RATES_AT_256 = "sgd=0.1,adam=0.008,acclip_norm=0.004,acclip=2,gclip=3,cclip=3"
# Evaluations per run after step 0 (docs/evidence.md's plots want >= 20 points a curve).
CURVE_POINTS = 20
# Settings beside the rate: the CPU cells' chosen arms and Figure 3a's active clipping.
SETTINGS = {
    "sgd": dict(momentum=0.9),
    "adam": dict(beta_2=0.95),
    "acclip_norm": dict(acclip_initial_tau=1e-6, epsilon=1e-6),
    "acclip": dict(acclip_initial_tau=1e-6, epsilon=1e-6),
    "gclip": dict(tau=0.1),
    "cclip": dict(tau=3e-4),
}
MAX_EXTENSIONS = 2


def _crossover_rule():
    spec = importlib.util.spec_from_file_location(
        "crossover", os.path.join(ROOT, "bench", "crossover.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.verdict


# ---------------------------------------------------------------- export (TF host)
def export(out, trainer_flags):
    """The causal LM's windows and shape, as trainers.causal_lm builds them, to `out`."""
    import shlex
    import tempfile

    from trainers.common import config as config_lib
    from trainers.lm.task import CausalLMTask

    with tempfile.TemporaryDirectory() as model_dir:
        experiment = config_lib.experiment_from_args(
            "trainers.causal_lm", CausalLMTask,
            [f"--model_dir={model_dir}", *shlex.split(trainer_flags)])
        task = CausalLMTask(experiment, model_dir, True)
    lm, fixed = experiment.task, experiment.run.fixed_train_examples
    if not fixed:
        raise SystemExit("error: --trainer_flags needs --fixed_train_examples (the metric)")
    shape = dict(task.config, vocab_size=len(task.vocab), seq_length=lm.seq_length,
                 dropout=lm.dropout, fixed_train_examples=fixed, trainer_flags=trainer_flags)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez_compressed(out, train=task.data.train_windows, held_out=task.data.eval_windows,
                        fixed_train=task.data.fixed_train_windows(fixed),
                        meta=json.dumps(shape))
    print(f"{out}: {len(task.data.train_windows)} training windows, "
          f"{len(task.data.eval_windows)} held-out, {fixed} fixed; "
          f"shape {task.config}, vocabulary {len(task.vocab)}")


# ---------------------------------------------------------------- the model (Keras only)
def build_decoder(vocab_size, seq_length, num_layers, hidden_dim, num_heads,
                  intermediate_dim, dropout):
    """A GPT-2 decoder in Keras layers: token + learned position embeddings, pre-LN
    blocks (causal self-attention, GELU MLP), final LayerNorm, logits tied to the token
    embedding. [batch, seq_length] int tokens -> [batch, seq_length, vocab] logits."""
    import keras
    from keras import ops

    init = keras.initializers.RandomNormal(stddev=0.02)

    class Positions(keras.layers.Layer):
        def build(self, input_shape):
            self.table = self.add_weight((seq_length, hidden_dim), initializer=init,
                                         name="positions")

        def call(self, x):
            return x + self.table[None, : ops.shape(x)[1]]

    class TiedLogits(keras.layers.Layer):
        def __init__(self, embedding, **kw):
            super().__init__(**kw)
            self.embedding = embedding

        def call(self, x):
            return ops.matmul(x, ops.transpose(self.embedding.embeddings))

    tokens = keras.Input((seq_length,), dtype="int32")
    embedding = keras.layers.Embedding(vocab_size, hidden_dim, embeddings_initializer=init)
    x = keras.layers.Dropout(dropout)(Positions()(embedding(tokens)))
    for _ in range(num_layers):
        h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
        h = keras.layers.MultiHeadAttention(num_heads, hidden_dim // num_heads,
                                            dropout=dropout, kernel_initializer=init)(
            h, h, use_causal_mask=True)
        x = x + keras.layers.Dropout(dropout)(h)
        h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
        h = keras.layers.Dense(intermediate_dim, activation="gelu", kernel_initializer=init)(h)
        h = keras.layers.Dense(hidden_dim, kernel_initializer=init)(h)
        x = x + keras.layers.Dropout(dropout)(h)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    return keras.Model(tokens, TiedLogits(embedding)(x))


# ---------------------------------------------------------------- one run
def order(num_windows, batch, steps, seed):
    """Window indices of `steps` batches: a fresh permutation per epoch (seeded)."""
    rng = np.random.default_rng(seed)
    need = batch * steps
    perms = [rng.permutation(num_windows) for _ in range(-(-need // num_windows))]
    return np.concatenate(perms)[:need]


def train_run(data, shape, optimizer, learning_rate, batch, steps, seed,
              curve_points=CURVE_POINTS):
    """One run; returns its record (curves of the fixed-train and held-out loss)."""
    import keras

    from trainers.common.optimizers import WarmupSchedule, make_optimizer, resolve_settings

    keras.utils.set_random_seed(seed)
    model = build_decoder(shape["vocab_size"], shape["seq_length"], shape["num_layers"],
                          shape["hidden_dim"], shape["num_heads"], shape["intermediate_dim"],
                          shape["dropout"])
    schedule = WarmupSchedule(learning_rate, steps, warmup_steps=steps // 4)
    settings = resolve_settings(optimizer, None, **SETTINGS.get(optimizer, {}))
    opt = make_optimizer(optimizer, schedule, settings, model.trainable_variables)
    model.compile(optimizer=opt, jit_compile=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    windows = data["train"][order(len(data["train"]), batch, steps, seed)]

    def losses():
        return {name: float(model.evaluate(data[name][:, :-1], data[name][:, 1:],
                                           batch_size=256, verbose=0))
                for name in ("fixed_train", "held_out")}

    start = time.time()
    points = sorted({max(1, round(steps * k / curve_points)) for k in range(1, curve_points + 1)})
    curve, done, diverged = [dict(step=0, **losses())], 0, False
    for point in points:
        chunk = windows[done * batch: point * batch]
        history = model.fit(chunk[:, :-1], chunk[:, 1:], batch_size=batch, epochs=1,
                            shuffle=False, verbose=0)
        done = point
        curve.append(dict(step=done, **losses()))
        last = history.history["loss"][-1]
        if not math.isfinite(last) or not math.isfinite(curve[-1]["fixed_train"]):
            diverged = True
            break
    final = curve[-1]
    return dict(optimizer=optimizer, learning_rate=learning_rate, batch=batch, steps=steps,
                seed=seed, settings=SETTINGS.get(optimizer, {}), curve=curve,
                fixed_train=final["fixed_train"], held_out=final["held_out"],
                diverged=diverged or final["fixed_train"] > curve[0]["fixed_train"] + 1.0,
                seconds=round(time.time() - start, 1))


# ---------------------------------------------------------------- the cells
def score(record):
    return math.inf if record["diverged"] else record["fixed_train"]


def aggregate(values):
    mean, sd = sweep_lib.mean_sd(values)
    return dict(mean=mean if values else None, sd=sd if values else None, n=len(values))


class Runs:
    """The runs so far, kept in `out` (JSON) after each one; a rerun reuses them."""

    def __init__(self, out, meta, max_minutes, curve_points=CURVE_POINTS):
        self.out, self.meta, self.curve_points = out, meta, curve_points
        self.deadline = time.time() + 60 * max_minutes
        self.records = []
        if os.path.exists(out):
            with open(out) as f:
                old = json.load(f)
            if old.get("meta", {}).get("data") == meta["data"]:
                self.records = old.get("runs", [])

    def get(self, data, shape, optimizer, lr, batch, steps, seed):
        for r in self.records:
            if (r["optimizer"], r["batch"], r["steps"], r["seed"]) == (optimizer, batch, steps,
                                                                      seed) \
                    and math.isclose(r["learning_rate"], lr, rel_tol=1e-9):
                return r
        if time.time() > self.deadline:
            raise TimeoutError
        r = train_run(data, shape, optimizer, lr, batch, steps, seed, self.curve_points)
        print(f"b{batch} {optimizer} lr {lr:.3g} seed {seed}: fixed-train "
              f"{r['fixed_train']:.4f} held-out {r['held_out']:.4f}"
              f"{' DIVERGED' if r['diverged'] else ''} ({r['seconds']} s)", flush=True)
        self.records.append(r)
        self.save()
        return r

    def save(self, cells=None):
        doc = dict(meta=self.meta, runs=self.records, cells=cells or [])
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, self.out)


def cell(runs, data, shape, optimizer, centre, batch, steps, seeds):
    """The sweep's rate search (`search_grid`: factor 2, grown at an edge) at seed 0,
    then the seeds at the best."""
    def evaluate(lr):
        record = runs.get(data, shape, optimizer, lr, batch, steps, 0)
        return score(record), record

    search = sweep_lib.search_grid(evaluate, [centre / 2, centre, centre * 2], MAX_EXTENSIONS)
    best = search["best"]
    finals = [runs.get(data, shape, optimizer, best, batch, steps, s) for s in range(seeds)]
    kept = [r for r in finals if not r["diverged"]]
    return dict(batch=batch, tokens_per_step=batch * shape["seq_length"], optimizer=optimizer,
                learning_rate=best, grid=search["values"], at_edge=search["at_edge"],
                diverged=len(finals) - len(kept),
                fixed_train=aggregate([r["fixed_train"] for r in kept]),
                held_out=aggregate([r["held_out"] for r in kept]))


def table(cells, meta):
    verdict = _crossover_rule()
    by = {(c["batch"], c["optimizer"]): c for c in cells}
    batches = sorted({c["batch"] for c in cells})
    names = [n for n in meta["optimizers"] if any((b, n) in by for b in batches)]
    lines = [f"# Crossover on a GPU ({meta['backend']}, {meta['device']})", "",
             f"Fixed-train loss (mean +- sd over seeds; lr chosen on seed 0), {meta['steps']} "
             "steps. SGD - Adam > 0: Adam lower. Rule: a lead counts when >= 0.1 nats and "
             ">= 3 seed sds.", "",
             "| batch | tokens/step | " + " | ".join(names) + " | SGD - Adam | verdict |",
             "|---|---|" + "---|" * len(names) + "---|---|"]
    for b in batches:
        row = [str(b), str(b * meta["seq_length"])]
        for n in names:
            c = by.get((b, n))
            agg = c and c["fixed_train"]
            row.append(f"{agg['mean']:.4f} +- {agg['sd']:.4f} (lr {c['learning_rate']:.3g}"
                       f"{', at the grid edge' if c['at_edge'] else ''})"
                       if agg and agg["n"] else "n/a")
        sgd, adam = by.get((b, "sgd")), by.get((b, "adam"))
        if sgd and adam and sgd["fixed_train"]["n"] and adam["fixed_train"]["n"]:
            row.append(f"{sgd['fixed_train']['mean'] - adam['fixed_train']['mean']:+.4f}")
            row.append(verdict(sgd["fixed_train"], adam["fixed_train"]))
        else:
            row += ["n/a", "n/a"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def run(data_path, out, batches, optimizers, rates, steps, seeds, max_minutes,
        curve_points=CURVE_POINTS):
    import keras

    loaded = np.load(data_path)
    data = {k: loaded[k] for k in ("train", "held_out", "fixed_train")}
    shape = json.loads(str(loaded["meta"]))
    try:
        import jax

        device = str(jax.devices()[0].device_kind)
    except ImportError:
        device = "unknown"
    meta = dict(data=os.path.basename(data_path), shape=shape, steps=steps, seeds=seeds,
                optimizers=optimizers, rates_at_256=rates, settings=SETTINGS,
                backend=keras.backend.backend(), device=device,
                seq_length=shape["seq_length"])
    runs = Runs(out, meta, max_minutes, curve_points)
    cells = []
    try:
        for batch in batches:
            for name in optimizers:
                centre = rates[name] * math.sqrt(batch / 256)
                cells.append(cell(runs, data, shape, name, centre, batch, steps, seeds))
                runs.save(cells)
    except TimeoutError:
        print(f"--max_minutes={max_minutes} reached: the finished runs are in {out}; rerun "
              "the same command to go on", flush=True)
    runs.save(cells)
    md = os.path.splitext(out)[0] + ".md"
    with open(md, "w") as f:
        f.write(table(cells, meta))
    print(open(md).read())
    return cells


def parse_rates(text):
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        out[name.strip()] = float(value)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="the LM's windows and shape (needs TensorFlow)")
    e.add_argument("--out", required=True)
    e.add_argument("--trainer_flags", default=(
        "--model_size=tiny --tokenizer=word --vocab_size=8192 --seq_length=64 --dropout=0.1 "
        "--fixed_train_examples=256"))
    r = sub.add_parser("run", help="the cells (Keras + JAX; no TensorFlow needed)")
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--batches", default="256,1024,4096",
                   help="windows per step, in run order (x 64 tokens: 16k, the CPU's largest "
                   "cell, to compare with it; then 64k and 256k tokens/step)")
    r.add_argument("--optimizers", default="sgd,adam,acclip_norm,acclip")
    r.add_argument("--rates", default=RATES_AT_256,
                   help="each optimizer's grid centre at 256 windows (x sqrt(batch/256))")
    r.add_argument("--steps", type=int, default=200)
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--max_minutes", type=float, default=9.0)
    r.add_argument("--curve_points", type=int, default=CURVE_POINTS,
                   help="evaluations (fixed-train and held-out loss) per run after step 0")
    a = p.parse_args(argv)
    if a.command == "export":
        return export(a.out, a.trainer_flags)
    rates = parse_rates(a.rates)
    optimizers = a.optimizers.split(",")
    missing = [n for n in optimizers if n not in rates]
    if missing:
        raise SystemExit(f"error: --rates has no centre for {', '.join(missing)}")
    return run(a.data, a.out, [int(b) for b in a.batches.split(",")], optimizers, rates,
               a.steps, a.seeds, a.max_minutes, a.curve_points)


if __name__ == "__main__":
    main()
