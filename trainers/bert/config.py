"""The BERT masked-LM pretraining task's typed config (its flags are generated from
these fields)."""

import dataclasses
from typing import Optional

from trainers.bert.model import MODEL_SIZES
from trainers.common.config import option
from trainers.common.text.config import TextDataConfig, TransformerSizeConfig


@dataclasses.dataclass(frozen=True)
class BertConfig(TransformerSizeConfig, TextDataConfig):
    """The encoder, the corpus, its masking, and an optional model to continue from."""
    model_size: str = option("tiny", f"One of {', '.join(MODEL_SIZES)}.",
                             choices=tuple(MODEL_SIZES))
    vocab_size: int = option(8192, "WordPiece vocabulary size to learn.", minimum=1)
    max_predictions_per_seq: int = option(20, "Masked positions per sequence at most.",
                                          minimum=1)
    mask_rate: float = option(0.15, "Fraction of tokens masked.", above=0.0, below=1.0)
    init_checkpoint: Optional[str] = option(
        None, "Continue pretraining from this BERT (weights only; the step starts at 0): a "
        "bert_pretrain model_dir or export, a KerasHub preset directory, or a preset handle "
        "(bert_base_en_uncased, kaggle://..., hf://...). Its vocabulary and lowercasing "
        "replace --vocab_file/--vocab_size and its shape the size flags; the masked-LM head "
        "is new.")
