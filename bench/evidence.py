"""`make evidence` / `make evidence-quick`: rerun the measurements behind docs/evidence.md.

    python bench/evidence.py              # every stage (target: <= 3 h on the 2-core CPU)
    python bench/evidence.py --quick      # the headline ladder at one seed (<= 20 min)
    python bench/evidence.py --list       # the stages, their commands and estimates
    python bench/evidence.py --only=lm_ladder,rates
    python bench/evidence.py --only=STAGE --save_progress  # carry a stopped stage elsewhere

Each stage is one or more commands of the project's own programs (the sweep, the
trainers, the rate experiment, the tail-rule calibration); their outputs go under
``--runs`` (default runs/evidence) and the tables and figures that docs/evidence.md
shows are copied to docs/figures/evidence/. A finished stage leaves
``<runs>/<stage>.done.json`` (its commands, start, wall time) and is skipped on a
rerun; inside a stage the sweep and the trainers resume themselves, so an
interrupted run continues where it stopped; on another machine too, once the stopped
stage's sweep journals are saved with ``--save_progress`` and committed (a stage longer
than one sitting). One progress line per stage gives the
estimated time left for the whole run (the estimates below, replaced by measured
wall times once a stage has run).

Stages that reuse a sweep's chosen learning rates (the vocabulary and batch-size
axes) read them from that sweep's results.json; they wait for it (run order).
"""

import argparse
import dataclasses
import datetime
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from trainers.common import child_signals
from trainers.common.errors import RESTART_EXIT_CODE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join("docs", "figures", "evidence")
# An unfinished stage's sweep storages (Optuna journals), committed so that another machine
# resumes it: its finished trials are not run again (`--save_progress`, `restore_progress`).
PROGRESS = os.path.join(FIGURES, "progress")
STUDY_FILE = "study.journal"  # a sweep's default storage in its model_dir (trainers.common.study)

# The causal LM of the ladder: the probe (2 layers, width 128, word
# vocabulary 8192, 64-token windows, batch 32) on the Wikipedia excerpt.
LM_FLAGS = ("--model_size=tiny --tokenizer=word --vocab_size=8192 --seq_length=64 "
            "--global_batch_size=32 --warmup_steps=50 --steps_per_loop=50 --eval_every=100 "
            "--checkpoint_every=500 --eval_batches=0 --dropout=0.1")
# Run order: the comparisons that decide the question first (SGD vs Adam, the paper's
# normalised ACClip, Algorithm 1), CClip last.
LADDER = "sgd,gclip,adam,acclip_norm,acclip,cclip"
# Fixed rates of the quick ladder (one seed, no search): the full ladder's choices
# when its results.json exists, else these. Keras' SGD uses heavy-ball momentum
# (v = 0.9 v - lr g: steps of lr / (1 - 0.9) = 10 lr at equilibrium) while GClip, CClip
# and ACClip step along an EMA of the gradient (steps of lr): their lr 1.0 matches
# SGD's 0.1 (measured here: GClip at 0.1 without clipping trailed SGD at 0.1). The
# thresholds are set to clip some of the time (the tiny LM's gradient norm is ~1,
# its coordinates ~1e-3).
QUICK_RATES = {"sgd": 0.1, "gclip": 1.0, "cclip": 1.0, "acclip": 1.0,
               "acclip_norm": 1e-3, "adam": 1e-3}
QUICK_TAUS = {"gclip": 0.3, "cclip": 1e-3}


def python(*args):
    return [sys.executable, *args]


def sweep(model_dir, program, optimizers, trainer_flags, *extra):
    return python("-m", "trainers.sweep", f"--program={program}", f"--model_dir={model_dir}",
                  f"--optimizers={optimizers}", f"--trainer_flags={trainer_flags}", *extra)


def chosen_dicts(results_json, optimizers):
    """{optimizer: the sweep's chosen dict or None} (None when there is no results.json)."""
    if not os.path.exists(results_json):
        return None
    with open(results_json) as f:
        doc = json.load(f)
    return {name: ((doc.get("selections") or {}).get(name) or {}).get("chosen")
            for name in optimizers}


def chosen(results_json, optimizers):
    """{optimizer: (lr, tau)} chosen by a finished sweep (None when it has none)."""
    found = chosen_dicts(results_json, optimizers)
    if found is None:
        return None
    return {n: (c["learning_rate"], c.get("tau")) for n, c in found.items() if c}


def fixed_grids(rates):
    """--lr_grid / --tau_grid arguments that fix each optimizer's setting."""
    lr = ",".join(f"{o}={r[0]:g}" for o, r in rates.items())
    tau = ",".join(f"{o}={r[1]:g}" for o, r in rates.items() if r[1] is not None)
    return [f"--lr_grid={lr}"] + ([f"--tau_grid={tau}"] if tau else [])


@dataclasses.dataclass
class Stage:
    name: str
    what: str
    minutes: float  # estimate on the 2-core CPU, nothing else running
    commands: object  # callable(runs) -> [argv, ...]
    outputs: tuple = ()  # (path under runs or repo, name under docs/figures/evidence)
    quick: bool = False
    full: bool = True
    always: bool = False  # never marked done: rerun each time (a summary of other stages)


def ladder_rates(runs, optimizers):
    rates = chosen(os.path.join(runs, "lm_ladder", "results.json"), optimizers)
    if rates and all(o in rates for o in optimizers):
        return rates
    return {o: (QUICK_RATES[o], QUICK_TAUS.get(o)) for o in optimizers}


