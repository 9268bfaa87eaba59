"""The causal LM task's typed config (its flags are generated from these fields)."""

import dataclasses
from typing import Optional

from trainers.common.config import option
from trainers.common.text.config import TextDataConfig, TransformerSizeConfig
from trainers.lm.data import TOKENIZERS
from trainers.lm.model import MODEL_SIZES

_SIZES = ", ".join(f"{k} ({l} layers, width {w}, {h} heads, ffn {i})"
                   for k, (l, w, h, i) in MODEL_SIZES.items())


@dataclasses.dataclass(frozen=True)
class LMConfig(TransformerSizeConfig, TextDataConfig):
    """The decoder, the corpus and its windows, and the causal LM's extra measurements."""
    model_size: str = option("tiny", f"Decoder size: {_SIZES}.", choices=tuple(MODEL_SIZES))
    eval_fraction: float = option(
        0.2, "Fraction of documents held out, halved into validation and test.", above=0.0,
        below=1.0)
    tokenizer: str = option(
        "word", "word: the --vocab_size most frequent lowercased words (+ [UNK]); wordpiece: "
        "a learned WordPiece vocabulary.", choices=tuple(TOKENIZERS))
    vocab_size: int = option(
        8192, "Vocabulary size (special tokens included), learned from the training split.",
        minimum=1)
    vocab_file: Optional[str] = option(
        None, "Use this vocabulary instead of learning one (it must fit --tokenizer).")
    seq_length: int = option(
        128, "Tokens per training sequence (the paper's target length is 128).", minimum=1)
    train_windows: int = option(
        0, "Train on only this many training windows, evenly spaced over the training split "
        "(0: all); with --global_batch_size equal to it every step is the full gradient of "
        "that set (deterministic gradient descent).", minimum=0)
    frequency_buckets: int = option(
        0, "Also report each evaluation's loss per token-frequency bucket (loss_bucket0 = the "
        "rarest .. loss_bucket<K-1>): the vocabulary ranked by its count among the training "
        "targets, cut into K buckets of equal target mass. 0: off.", minimum=0)
