r"""Gradient-noise norms of real models at fixed weights (Figures 1, 2 and 4).

For a model at fixed weights, every minibatch ``i`` of a fixed stream gives a
gradient ``g_i``; the noise norm is ``||g_i - gbar||`` with ``gbar`` the mean
of the ``g_i`` (`acclip_tf.noise.gradient_noise_norms`, two passes over the
same minibatches). Dropout is off (``training=False``), so the only randomness
is the data. Every measurement is a (model, loss, dataset) triple; a
``--model`` path only says how to build its triples:

* ``--model=bert``: the masked-LM loss of BERT on the pretraining corpus, in
  the minibatches a ``trainers.bert_pretrain`` run with the same seed and
  batch size sees in its first ``--num_batches`` steps (training split, its
  masking). Model, data, minibatches and loss are those of the trainer's own
  task (``trainers.bert.task.BertPretrainTask``). With ``--pretrain_dir`` (a
  bert_pretrain ``model_dir``) the task is built from that run's
  ``config.json`` (every flag the run was made with) and its ``vocab.txt``,
  and the weights of the checkpoints named by ``--checkpoints`` (steps, or
  ``all``) are measured; ``init`` is a fresh model built with the run's seed
  (``--include_init``). Without it: a fresh model from this program's
  ``--model_size``/data flags (the same definitions as bert_pretrain's) and a
  WordPiece vocabulary learned from the corpus (cached, as bert_pretrain
  does) or ``--vocab_file``. Writes
  ``bert_histograms.png`` (Figure 1 f next to the references of Figure 1
  c/g), ``bert_variance.png`` (Figure 1 h), ``bert_development.png``
  (Figure 2, with two or more measurements) and ``bert_noise.json``.
* ``--model=causal_lm``: the next-token loss of a ``trainers.causal_lm`` run
  (``--pretrain_dir``, required: its ``config.json`` and ``vocab.txt``) at
  initialisation and at its checkpoints, on the windows the run trains on first
  (``trainers.lm.task.CausalLMTask``). Writes ``causal_lm_*.png`` and
  ``causal_lm_noise.json``.
* ``--model=attention_ablation`` (Figure 4): a small post-LN transformer
  encoder (``keras_hub.layers.TransformerEncoder`` blocks) and the same
  encoder with the self-attention sublayer removed (each block keeps its
  feed-forward sublayer, residual and LayerNorm), each on real text (the
  corpus, masked-LM loss) and on Gaussian input. Writes
  ``attention_ablation_histograms.png`` (4 panels),
  ``attention_ablation_variance.png`` and ``attention_ablation_noise.json``.
* ``--model=resnet``: a ResNet (``--image_model``, default resnet20) on image
  data (``--dataset``, default scikit-learn's digits), at initialisation and at
  checkpoints of a ``trainers.resnet_imagenet`` run (``--pretrain_dir``: the
  run's task from its ``config.json``, its loss with its label smoothing and L2
  term), in training mode (batch-norm batch statistics), on the task's
  eval-preprocessed training images (no augmentation). Without
  ``--pretrain_dir`` the loss is the plain cross-entropy.

A run made before trainers wrote ``config.json`` is refused in one line: rerun
its trainer.

Gaussian input (Figure 4). The token-embedding lookup is replaced by i.i.d.
Gaussian vectors, normalised to the RMS of the token-embedding
initialisation (0.02, BERT's), so position embeddings, the embedding
LayerNorm, padding, the predicted positions and the loss are those of the
text cell. Targets (``--gaussian_targets``): ``teacher`` (default) labels
each predicted position with ``argmax(z W)`` of its own input vector ``z``
for a fixed Gaussian matrix ``W`` (hidden x vocabulary): the same softmax
cross-entropy over the same number of classes and positions, but with
targets that are a function of the Gaussian input and nearly uniform over
the classes. Keeping the text's masked token ids as targets (``text``)
would bring the corpus back through the labels: their Zipf-distributed
frequencies shape the output layer's gradient, and targets unrelated to the
input are not a learning problem. ``text`` is kept for comparison.

Tail verdicts. Each measurement prints one line: the verdict of
`acclip_tf.noise.tails.classify_tail` (heavy / light / cannot tell, from the
bootstrap interval of the generalized-Pareto shape ``xi`` of the excesses over
the top 10 %), ``xi [lo, hi]``, ``n`` and the rule's calibrated error rates at
the nearest calibrated sample size (docs/figures/tail_rule_calibration.json;
"uncalibrated n" without it). The references are those of Figure 1 c/g as the
paper draws them: a normalised sum of ``--reference_dim`` squared Gaussians and
of squared alpha-stable(``--reference_alpha``) variables. Figures added for the
tails: ``<model>_tail_histograms.png`` (histograms with the references and the
verdicts), ``<model>_survival.png`` (log-log survival curves) and
``<model>_shape_vs_k.png`` (xi over k with its stability region).

Minibatch-size sweep (``--batch_sizes=1,4,16,64``): every model (init and each
checkpoint) is measured once per minibatch size at the same weights, each with
``--num_batches`` minibatches (labels ``"<cell> / batch <b>"``). A tail of
stable law keeps its index under averaging, a finite-variance one tends to a
Gaussian (xi -> 0): ``<model>_xi_vs_batch_size.png`` and the JSON's
``batch_size_sweep``.

Parameter groups (``--parameter_groups``, one device): the same two passes
also give the noise norm of each group of variables, grouped by their Keras
path (`trainers.noise.groups`: token embedding, position/segment embedding,
attention, feed-forward, LayerNorm, output bias, output head, other), each with
its verdict line; the JSON's measurement gets ``groups`` ({group: {"tail",
"parameters", "share_of_squared_noise", "noise_norms"}}) and
``group_variables``, and ``<model>_groups_<i>.png`` shows their survival curves.

JSON layout: ``{"model", "settings", "measurements": {label: {"tail":
tails.tail_report (verdict, xi, ci, k, threshold, n, ...), "calibration": the
rule's error rates at the nearest calibrated n (or null), "statistics":
acclip_tf.noise tail_statistics (older stable/raw Hill indices; valid for
scalar heavy-tailed samples without a bulk, not for norms on a bulk) +
gradient norms, "noise_norms": [...], "gradient_norms": [...]}},
"references": {label: {"tail", "statistics"}}, "batch_size_sweep": {cell:
{"batch_sizes", "labels", "xi", "ci", "verdict"}} (with --batch_sizes),
"figures": [...]}``. The variance plot shows the running variance estimate
``V_n = mean_{i<=n} r_i^2`` of each sample divided by its final value, so
samples of different scale share one axis (converging curves flatten out at
1; heavy tails jump).

    python -m trainers.gradient_noise --model=bert --output_dir=runs/noise \
        --pretrain_dir=runs/bert --checkpoints=all --num_batches=300
    python -m trainers.gradient_noise --model=bert --model_size=tiny --seq_length=64 \
        --num_batches=2000 --batch_size=8 --parameter_groups --output_dir=runs/m1_bert
    python -m trainers.gradient_noise --model=resnet --dataset=fashion_mnist \
        --num_batches=2000 --batch_size=16 --output_dir=runs/m1_resnet
    python -m trainers.gradient_noise --model=bert --model_size=tiny --seq_length=64 \
        --num_batches=300 --batch_sizes=1,4,16,64 --output_dir=runs/m2_bert
"""