# The ladder's grids: 4 points, a half decade apart, placed from the quick ladder
# and the probe of issue 10 (the sweep extends a grid whose best point is at an
# edge). Clipped methods step along an EMA (steps of lr), Keras' SGD along a
# heavy-ball sum (steps of 10 lr): their grids sit a decade apart. The tau grids
# bracket the quick ladder's thresholds (the global norm ~1, coordinates ~1e-3).
LADDER_LR_GRID = ("sgd=0.01/0.03/0.1/0.3,gclip=0.1/0.3/1/3,cclip=0.1/0.3/1/3,"
                  "acclip=0.1/0.3/1/3,acclip_norm=1e-4/3e-4/1e-3/3e-3,adam=1e-4/3e-4/1e-3/3e-3")
LADDER_TAU_GRID = "gclip=0.1/0.3/1,cclip=3e-4/1e-3/3e-3"


LADDER_STEPS = 400


def _ladder(runs):
    # Sized for the 3-h budget on the 2-core CPU (~0.3 s/step): 200-step screens on
    # the validation split, 400-step seeded runs on the test split.
    return [sweep(os.path.join(runs, "lm_ladder"), "causal_lm", LADDER,
                  LM_FLAGS + f" --train_steps={LADDER_STEPS}",
                  f"--lr_grid={LADDER_LR_GRID}", f"--tau_grid={LADDER_TAU_GRID}",
                  "--seeds=3")]


def _ladder_quick(runs):
    names = LADDER.split(",")
    return [sweep(os.path.join(runs, "lm_ladder_quick"), "causal_lm", LADDER,
                  LM_FLAGS + " --train_steps=400", "--seeds=1",
                  *fixed_grids(ladder_rates(runs, names)))]


def _acclip_start(runs):
    # Algorithm 1 gives no tau_0; the reference code starts tau**alpha at 0. The
    # ladder's ACClip rates and budget with tau_0 = 1e-6 (clipping from the first
    # step), so each row compares with its ladder row directly.
    rates = ladder_rates(runs, ["acclip", "acclip_norm"])
    return [sweep(os.path.join(runs, "lm_acclip_start"), "causal_lm", "acclip,acclip_norm",
                  LM_FLAGS + f" --train_steps={LADDER_STEPS} --acclip_initial_tau=1e-6",
                  "--seeds=3", *fixed_grids(rates))]


# The axes (4d, 4e) reuse the ladder's rates and budget (the issue: "reuse the ladder's
# chosen rates for the axes") and compare SGD with Adam, the pair whose gap Kunstner
# et al. explain; 2 seeds per cell, each read against the ladder's batch-32, 8k row.
AXIS_OPTIMIZERS = ("sgd", "adam")


def _vocabulary_axis(runs):
    # Kunstner et al. (NeurIPS 2024): the SGD-Adam gap on LMs grows with the class
    # imbalance of a larger vocabulary. Word vocabularies of 2k and 32k (the ladder: 8k).
    rates = ladder_rates(runs, AXIS_OPTIMIZERS)
    cmds = []
    for tokenizer, size in (("word", 2048), ("word", 32768)):
        flags = LM_FLAGS.replace("--tokenizer=word --vocab_size=8192",
                                 f"--tokenizer={tokenizer} --vocab_size={size}")
        cmds.append(sweep(os.path.join(runs, f"lm_vocab_{tokenizer}{size}"), "causal_lm",
                          ",".join(AXIS_OPTIMIZERS), flags + f" --train_steps={LADDER_STEPS}",
                          "--seeds=2", *fixed_grids(rates)))
        # The ladder's Adam rate (9e-3, from 200-step screens) may suit a larger
        # vocabulary less: Adam at the quick ladder's 1e-3 too, seed 0.
        cmds.append(sweep(os.path.join(runs, f"lm_vocab_{tokenizer}{size}_adam1e-3"),
                          "causal_lm", "adam", flags + f" --train_steps={LADDER_STEPS}",
                          "--seeds=1", "--lr_grid=adam=0.001"))
    return cmds


def _wordpiece(runs):
    # The vocabulary axis's other tokenizer: WordPiece at the ladder's size (8192; the
    # BERT trainer's), so rare words become pieces instead of [UNK]; one seed each.
    rates = ladder_rates(runs, AXIS_OPTIMIZERS)
    flags = LM_FLAGS.replace("--tokenizer=word", "--tokenizer=wordpiece")
    return [sweep(os.path.join(runs, "lm_vocab_wordpiece8192"), "causal_lm",
                  ",".join(AXIS_OPTIMIZERS), flags + f" --train_steps={LADDER_STEPS}",
                  "--seeds=1", *fixed_grids(rates))]


def _large_batch(runs):
    # Noise control: 4x the batch (noise sd halved), the ladder's steps and rates; one
    # seed each (a step costs 4x: ~10 min a run here). The ladder's seed sd (SGD 0.005,
    # Adam 0.10) says how far one seed can be trusted.
    rates = ladder_rates(runs, AXIS_OPTIMIZERS)
    flags = LM_FLAGS.replace("--global_batch_size=32", "--global_batch_size=128")
    return [sweep(os.path.join(runs, "lm_large_batch"), "causal_lm", ",".join(AXIS_OPTIMIZERS),
                  flags + f" --train_steps={LADDER_STEPS}", "--seeds=1", *fixed_grids(rates))]


