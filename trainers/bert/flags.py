"""The BERT size flags of squad_finetune (bert_pretrain and gradient_noise generate
theirs from `trainers.bert.config.BertConfig`; SQuAD's typed config is the next step)."""

from absl import flags

from trainers.bert.model import MODEL_SIZES
from trainers.common.flags import define_once


def define_bert_model_flags(note="", dropout=True):
    """The BERT size flags of bert_pretrain, squad_finetune and gradient_noise.

    `note` prefixes each help text (e.g. "Fresh model: "); `dropout` adds --dropout.
    """
    define_once(flags.DEFINE_string, "model_size", "tiny",
                f"{note}One of {', '.join(MODEL_SIZES)}.")
    define_once(flags.DEFINE_integer, "num_layers", None, f"{note}Override the size's layers.")
    define_once(flags.DEFINE_integer, "hidden_dim", None,
                f"{note}Override the size's hidden size.")
    define_once(flags.DEFINE_integer, "num_heads", None,
                f"{note}Override the size's attention heads.")
    define_once(flags.DEFINE_integer, "intermediate_dim", None,
                f"{note}Override the feed-forward size (4 * hidden).")
    if dropout:
        define_once(flags.DEFINE_float, "dropout", 0.1, f"{note}Dropout rate of the backbone.")