import keras
from absl import flags

from trainers.bert.config import BertConfig
from trainers.common import cli
from trainers.common import config
from trainers.common import files
from trainers.common import strategy as common_strategy
from trainers.common.errors import TrainerError
from trainers.noise.ablation import GAUSSIAN_TARGETS
from trainers.noise.measurements import MODELS, batch_sizes, collect, references, write_outputs


# The BERT config's fields this program takes (a fresh model's size and data; a run's
# measurement reads the rest from the run).
BERT_FLAGS = ("model_size", "num_layers", "hidden_dim", "num_heads", "intermediate_dim",
              "corpus", "max_documents", "eval_fraction", "vocab_size", "vocab_file",
              "seq_length", "max_predictions_per_seq", "mask_rate")


def define_flags():
    """This program's flags, defined only when it runs (`python -m ...`).

    Tests import this module for its functions next to the other trainers,
    whose flags (e.g. resnet_imagenet's --model) would otherwise collide.
    """
    flags.DEFINE_enum("model", None, MODELS, "What to measure.")
    flags.DEFINE_string("output_dir", None, "Where the PNG figures and the JSON are written.")
    flags.DEFINE_string("pretrain_dir", None,
                        "A trainers.bert_pretrain, causal_lm or resnet_imagenet model_dir "
                        "(config.json, checkpoints/; bert and causal_lm: vocab.txt).")
    flags.DEFINE_string("checkpoints", None,
                        "With --pretrain_dir: comma-separated checkpoint steps, or 'all' (default).")
    flags.DEFINE_bool("include_init", True, "Also measure the model at initialisation.")
    flags.DEFINE_integer("num_batches", 200, "Minibatches per measurement (the noise sample size).")
    flags.DEFINE_integer("batch_size", 32, "Sequences per minibatch (global, over all replicas).")
    flags.DEFINE_list("batch_sizes", None,
                      "Minibatch-size sweep, e.g. 1,4,16,64: one measurement per size at the "
                      "same weights (replaces --batch_size).")
    flags.DEFINE_bool("parameter_groups", False,
                      "Also the noise norm of each parameter group (token embedding, attention, "
                      "feed-forward, LayerNorm, output bias, ...; trainers.noise.groups), from "
                      "the same two passes. One device only.")
    flags.DEFINE_integer("seed", 0, "Seed of the init, data order, masking and Gaussian input.")
    # The BERT task's model and data fields (a fresh model; --pretrain_dir: the run's own).
    config.define_flags(BertConfig, only=BERT_FLAGS)
    flags.DEFINE_enum("gaussian_targets", "teacher", GAUSSIAN_TARGETS,
                      "Targets of the Gaussian-input cells (see the module docstring).")
    flags.DEFINE_integer("reference_dim", 100, "Dimension of the synthetic reference vectors.")
    flags.DEFINE_float("reference_alpha", 1.5, "Tail index of the alpha-stable reference.")
    flags.DEFINE_string("image_model", "resnet20",
                        "--model=resnet: resnet20 (CIFAR-style; any depth 6n+2) or resnet50.")
    flags.DEFINE_string("dataset", "digits",
                        "--model=resnet: digits, fashion_mnist, folder:PATH, tfds:NAME or synthetic.")
    flags.DEFINE_integer("image_size", 0,
                         "--model=resnet: input side (0: the data's own; 224 for resnet50).")
    flags.DEFINE_enum("strategy", "one_device", ("one_device", "mirrored"),
                      "tf.distribute strategy of the gradient computation.")
    flags.DEFINE_integer("num_devices", None, "Devices for mirrored (on CPU: that many logical CPUs).")