# ---------------------------------------------------------------- issue 19: the regime
# Every claim below is about optimisation speed, so its metric is the training loss on
# fixed training windows (--fixed_train_examples: the same windows for every optimizer
# and seed, dropout off), chosen on and ranked by it (--objective=fixed_train); the
# held-out loss is reported beside it. Every screen runs the full budget's schedule.
# Decision rule, written before the runs: "Adam is ahead at batch B" means its mean
# fixed-train loss is lower than SGD's by >= 0.1 nats and by >= 3 seed sds (the larger of
# the two sds); the reverse with the roles swapped; anything else is "no difference".
CROSSOVER_STEPS = 200
CROSSOVER_BATCHES = (16, 64, 256)  # x 64 tokens: 1k, 4k, 16k tokens per step (16x)
CROSSOVER_FIXED = 256  # fixed training windows of the metric (16k tokens, the same for all)
CROSSOVER_HELD_OUT = 128  # held-out windows per evaluation (beside it)


def crossover_flags(batch, vocab_size=8192, steps=CROSSOVER_STEPS):
    """The ladder's causal LM at `batch` windows of 64 tokens, `steps` steps, evaluated
    every steps/20 steps (>= 20 points a curve) on the fixed training windows and a
    held-out slice of the same size for every batch."""
    flags = LM_FLAGS.replace("--global_batch_size=32", f"--global_batch_size={batch}")
    flags = flags.replace("--vocab_size=8192", f"--vocab_size={vocab_size}")
    flags = flags.replace("--eval_every=100", f"--eval_every={steps // 20}")
    flags = flags.replace("--steps_per_loop=50", f"--steps_per_loop={steps // 20}")
    flags = flags.replace("--checkpoint_every=500", "--checkpoint_every=50")
    flags = flags.replace("--eval_batches=0",
                          f"--eval_batches={max(1, CROSSOVER_HELD_OUT // batch)}")
    flags = flags.replace("--warmup_steps=50", f"--warmup_steps={steps // 10}")
    return flags + (f" --fixed_train_examples={CROSSOVER_FIXED} --frequency_buckets=10 "
                    f"--train_steps={steps}")


# The smallest batch searches the most: per optimizer 2 x 2 arms (Adam: beta_2 0.95 /
# 0.999; SGD: momentum 0.9 / 0.95; both: warm-up 10 % / 25 % of the steps) x a
# 3-point factor-2 rate grid, the same number of trials each. The larger batches keep
# the smallest batch's arm and search the rate on a 3-point factor-2 grid centred on its
# rate x sqrt(batch ratio) (edges extended): coarse to fine, most of the cost saved.
CROSSOVER_SMALL_GRID = "sgd=0.05/0.1/0.2,adam=0.001/0.002/0.004"
CROSSOVER_ARMS = ("sgd:momentum=0.9/0.95,adam:beta_2=0.95/0.999,"
                  f"sgd:warmup_steps={CROSSOVER_STEPS // 10}/{CROSSOVER_STEPS // 4},"
                  f"adam:warmup_steps={CROSSOVER_STEPS // 10}/{CROSSOVER_STEPS // 4}")


def crossover_dir(runs, batch, vocab_size=8192):
    suffix = "" if vocab_size == 8192 else f"_v{vocab_size}"
    return os.path.join(runs, f"lm_crossover_b{batch}{suffix}")


def chosen_settings(results_json, optimizers):
    """{optimizer: chosen dict (learning_rate, tau, options)} of a finished sweep, or None."""
    out = chosen_dicts(results_json, optimizers)
    return out if out and all(out.values()) else None


def scaled_search(base, ratio):
    """--lr_grid and --option_grid for the next batch: each optimizer's chosen arm fixed,
    its rate on a 3-point factor-2 grid around the base rate x sqrt(ratio)."""
    grids, options = [], []
    for name, c in base.items():
        centre = c["learning_rate"] * ratio ** 0.5
        grids.append(f"{name}=" + "/".join(f"{centre * k:.3g}" for k in (0.5, 1, 2)))
        options += [f"{name}:{k}={v:g}" for k, v in sorted((c.get("options") or {}).items())]
    return [f"--lr_grid={','.join(grids)}"] + ([f"--option_grid={','.join(options)}"]
                                               if options else [])


def finished_sweep(runs, name):
    """The results.json of stage `name`'s sweep: the one under `runs`, else the committed
    docs/figures/evidence/<name>.json (the stage finished on another machine); None."""
    for path in (os.path.join(runs, name, "results.json"), os.path.join(FIGURES, f"{name}.json")):
        if os.path.exists(path):
            return path
    return None


def base_settings(runs, batch):
    """The chosen SGD and Adam settings of the crossover cell at `batch` (8k words)."""
    name = os.path.basename(crossover_dir(runs, batch))
    path = finished_sweep(runs, name)
    base = chosen_settings(path, AXIS_OPTIMIZERS) if path else None
    if base is None:
        raise SystemExit(f"error: {crossover_dir(runs, batch)} has no finished sweep: run "
                         f"its stage ({name}) first")
    return base


def _crossover(batch, vocab_size=8192, base_batch=None, buckets=False):
    """The cell's sweep (and, `buckets`: its loss per frequency decile over steps)."""
    def commands(runs):
        common = ["--seeds=3", "--objective=fixed_train", "--lr_factor=2"]
        if base_batch is None:
            search = [f"--lr_grid={CROSSOVER_SMALL_GRID}", f"--option_grid={CROSSOVER_ARMS}"]
        else:
            search = scaled_search(base_settings(runs, base_batch), batch / base_batch)
        out = crossover_dir(runs, batch, vocab_size)
        return [sweep(out, "causal_lm", ",".join(AXIS_OPTIMIZERS),
                      crossover_flags(batch, vocab_size), *common, *search)] + (
            [python("bench/frequency_buckets.py", f"--sweep={out}")] if buckets else [])
    return commands


