"""The BERT size and masked-LM data flags (bert_pretrain; squad_finetune and
gradient_noise define the subsets they need)."""

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


def define_mlm_data_flags(eval_fraction_help="Fraction of documents held out for evaluation."):
    """Corpus, vocabulary and masking flags of the masked-LM stream (bert_pretrain,
    gradient_noise)."""
    define_once(flags.DEFINE_string, "corpus", "wiki",
                "wiki (the default excerpt), files:GLOB or tfds:NAME.")
    define_once(flags.DEFINE_integer, "max_documents", 0,
                "Use only the first N documents (0: all).")
    define_once(flags.DEFINE_float, "eval_fraction", 0.1, eval_fraction_help)
    define_once(flags.DEFINE_integer, "vocab_size", 8192, "WordPiece vocabulary size to learn.")
    define_once(flags.DEFINE_string, "vocab_file", None,
                "Use this vocabulary instead of learning one.")
    define_once(flags.DEFINE_integer, "seq_length", 128, "Tokens per sequence.")
    define_once(flags.DEFINE_integer, "max_predictions_per_seq", 20,
                "Masked positions per sequence at most.")
    define_once(flags.DEFINE_float, "mask_rate", 0.15, "Fraction of tokens masked.")
