"""The causal LM trainer's own flags (the shared ones: the fields of trainers/common/config.py).

Defined with `define_once`, so a program that also defines BERT's model or data
flags (a sweep driving several trainers) keeps one definition of each name.
"""

from absl import flags

from trainers.common.flags import define_once
from trainers.common import flags as common_flags
from trainers.common.text import shards as shards_lib
from trainers.lm.data import TOKENIZERS
from trainers.lm.model import MODEL_SIZES


def define_lm_flags():
    sizes = ", ".join(f"{k} ({l} layers, width {w}, {h} heads, ffn {i})"
                      for k, (l, w, h, i) in MODEL_SIZES.items())
    define_once(flags.DEFINE_string, "model_size", "tiny", f"Decoder size: {sizes}.")
    define_once(flags.DEFINE_integer, "num_layers", None, "Override the size's layers.")
    define_once(flags.DEFINE_integer, "hidden_dim", None, "Override the size's width.")
    define_once(flags.DEFINE_integer, "num_heads", None, "Override the size's attention heads.")
    define_once(flags.DEFINE_integer, "intermediate_dim", None,
                "Override the size's feed-forward width.")
    define_once(flags.DEFINE_float, "dropout", 0.1, "Dropout rate of the decoder.")
    define_once(flags.DEFINE_string, "corpus", "wiki",
                "wiki (the default excerpt), files:GLOB or tfds:NAME.")
    define_once(flags.DEFINE_integer, "max_documents", 0,
                "Use only the first N documents (0: all).")
    define_once(flags.DEFINE_float, "eval_fraction", 0.2,
                "Fraction of documents held out, halved into validation and test.")
    common_flags.define_eval_split_flag()
    define_once(flags.DEFINE_enum, "tokenizer", "word",
                "word: the --vocab_size most frequent lowercased words (+ [UNK]); "
                "wordpiece: a learned WordPiece vocabulary.", list(TOKENIZERS))
    define_once(flags.DEFINE_integer, "vocab_size", 8192,
                "Vocabulary size (special tokens included), learned from the training split.")
    define_once(flags.DEFINE_string, "vocab_file", None,
                "Use this vocabulary instead of learning one (it must fit --tokenizer).")
    define_once(flags.DEFINE_integer, "seq_length", 128,
                "Tokens per training sequence (the paper's target length is 128).")
    define_once(flags.DEFINE_integer, "train_windows", 0,
                "Train on only this many training windows, evenly spaced over the training "
                "split (0: all); with --global_batch_size equal to it every step is the full "
                "gradient of that set (deterministic gradient descent).")
    define_once(flags.DEFINE_integer, "frequency_buckets", 0,
                "Also report each evaluation's loss per token-frequency bucket "
                "(loss_bucket0 = the rarest .. loss_bucket<K-1>): the vocabulary ranked by its "
                "count among the training targets, cut into K buckets of equal target mass. "
                "0: off.")
    shards_lib.define_flags()