# Figure 3a where the gap is (issue 19, item 5): at 16k tokens/step, where tuned Adam
# leads tuned SGD by 0.254 +- 0.035 nats of fixed-train loss (lm_crossover_b256), the
# clipping optimizers, each retuned there with its clipping active, beside that cell's
# SGD and Adam (the same trainer flags: their trials are imported, not rerun; their
# search is b256's). Metric (optimisation speed): fixed-train loss, held-out beside it;
# 200 steps, 3 seeds at each choice; the same 3-point factor-2 rate grid (edges extended)
# per optimizer as Adam had at this batch, GClip/CClip plus their 3-point tau stage;
# every one with the warm-up SGD's and Adam's chosen arms share (50 steps).
#  * ACClip (Algorithm 1 and normalize=True): tau_0 = 1e-6, below every gradient
#    coordinate worth a step (|m| > tau from the first step wherever |g| > ~1e-5; the
#    threshold then tracks E|g| at rate beta_2 = 0.99), and epsilon = 1e-6, Adam's, so
#    the normaliser sqrt(beta_2 v) + eps is Adam's and stays adaptive for coordinates
#    of ~1e-5 (the paper's 1e-5 sits on them at this batch). Rates: Algorithm 1 on the
#    gradient's scale (the b32 ladder chose 1 unclipped; clipped steps are shorter, so
#    centred at 2), normalize=True at Adam's chosen 8e-3.
#  * GClip / CClip: the b32 ladder's choices with clipping active (GClip lr 3, tau 0.1,
#    clip fraction 0.67; CClip lr 3, tau 3e-4); tau stage 0.03..0.3 and 1e-4..1e-3,
#    grown upwards only while the largest tau still clips.
# Clip fractions are recorded per run (results.json "clip_fraction").
FIGURE3A_BATCH = 256
FIGURE3A_ORDER = ("sgd", "adam", "acclip_norm", "acclip", "gclip", "cclip")  # run order
FIGURE3A_GRIDS = "acclip_norm=0.004/0.008/0.016,acclip=1/2/4,gclip=1.5/3/6,cclip=1.5/3/6"
FIGURE3A_TAUS = "gclip=0.03/0.1/0.3,cclip=1e-4/3e-4/1e-3"
FIGURE3A_OPTIONS = ("acclip:acclip_initial_tau=1e-6,acclip:epsilon=1e-6,"
                    "acclip_norm:acclip_initial_tau=1e-6,acclip_norm:epsilon=1e-6")


def figure3a_search(runs):
    """The sweep flags of the Figure-3a cell: b256's SGD/Adam search + FIGURE3A_*, every
    optimizer with the warm-up of the arm SGD and Adam chose."""
    grids, options = None, None
    base = base_settings(runs, 64)
    warmup = {(c.get("options") or {}).get("warmup_steps") for c in base.values()}
    warmups = ",".join(f"{name}:warmup_steps={w:g}" for name in FIGURE3A_ORDER[2:]
                       for w in warmup if w is not None)
    for flag in scaled_search(base, FIGURE3A_BATCH / 64):
        key, _, value = flag.partition("=")
        if key == "--lr_grid":
            grids = value
        elif key == "--option_grid":
            options = value
    return [f"--lr_grid={grids},{FIGURE3A_GRIDS}", f"--tau_grid={FIGURE3A_TAUS}",
            f"--option_grid={','.join(filter(None, (options, FIGURE3A_OPTIONS, warmups)))}"]


def _figure3a(runs):
    source = finished_sweep(runs, os.path.basename(crossover_dir(runs, FIGURE3A_BATCH)))
    if source is None:
        raise SystemExit("error: the 16k-tokens/step cell (lm_crossover_b256) has no finished "
                         "sweep: run its stage first")
    return [sweep(os.path.join(runs, "lm_figure3a_b256"), "causal_lm", ",".join(FIGURE3A_ORDER),
                  crossover_flags(FIGURE3A_BATCH), "--seeds=3", "--objective=fixed_train",
                  "--lr_factor=2", "--tau_search=stage", *figure3a_search(runs),
                  f"--import_results={source}")]


# The ablation that separates ACClip(normalize)'s clipping from the rest of its step: the
# Figure-3a cell's chosen ACClip(normalize) setting with tau_0 = 1 (its clipping never
# acts on this LM's gradients, ~1e-3 and below) instead of 1e-6, 3 seeds; the same rule.
def _figure3a_noclip(runs):
    source = finished_sweep(runs, "lm_figure3a_b256")
    chosen = chosen_dicts(source, ["acclip_norm"]) if source else None
    if not chosen or not chosen["acclip_norm"]:
        raise SystemExit("error: lm_figure3a_b256 has no ACClip(normalize) choice: run its "
                         "stage first")
    c = chosen["acclip_norm"]
    options = dict(c.get("options") or {}, acclip_initial_tau=1)
    return [sweep(os.path.join(runs, "lm_figure3a_b256_noclip"), "causal_lm", "acclip_norm",
                  crossover_flags(FIGURE3A_BATCH), "--seeds=3", "--objective=fixed_train",
                  f"--lr_grid=acclip_norm={c['learning_rate']:g}", "--option_grid=" + ",".join(
                      f"acclip_norm:{k}={v:g}" for k, v in sorted(options.items())))]


def _crossover_summary(runs):
    present = {os.path.basename(p).rpartition("_v")[2] if "_v" in os.path.basename(p) else "8192"
               for p in glob.glob(os.path.join(runs, "lm_crossover_b*"))
               if os.path.exists(os.path.join(p, "results.json"))}
    return [python("bench/crossover.py", f"--runs={runs}", f"--vocab_size={v}")
            for v in sorted(present, key=int)]


