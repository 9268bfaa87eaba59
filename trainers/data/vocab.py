"""The WordPiece vocabulary: built from the training split, or read from a file."""

import os

import tensorflow as tf

from trainers.common.cli import TrainerError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_vocabulary(paragraphs, vocab_size, lowercase=True):
    """`keras_hub.tokenizers.compute_word_piece_vocabulary` over the paragraphs.

    The special tokens come first, so ``[PAD]`` is id 0.
    """
    import keras_hub

    if vocab_size <= len(SPECIAL_TOKENS) + 26:
        raise TrainerError(f"--vocab_size={vocab_size} is too small")
    data = tf.data.Dataset.from_tensor_slices(list(paragraphs)).batch(1000)
    vocab = keras_hub.tokenizers.compute_word_piece_vocabulary(
        data, vocab_size, lowercase=lowercase, strip_accents=lowercase,
        reserved_tokens=list(SPECIAL_TOKENS))
    return list(vocab)


def save_vocabulary(vocab, path):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    os.replace(tmp, path)  # atomic: another worker never reads half a file


def load_vocabulary(path):
    if not os.path.exists(path):
        raise TrainerError(f"vocabulary file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f if line.rstrip("\n")]
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise TrainerError(f"vocabulary {path} lacks the special tokens {missing}")
    return vocab