FLAGS = flags.FLAGS


# ---------------------------------------------------------------- flags
def validate(f):
    if not f.model:
        raise TrainerError(f"--model is required; choose one of {', '.join(MODELS)}")
    if not f.output_dir:
        raise TrainerError("--output_dir is required")
    for name in ("num_batches", "batch_size", "reference_dim"):
        if getattr(f, name) < 1:
            raise TrainerError(f"--{name} must be >= 1, got {getattr(f, name)}")
    batch_sizes(f)
    if getattr(f, "parameter_groups", False) and (f.strategy != "one_device" or f.batch_sizes):
        raise TrainerError("--parameter_groups needs --strategy=one_device and no --batch_sizes")
    if f.num_batches < 16:
        raise TrainerError(f"--num_batches must be >= 16 for the tail-index estimators, "
                           f"got {f.num_batches}")
    if not 0 < f.reference_alpha <= 2:
        raise TrainerError(f"--reference_alpha must lie in (0, 2], got {f.reference_alpha}")
    if f.model == "attention_ablation" and (f.pretrain_dir or f.checkpoints):
        raise TrainerError("--pretrain_dir and --checkpoints apply to --model=bert, "
                           "causal_lm or resnet")
    if f.checkpoints and not f.pretrain_dir:
        raise TrainerError("--checkpoints needs --pretrain_dir (a bert_pretrain, causal_lm or "
                           "resnet_imagenet model_dir)")
    if f.pretrain_dir and not files.isdir(f.pretrain_dir):
        raise TrainerError(f"--pretrain_dir={f.pretrain_dir} does not exist")


def main(argv):
    del argv
    f = FLAGS
    validate(f)
    strategy = None
    if f.strategy == "mirrored":
        strategy = common_strategy.make_strategy("mirrored", None, f.num_devices)
        if f.batch_size % strategy.num_replicas_in_sync:
            raise TrainerError(f"--batch_size={f.batch_size} is not divisible by the "
                               f"{strategy.num_replicas_in_sync} replicas")
    keras.utils.set_random_seed(f.seed)
    samples, settings, facts, sweep, groups = collect(f, strategy)
    refs = references(f.num_batches, f.reference_dim, f.reference_alpha, f.seed)
    settings = dict(settings, num_batches=f.num_batches, batch_size=f.batch_size,
                    batch_sizes=batch_sizes(f), strategy=f.strategy)
    write_outputs(f.output_dir, f.model, samples, refs, settings, facts,
                  development=f.model in ("bert", "resnet", "causal_lm") and sweep is None,
                  sweep=sweep,
                  groups=groups)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