def _full_batch(runs):
    # Kunstner et al. (2024)'s noise-free cell: a fixed set of 128 training windows (8k
    # tokens), each step the full, deterministic gradient of it (batch 128 = the set,
    # dropout off), momentum GD vs Adam (Adam with beta_2 0.95 and 0.999), loss per
    # frequency decile of the training targets every 15 steps; 300 steps, 2 seeds (init).
    flags = (LM_FLAGS.replace("--global_batch_size=32", "--global_batch_size=128")
             .replace("--dropout=0.1", "--dropout=0").replace("--eval_every=100",
                                                              "--eval_every=15")
             .replace("--steps_per_loop=50", "--steps_per_loop=15")
             .replace("--checkpoint_every=500", "--checkpoint_every=60")
             .replace("--eval_batches=0", "--eval_batches=2")
             .replace("--warmup_steps=50", "--warmup_steps=30"))
    flags += (" --train_windows=128 --fixed_train_examples=128 --frequency_buckets=10 "
              "--train_steps=300")
    out = os.path.join(runs, "lm_full_batch")
    return [sweep(out, "causal_lm", "sgd,adam", flags, "--seeds=2", "--objective=fixed_train",
                  "--lr_factor=2", "--lr_grid=sgd=0.1/0.2/0.4,adam=0.002/0.004/0.008",
                  "--option_grid=sgd:momentum=0.9/0.95,adam:beta_2=0.95/0.999"),
            python("bench/frequency_buckets.py", f"--sweep={out}")]


# Figure 1a: a ResNet-20 on Fashion-MNIST (the digits when it is missing), SGD vs Adam
# tuned like the ladder: 4-point grids screened for 150 steps on a validation fold of
# the training set, 3 seeds of 400 steps (batch 64, half an epoch) on the test set.
RESNET_LR_GRID = "sgd=0.01/0.03/0.1/0.3,adam=3e-4/1e-3/3e-3/1e-2"


def _resnet(runs):
    dataset = ("fashion_mnist" if os.path.isdir("/usr/share/datasets/fashion-mnist")
               or os.path.isdir(os.path.expanduser("~/.keras/datasets/fashion-mnist"))
               else "digits")
    flags = (f"--dataset={dataset} --model=resnet20 --global_batch_size=64 "
             "--lr_schedule=cosine --warmup_steps=20 --lr_scaling_batch=0 "
             "--steps_per_loop=50 --eval_every=200 --checkpoint_every=1000 --eval_batches=0 "
             "--train_steps=400")
    return [sweep(os.path.join(runs, "resnet_sgd_adam"), "resnet_imagenet", "sgd,adam",
                  flags, f"--lr_grid={RESNET_LR_GRID}", "--seeds=3",
                  "--metric=cross_entropy")]


# Table 2 at this CPU's scale: tiny BERT (2 layers, width 128) MLM on the Wikipedia
# excerpt, 128-token sequences, batch 32. Adam at 2e-3 leaves the unigram plateau
# (~6.7 nats) by step 500 here (6.51 at 250, 6.29 at 500, 6.22 at 750: a 1,500-step
# probe), so the seeded runs get 600 steps and the screens 300; explicit half-decade
# grids around the causal LM ladder's choices (extended when the best is at an edge).
BERT_LR_GRID = ("sgd=0.03/0.1/0.3/1,acclip=0.1/0.3/1/3,acclip_norm=3e-4/1e-3/3e-3/1e-2,"
                "adam=3e-4/1e-3/3e-3/1e-2")


def _bert(runs):
    flags = ("--model_size=tiny --seq_length=128 --global_batch_size=32 --warmup_steps=50 "
             "--steps_per_loop=50 --eval_every=150 --checkpoint_every=1000 --eval_batches=0 "
             "--train_steps=600")
    return [sweep(os.path.join(runs, "bert_table2"), "bert_pretrain", "sgd,acclip,acclip_norm,adam",
                  flags, f"--lr_grid={BERT_LR_GRID}", "--seeds=3")]


def _rates(runs):
    base = ["--alphas=1.2,1.5", "--num_seeds=2000", "--num_repeats=5"]
    return [python("-m", "trainers.heavy_tail_rates", f"--output_dir={runs}/rates_{name}",
                   *base, *extra)
            for name, extra in (("stable", ["--noise=stable", "--G=1"]),
                                ("pareto", ["--noise=pareto", "--G=auto"]),
                                ("pareto_sym", ["--noise=pareto", "--G=auto", "--skewness=0"]))]


def _calibration(runs):
    return [python("bench/calibrate_tail_rule.py",
                   "--output=docs/figures/tail_rule_calibration.json")]


# ---------------------------------------------------------------- gradient noise (issue 11)
def _noise(runs, name, *args):
    return python("-m", "trainers.gradient_noise", f"--output_dir={runs}/{name}", *args)


def _noise_init(runs):
    # Figure 1 b/f at initialisation, 2,000 minibatches each (+ parameter groups for BERT).
    return [_noise(runs, "noise_bert_init", "--model=bert", "--model_size=tiny",
                   "--seq_length=64", "--num_batches=2000", "--batch_size=8",
                   "--parameter_groups"),
            _noise(runs, "noise_resnet_init", "--model=resnet", "--dataset=fashion_mnist",
                   "--image_model=resnet20", "--num_batches=2000", "--batch_size=16")]


def _noise_batch_sizes(runs):
    return [_noise(runs, "noise_bert_batch_sizes", "--model=bert", "--model_size=tiny",
                   "--seq_length=64", "--num_batches=300", "--batch_sizes=1,4,16,64")]


