"""The SQuAD fine-tuning task's typed config (squad_finetune's task flags are generated
from these fields)."""

import dataclasses
from typing import Optional

from trainers.bert.model import MODEL_SIZES
from trainers.common.config import option
from trainers.common.text.config import TransformerSizeConfig
from trainers.squad.cloze import ANSWER_KINDS


@dataclasses.dataclass(frozen=True)
class SquadConfig(TransformerSizeConfig):
    """The BERT to fine-tune (pretrained, or fresh of a size), the data (SQuAD-format
    files, a TFDS dataset, or the generated cloze task), the windows and the answers."""
    model_size: str = option("tiny", f"Fresh model (no --init_checkpoint): one of "
                             f"{', '.join(MODEL_SIZES)}.", choices=tuple(MODEL_SIZES))
    init_checkpoint: Optional[str] = option(
        None, "The pretrained BERT to fine-tune (weights only; the step starts at 0): a "
        "KerasHub preset handle (bert_base_en_uncased, kaggle://..., hf://...), a KerasHub "
        "preset directory, or a trainers.bert_pretrain model_dir or export. Its tokenizer "
        "gives the vocabulary and lowercasing. Without it: a fresh --model_size model.")
    vocab_file: Optional[str] = option(
        None, "Fresh model: vocabulary file (else learned and saved to model_dir/vocab.txt).")
    vocab_size: int = option(8192, "Fresh model: WordPiece vocabulary size to learn.",
                             minimum=1)
    train_file: Optional[str] = option(
        None, "SQuAD v1.1 JSON for training (default: generated task).")
    predict_file: Optional[str] = option(
        None, "SQuAD v1.1 JSON to evaluate on (default: generated task).")
    tfds: Optional[str] = option(
        None, "A prepared TFDS SQuAD dataset, e.g. squad/v1.1 (train and validation "
        "splits), instead of the files.")
    max_seq_length: int = option(384, "Tokens per window.", minimum=1)
    doc_stride: int = option(128, "Tokens between the starts of a context's windows.",
                             minimum=1)
    max_query_length: int = option(64, "Question tokens kept.", minimum=1)
    n_best_size: int = option(20, "Start/end candidates per window, answers in nbest.",
                              minimum=1)
    max_answer_length: int = option(30, "Longest answer in tokens.", minimum=1)
    corpus: str = option("wiki", "Generated task: the pretraining --corpus.")
    max_documents: int = option(0, "Generated task: the pretraining --max_documents "
                                "(0: all).", minimum=0)
    eval_fraction: float = option(
        0.1, "Generated task: the pretraining --eval_fraction (questions come only from its "
        "held-out articles).", above=0.0, below=1.0)
    generated_train_max: int = option(
        0, "Generated task: at most this many training questions (0: all).", minimum=0)
    generated_dev_max: int = option(
        0, "Generated task: at most this many dev questions (0: all).", minimum=0)
    generated_per_paragraph: int = option(2, "Generated task: questions per paragraph.",
                                          minimum=1)
    generated_answers: str = option(
        "both", "Generated task: blank out numbers, capitalised names, or both.",
        choices=tuple(ANSWER_KINDS))
    generated_context_chars: int = option(
        0, "Generated task: contexts of the sentences around the question that fit in this "
        "many characters (0: the paragraph).", minimum=0)
