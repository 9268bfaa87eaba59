"""The same BERT pretraining once per optimizer, then a table and a plot.

    python -m trainers.compare --model_dir=runs/compare --optimizers=sgd,gclip,cclip,acclip,adam

Each optimizer runs `trainers.bert_pretrain` in its own process (a fresh
TensorFlow, resumable on its own) into ``model_dir/<optimizer>/``, with the
same flags except the optimizer and its learning rate (the trainer's own for the
BERT family, `BertPretrainTask.optimizer_settings`, measured by the Table 2 sweep of
docs/evidence.md; overridable with ``--learning_rates=adam=1e-3,acclip=...``). The vocabulary
is learned once and shared. Then ``comparison.md`` (final train loss, held-out
MLM loss and accuracy, sequences/s) and ``comparison.png`` (train and held-out
loss curves) are written to model_dir. A finished run is not repeated.

Every flag of trainers.bert_pretrain is accepted and passed on.
"""

import json
import os
import subprocess
import sys
import time

from absl import flags

from trainers import bert_pretrain  # noqa: F401 - defines the pretraining flags
from trainers.common import cli
from trainers.common import files
from trainers.common import optimizers as common_optimizers
from trainers.common.reporting import format_duration, read_metrics

flags.DEFINE_list("optimizers", ["sgd", "gclip", "cclip", "acclip", "adam"],
                  "Optimizers to compare, in this order.")
flags.DEFINE_list("learning_rates", [],
                  "Per-optimizer learning rates, e.g. adam=1e-3,acclip=3e-4 "
                  "(default: the trainer's, BertPretrainTask.optimizer_settings).")

FLAGS = flags.FLAGS

_PASSED_MODULES = ("trainers.common.flags", "trainers.bert_pretrain")
_NOT_PASSED = {"model_dir", "optimizer", "learning_rate", "vocab_file"}


def parse_learning_rates(items, optimizers):
    """{optimizer: lr} of --learning_rates; the others run at the trainer's own rate."""
    rates = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise cli.TrainerError(f"--learning_rates item {item!r} is not optimizer=value")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise cli.TrainerError(f"--learning_rates: {value!r} is not a number")
    for name in list(optimizers) + list(rates):
        common_optimizers.resolve_settings(name)  # unknown names fail here, in one line
    return rates


def passed_flags():
    """The pretraining flags the user set (or that differ from the default), as argv."""
    args = []
    for module in _PASSED_MODULES:
        for flag in FLAGS.get_flags_for_module(module):
            if flag.name in _NOT_PASSED:
                continue
            if flag.present or flag.value != flag.default:
                args.append(flag.serialize())
    return args


def shared_vocabulary(model_dir):
    """Learn the vocabulary once (as bert_pretrain would) for every optimizer's run."""
    from trainers.common.text import corpus as corpus_lib
    from trainers.common.text import vocab as vocab_lib

    if FLAGS.vocab_file:
        return FLAGS.vocab_file
    if FLAGS.data_dir:  # prepared shards: their vocabulary (the runs check its hash)
        return os.path.join(FLAGS.data_dir, "vocab.txt")

    def learn():
        documents = corpus_lib.load_corpus(FLAGS.corpus, FLAGS.max_documents or None)
        train, _ = corpus_lib.split_documents(documents, FLAGS.eval_fraction, seed=0)
        return vocab_lib.corpus_vocabulary(train, FLAGS.vocab_size)

    vocab_lib.run_vocabulary(None, model_dir, True, learn)  # saves model_dir/vocab.txt
    return files.join(model_dir, "vocab.txt")


def finished(run_dir, train_steps):
    path = files.join(run_dir, "summary.json")
    if not files.exists(path):
        return False
    return json.loads(files.read_text(path)).get("final_step", 0) >= train_steps


def run_one(name, lr, run_dir, vocab_path):
    """One bert_pretrain run; lr None: the trainer's own (BertPretrainTask's) rate."""
    rate = [] if lr is None else [f"--learning_rate={lr!r}"]
    cmd = [sys.executable, "-m", "trainers.bert_pretrain", f"--model_dir={run_dir}",
           f"--optimizer={name}", *rate, f"--vocab_file={vocab_path}", *passed_flags()]
    print(f"\n=== {name} (learning rate {'the trainer default' if lr is None else f'{lr:g}'})"
          f" -> {run_dir}", flush=True)
    start = time.time()
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise cli.TrainerError(f"the {name} run failed (exit {proc.returncode}); "
                               f"its output is above, its files in {run_dir}")
    return time.time() - start