def _noise_training(runs):
    # Figure 2: the same tiny BERT after 100 and 300 Adam steps (init: noise_init), and
    # the rarity of the measured minibatches' targets against their noise norms.
    pretrain = f"{runs}/noise_bert_pretrain"
    return [python("-m", "trainers.bert_pretrain", f"--model_dir={pretrain}",
                   "--model_size=tiny", "--seq_length=64", "--global_batch_size=32",
                   "--train_steps=300", "--checkpoint_every=100", "--eval_every=100",
                   "--eval_batches=10", "--steps_per_loop=50", "--optimizer=adam",
                   "--learning_rate=1e-3", "--warmup_steps=30", "--strategy=one_device"),
            _noise(runs, "noise_bert_training", "--model=bert", f"--pretrain_dir={pretrain}",
                   "--checkpoints=100,300", "--noinclude_init", "--num_batches=2000",
                   "--batch_size=8", "--parameter_groups"),
            python("bench/rare_tokens.py", f"--pretrain_dir={pretrain}",
                   f"--noise_json={runs}/noise_bert_init/bert_noise.json",
                   f"--noise_json={runs}/noise_bert_training/bert_noise.json",
                   f"--output={runs}/noise_bert_rare_tokens")]


def _noise_ablation(runs):
    # Figure 4: attention vs none, text vs Gaussian input, 2,000 minibatches per cell.
    return [_noise(runs, "noise_ablation", "--model=attention_ablation", "--model_size=tiny",
                   "--seq_length=64", "--num_batches=2000", "--batch_size=8")]


def _noise_lm(runs):
    # The ladder's causal LM (momentum SGD, the first optimizer to finish: seed 0 on
    # test): init (the same for every optimizer) and its final checkpoint.
    rates = ladder_rates(runs, ["sgd"])
    run = os.path.join(runs, "lm_ladder", "sgd",
                       f"lr{rates['sgd'][0]:g}_seed0_test_{LADDER_STEPS}steps")
    return [_noise(runs, "noise_lm", "--model=causal_lm", f"--pretrain_dir={run}",
                   f"--checkpoints={LADDER_STEPS}", "--num_batches=2000", "--batch_size=8",
                   "--parameter_groups"),
            python("bench/rare_tokens.py", f"--pretrain_dir={run}",
                   f"--noise_json={runs}/noise_lm/causal_lm_noise.json",
                   f"--output={runs}/noise_lm_rare_tokens")]


def _noise_outputs(name, model, *extra):
    figures = ("histograms", "tail_histograms", "survival", "shape_vs_k", "variance",
               *extra)
    # The JSON (every norm, ~1 MB) stays under --runs; docs/evidence.md quotes its verdicts.
    return tuple((f"{name}/{model}_{fig}.png", f"{name}_{fig}.png") for fig in figures)


def _rare_token_outputs(name):
    return tuple((f"{name}/rare_tokens.{ext}", f"{name}.{ext}") for ext in ("md", "png", "json"))


def _sweep_outputs(name, buckets=False):
    return ((f"{name}/results.md", f"{name}.md"), (f"{name}/results.png", f"{name}.png"),
            (f"{name}/results.json", f"{name}.json")) + (
        ((f"{name}/frequency_buckets.png", f"{name}_buckets.png"),
         (f"{name}/frequency_buckets.md", f"{name}_buckets.md")) if buckets else ())


