"""The config fields the text tasks share (causal LM, BERT): a Transformer's size and a
corpus with its splits and vocabulary. A task's config inherits them and may override a
field (another default, the sizes its model module has)."""

import dataclasses
from typing import Optional

from trainers.common.config import Config, StreamingConfig, option

EVAL_SPLITS = ("validation", "test")


@dataclasses.dataclass(frozen=True)
class TransformerSizeConfig(Config):
    """A named size, each of its numbers overridable."""
    model_size: str = option("tiny", "The model size.")
    num_layers: Optional[int] = option(None, "Override the size's layers.", minimum=1)
    hidden_dim: Optional[int] = option(None, "Override the size's width.", minimum=1)
    num_heads: Optional[int] = option(None, "Override the size's attention heads.", minimum=1)
    intermediate_dim: Optional[int] = option(None, "Override the size's feed-forward width.",
                                             minimum=1)
    dropout: float = option(0.1, "Dropout rate of the model.", minimum=0.0, below=1.0)


@dataclasses.dataclass(frozen=True)
class TextDataConfig(StreamingConfig):
    """A corpus (in memory, or prepared shards), its held-out split and vocabulary."""
    corpus: str = option("wiki", "wiki (the default excerpt), files:GLOB or tfds:NAME.")
    max_documents: int = option(0, "Use only the first N documents (0: all).", minimum=0)
    eval_fraction: float = option(
        0.1, "Fraction of documents held out, halved into validation and test.", above=0.0,
        below=1.0)
    eval_split: str = option(
        "validation", "Held-out documents to evaluate on: validation (choose settings on it) "
        "or test (report the chosen ones): the corpus' held-out documents halved into the "
        "two with a fixed seed (the training documents are the same either way).",
        choices=EVAL_SPLITS)
    vocab_size: int = option(8192, "Vocabulary size to learn from the training split.",
                             minimum=1)
    vocab_file: Optional[str] = option(None, "Use this vocabulary instead of learning one.")
    seq_length: int = option(128, "Tokens per sequence.", minimum=1)
    data_dir: Optional[str] = option(
        None, "Read sequences prepared by trainers.prepare_pretraining_data from this "
        "directory (streamed per host; --corpus, --max_documents, --eval_fraction and "
        "--vocab_size are then the preparation's).")