def collect(model_dir, optimizers):
    """One row per run; its learning rate is the one the run used (its summary.json)."""
    rows = []
    for name in optimizers:
        run_dir = files.join(model_dir, name)
        summary = json.loads(files.read_text(files.join(run_dir, "summary.json")))
        rows.append(dict(optimizer=name,
                         learning_rate=summary["optimizer_settings"]["learning_rate"],
                         summary=summary, metrics=read_metrics(run_dir)))
    return rows


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def comparison_table(rows, title):
    lines = [f"# {title}", "",
             "| optimizer | peak lr | final train loss | held-out MLM loss | "
             "held-out MLM accuracy | sequences/s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        s = r["summary"]
        lines.append(
            f"| {r['optimizer']} | {r['learning_rate']:g} | "
            f"{_fmt(s['train'].get('loss'), '.4f')} | {_fmt(s['eval'].get('loss'), '.4f')} | "
            f"{_fmt(s['eval'].get('accuracy'), '.4f')} | "
            f"{_fmt(s.get('sequences_per_second'), '.1f')} |")
    lines += ["", "Train loss: mean over the last loop; held-out: the final evaluation. "
              "sequences/s excludes the first (compiling) loop.", ""]
    return "\n".join(lines)


def comparison_plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_train, ax_eval) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for r in rows:
        m = r["metrics"]
        train = [(x["step"], x["train_loss"]) for x in m if "train_loss" in x]
        held = [(x["step"], x["eval_loss"]) for x in m if "eval_loss" in x]
        label = f"{r['optimizer']} (lr {r['learning_rate']:g})"
        if train:
            ax_train.plot(*zip(*train), marker="o", label=label)
        if held:
            ax_eval.plot(*zip(*held), marker="o", label=label)
    ax_train.set(title="train MLM loss (mean since the last evaluation)", xlabel="step",
                 ylabel="loss")
    ax_eval.set(title="held-out MLM loss", xlabel="step")
    for ax in (ax_train, ax_eval):
        ax.grid(alpha=0.3)
    ax_eval.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    from trainers.common import runner

    runner.validate_common(FLAGS)  # bad sizes fail here, not in every optimizer's run
    optimizers = [o.strip() for o in FLAGS.optimizers if o.strip()]
    if not optimizers:
        raise cli.TrainerError("--optimizers is empty")
    rates = parse_learning_rates(FLAGS.learning_rates, optimizers)
    files.makedirs(FLAGS.model_dir)
    start = time.time()
    vocab_path = shared_vocabulary(FLAGS.model_dir)
    for name in optimizers:
        run_dir = files.join(FLAGS.model_dir, name)
        if finished(run_dir, FLAGS.train_steps):
            print(f"=== {name}: already finished in {run_dir}", flush=True)
            continue
        run_one(name, rates.get(name), run_dir, vocab_path)
    rows = collect(FLAGS.model_dir, optimizers)
    title = (f"BERT MLM pretraining, model_size={FLAGS.model_size}, corpus={FLAGS.corpus}, "
             f"{FLAGS.train_steps} steps x {FLAGS.global_batch_size} sequences of "
             f"{FLAGS.seq_length}")
    table = comparison_table(rows, title)
    table_path = files.join(FLAGS.model_dir, "comparison.md")
    files.write_text_atomically(table_path, table)
    plot_path = files.join(FLAGS.model_dir, "comparison.png")
    with files.LocalCopy(FLAGS.model_dir, write=True) as local:  # matplotlib writes locally
        comparison_plot(rows, os.path.join(local, "comparison.png"), title)
    print("\n" + table)
    print(f"comparison table: {files.display(table_path)}")
    print(f"comparison plot:  {files.display(plot_path)}")
    print(f"total time: {format_duration(time.time() - start)}")


if __name__ == "__main__":
    cli.run(main)