STAGES = (
    # Issue 19 (2026-12-02): the regime where the literature expects Adam's lead.
    Stage("lm_crossover_b16", "batch-size crossover, 1k tokens/step: SGD vs Adam on the "
          "fixed-train loss, 2x2 arms x 3 rates each, 3 seeds", 50, _crossover(16),
          _sweep_outputs("lm_crossover_b16")),
    Stage("lm_full_batch", "noise-free cell: full-batch momentum GD vs Adam on 128 fixed "
          "windows, loss per frequency decile", 80, _full_batch,
          _sweep_outputs("lm_full_batch", buckets=True)),
    Stage("lm_crossover_b64", "batch-size crossover, 4k tokens/step (rates from b16, "
          "sqrt-scaled grid)", 45, _crossover(64, base_batch=16),
          _sweep_outputs("lm_crossover_b64")),
    Stage("lm_crossover_b256", "batch-size crossover, 16k tokens/step (rates from b64)", 150,
          _crossover(256, base_batch=64), _sweep_outputs("lm_crossover_b256")),
    # The larger vocabulary (every training word, ~27k) at the three batches, rates
    # retuned around the 8k choice of the same batch.
    Stage("lm_crossover_b16_v32768", "crossover, word vocabulary 32768, 1k tokens/step",
          60, _crossover(16, 32768, base_batch=16),
          _sweep_outputs("lm_crossover_b16_v32768")),
    Stage("lm_crossover_b64_v32768", "crossover, word vocabulary 32768, 4k tokens/step",
          90, _crossover(64, 32768, base_batch=64),
          _sweep_outputs("lm_crossover_b64_v32768")),
    # Its third batch, 16x the first: 11-13 min a run alone, 14 runs (3 h 45 min here,
    # 2026-12-07, partly beside `make test`); with the loss per frequency decile.
    Stage("lm_crossover_b256_v32768", "crossover, word vocabulary 32768, 16k tokens/step",
          240, _crossover(256, 32768, base_batch=256, buckets=True),
          _sweep_outputs("lm_crossover_b256_v32768", buckets=True)),
    Stage("lm_figure3a_b256", "Figure 3a at 16k tokens/step, where Adam leads SGD: GClip, "
          "CClip, ACClip (Algorithm 1, normalize=True) retuned with clipping active beside "
          "b256's SGD and Adam, 3 seeds", 170, _figure3a, _sweep_outputs("lm_figure3a_b256")),
    Stage("lm_figure3a_b256_noclip", "ablation: Figure 3a's ACClip(normalize) choice with "
          "tau_0 = 1 (clipping off), 3 seeds", 20, _figure3a_noclip,
          _sweep_outputs("lm_figure3a_b256_noclip")),
    Stage("lm_crossover_summary", "the crossover's table and gap-vs-batch plot from every "
          "finished cell (rerun each time)", 1, _crossover_summary,
          tuple((f"lm_crossover{s}.{e}", f"lm_crossover{s}.{e}") for s in ("", "_v32768")
                for e in ("md", "png", "json")), always=True),
    Stage("lm_ladder_quick", "Figure 3a ladder on the causal LM, one seed, fixed rates",
          18, _ladder_quick, _sweep_outputs("lm_ladder_quick"), quick=True, full=False),
    Stage("lm_ladder", "Figure 3a ladder on the causal LM: tuned on validation, 3 seeds on test",
          100, _ladder, _sweep_outputs("lm_ladder")),
    Stage("lm_acclip_start", "ACClip with tau_0 = 1e-6 instead of 1 (the ladder's rates)",
          15, _acclip_start, _sweep_outputs("lm_acclip_start")),
    Stage("resnet_sgd_adam", "Figure 1a: SGD vs Adam on a ResNet-20, tuned, 3 seeds",
          25, _resnet, _sweep_outputs("resnet_sgd_adam")),
    Stage("lm_vocabulary", "vocabulary axis (word 2k and 32k; the ladder: 8k), SGD vs Adam, "
          "the ladder's rates", 25, _vocabulary_axis,
          sum((_sweep_outputs(f"lm_vocab_{n}") for n in ("word2048", "word32768",
                                                           "word2048_adam1e-3",
                                                           "word32768_adam1e-3")), ())),
    Stage("lm_wordpiece", "vocabulary axis, the other tokenizer: WordPiece 8192, SGD vs Adam, "
          "the ladder's rates, 1 seed", 8, _wordpiece, _sweep_outputs("lm_vocab_wordpiece8192")),
    Stage("lm_large_batch", "noise control: batch 128 instead of 32, SGD vs Adam, "
          "the ladder's rates, 1 seed", 20, _large_batch, _sweep_outputs("lm_large_batch")),
    Stage("bert_table2", "Table 2: BERT MLM (tiny), SGD/ACClip/ACClip-norm/Adam, tuned, "
          "3 seeds", 85, _bert, _sweep_outputs("bert_table2")),
    Stage("rates", "Section 3 rates: stable (assumption fails) and Pareto (it holds)",
          6, _rates, (("rates_stable/rates.png", "rates_stable.png"),
                      ("rates_pareto/rates.png", "rates_pareto.png"),
                      ("rates_pareto_sym/rates.png", "rates_pareto_symmetric.png"))),
    Stage("tail_calibration", "error rates of the heavy/light/cannot-tell rule",
          10, _calibration),
    Stage("noise_init", "Figure 1 b/f at init, 2,000 minibatches: tiny BERT (+ groups), "
          "ResNet-20 on Fashion-MNIST", 12, _noise_init,
          _noise_outputs("noise_bert_init", "bert", "groups_0")
          + _noise_outputs("noise_resnet_init", "resnet")),
    Stage("noise_batch_sizes", "tiny BERT's noise at minibatch sizes 1, 4, 16, 64", 9,
          _noise_batch_sizes,
          _noise_outputs("noise_bert_batch_sizes", "bert", "xi_vs_batch_size")),
    Stage("noise_training", "Figure 2: tiny BERT after 100 and 300 steps (+ groups, rare tokens)",
          10, _noise_training,
          _noise_outputs("noise_bert_training", "bert", "development", "groups_0", "groups_1")
          + _rare_token_outputs("noise_bert_rare_tokens")),
    Stage("noise_ablation", "Figure 4: attention vs none, text vs Gaussian, 2,000 minibatches",
          15, _noise_ablation,
          _noise_outputs("noise_ablation", "attention_ablation")),
    Stage("noise_lm", "the ladder's causal LM (SGD): init and final checkpoint (+ rare tokens)",
          8, _noise_lm,
          _noise_outputs("noise_lm", "causal_lm", "development", "groups_0", "groups_1")
          + _rare_token_outputs("noise_lm_rare_tokens")),
)


def format_minutes(minutes):
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"


def done_path(runs, stage):
    return os.path.join(runs, f"{stage.name}.done.json")


def with_committed_trials(argv, stage, runs):
    """`argv`, a command of `stage`; a sweep whose results.json is committed under
    docs/figures/evidence (a stage interrupted on another machine, or finished there) gets
    ``--import_results`` of it: its trials join the sweep's studies as finished trials
    (when it is a sweep of the same settings) and are not run again."""
    for src, dst in stage.outputs:
        committed = os.path.join(FIGURES, dst)
        model_dir = os.path.join(runs, os.path.dirname(src))
        if (src.endswith("/results.json") and os.path.exists(committed)
                and "trainers.sweep" in argv and f"--model_dir={model_dir}" in argv):
            return argv + [f"--import_results={committed}"]
    return argv


def sweep_dirs(stage):
    """The model_dirs (relative to --runs) of `stage`'s sweeps: where its results.json go."""
    return [os.path.dirname(src) for src, _ in stage.outputs
            if src.endswith("/results.json") and not os.path.isabs(src)]


def progress_path(model_dir):
    return os.path.join(PROGRESS, model_dir.replace("/", "__") + "." + STUDY_FILE)


def save_progress(stage, runs):
    """Copy the study journal of each of `stage`'s sweeps under `runs` into PROGRESS (to be
    committed), for a stage stopped before its end (SIGTERM: the trial saves, exit 42).
    Returns the paths written."""
    saved = []
    for model_dir in sweep_dirs(stage):
        journal = os.path.join(runs, model_dir, STUDY_FILE)
        if os.path.exists(journal):
            os.makedirs(PROGRESS, exist_ok=True)
            shutil.copyfile(journal, progress_path(model_dir))
            saved.append(progress_path(model_dir))
    return saved


def restore_progress(stage, runs):
    """Before `stage` runs: a sweep without a journal under `runs` starts from the committed
    one (its finished trials count; one left running is failed when its heartbeat is stale
    and rerun, from the start where its checkpoint stayed on the other machine). Returns
    the journals restored."""
    restored = []
    for model_dir in sweep_dirs(stage):
        journal = os.path.join(runs, model_dir, STUDY_FILE)
        if os.path.exists(progress_path(model_dir)) and not os.path.exists(journal):
            os.makedirs(os.path.dirname(journal), exist_ok=True)
            shutil.copyfile(progress_path(model_dir), journal)
            restored.append(journal)
    return restored


def call_passing_sigterm(argv):
    """`subprocess.call(argv)`, with a SIGTERM to this process passed on to the command (a
    sweep then stops its trial with a checkpoint and exits 42; a terminal's Ctrl-C reaches
    the whole process group by itself)."""
    child = subprocess.Popen(argv, cwd=ROOT)
    with child_signals.signals_passed_to(child):
        return child.wait()


def run_stage(stage, runs, log):
    for journal in restore_progress(stage, runs):
        print(f"  resumed from the committed progress: {journal}", flush=True)
    commands = [with_committed_trials(argv, stage, runs) for argv in stage.commands(runs)]
    start = time.time()
    for argv in commands:
        print("  $ " + shlex.join(argv), flush=True)
        with open(log, "a") as f:
            f.write("$ " + shlex.join(argv) + "\n")
        code = call_passing_sigterm(argv)
        if code == RESTART_EXIT_CODE:  # stopped by a signal with its work saved
            print(f"error: stage {stage.name} stopped before its end (exit {code}); rerun the "
                  "same command to resume", file=sys.stderr, flush=True)
            raise SystemExit(code)
        if code:
            raise SystemExit(f"error: stage {stage.name} failed (exit {code}) in: "
                             f"{shlex.join(argv)}")
    os.makedirs(FIGURES, exist_ok=True)
    for src, dst in stage.outputs:
        path = src if os.path.isabs(src) else os.path.join(runs, src)
        if os.path.exists(path):
            shutil.copyfile(path, os.path.join(FIGURES, dst))
    for model_dir in sweep_dirs(stage):  # the finished results supersede the progress
        if os.path.exists(progress_path(model_dir)):
            os.remove(progress_path(model_dir))
    record = dict(stage=stage.name, what=stage.what, commands=[shlex.join(c) for c in commands],
                  started=datetime.datetime.fromtimestamp(start, datetime.timezone.utc)
                  .strftime("%Y-%m-%d %H:%M UTC"), wall_minutes=round((time.time() - start) / 60, 1))
    if not stage.always:
        with open(done_path(runs, stage), "w") as f:
            json.dump(record, f, indent=1)
    return record


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="only the quick stages (<= 20 min)")
    p.add_argument("--runs", default=os.path.join("runs", "evidence"))
    p.add_argument("--only", default="", help="comma-separated stage names")
    p.add_argument("--list", action="store_true", help="print the stages and exit")
    p.add_argument("--save_progress", action="store_true",
                   help=f"copy the unfinished stages' sweep journals into {PROGRESS}/ (commit "
                   "them; a run on another machine resumes from them) and exit; stop the "
                   "stage first")
    a = p.parse_args(argv)
    os.chdir(ROOT)
    selected = [s for s in STAGES if (s.quick if a.quick else s.full)]
    if a.only:
        names = a.only.split(",")
        unknown = sorted(set(names) - {s.name for s in STAGES})
        if unknown:
            raise SystemExit(f"error: unknown stage(s) {', '.join(unknown)}; "
                             f"stages: {', '.join(s.name for s in STAGES)}")
        selected = [s for s in STAGES if s.name in names]
    if a.list:
        for s in selected:
            print(f"{s.name} (~{format_minutes(s.minutes)}): {s.what}")
            for c in s.commands(a.runs):
                print("    " + shlex.join(c))
        return
    if a.save_progress:
        for s in selected:
            if not os.path.exists(done_path(a.runs, s)):
                for path in save_progress(s, a.runs):
                    print(f"{s.name}: progress saved in {path}")
        return
    os.makedirs(a.runs, exist_ok=True)
    log = os.path.join(a.runs, "commands.log")
    left = {s.name: (0 if os.path.exists(done_path(a.runs, s)) else s.minutes) for s in selected}
    for i, s in enumerate(selected, 1):
        if os.path.exists(done_path(a.runs, s)):
            with open(done_path(a.runs, s)) as f:
                rec = json.load(f)
            print(f"[evidence {i}/{len(selected)}] {s.name}: done earlier "
                  f"({rec['wall_minutes']} min, {rec['started']})", flush=True)
            continue
        print(f"[evidence {i}/{len(selected)}] {s.name}: {s.what} (~{format_minutes(s.minutes)}; "
              f"all stages left ~{format_minutes(sum(left.values()))})", flush=True)
        rec = run_stage(s, a.runs, log)
        left[s.name] = 0
        print(f"[evidence {i}/{len(selected)}] {s.name}: done in {rec['wall_minutes']} min",
              flush=True)
    print(f"evidence: tables and figures in {FIGURES}/; commands in {log}")


if __name__ == "__main__":
    main()
