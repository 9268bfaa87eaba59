"""The WordPiece vocabulary: built from the training split, or read from a file."""

import hashlib

import tensorflow as tf

from trainers.common import files
from trainers.common.errors import TrainerError, first_line
from trainers.common.progress import Progress

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def make_tokenizer(vocab, lowercase=True):
    """KerasHub's BertTokenizer, normalising text as `vocab.build_vocabulary` learned it.

    An uncased vocabulary is learned from lowercased, accent-stripped text (as BERT
    uncased); a tokenizer that kept the accents would map every accented word to [UNK].
    """
    import keras_hub

    return keras_hub.models.BertTokenizer(vocabulary=list(vocab), lowercase=lowercase,
                                          strip_accents=lowercase)


def build_vocabulary(paragraphs, vocab_size, lowercase=True):
    """`keras_hub.tokenizers.compute_word_piece_vocabulary` over the paragraphs.

    The special tokens come first, so ``[PAD]`` is id 0.
    """
    import keras_hub

    if vocab_size <= len(SPECIAL_TOKENS) + 26:
        raise TrainerError(f"--vocab_size={vocab_size} is too small")
    paragraphs = list(paragraphs)
    if not paragraphs:
        raise TrainerError("no text to learn a vocabulary from (is the corpus empty?)")
    batch = 1000
    batches = -(-len(paragraphs) // batch)
    progress = Progress(f"learning a {vocab_size}-token WordPiece vocabulary", batches,
                        "batches of text counted")

    def counted(text):
        progress.update()
        if progress.count == batches:
            progress.note("words counted; learning the pieces (no progress within this step)")
        return text

    data = tf.data.Dataset.from_tensor_slices(paragraphs).batch(batch).map(
        lambda t: tf.ensure_shape(tf.py_function(counted, [t], tf.string), [None]))
    vocab = keras_hub.tokenizers.compute_word_piece_vocabulary(
        data, vocab_size, lowercase=lowercase, strip_accents=lowercase,
        reserved_tokens=list(SPECIAL_TOKENS))
    progress.done(f"{len(vocab)} tokens")
    # The learner can emit a whitespace token, which a one-token-per-line file cannot hold.
    return [t for t in vocab if t.strip()]


def save_vocabulary(vocab, path):
    files.write_text_atomically(path, "\n".join(vocab) + "\n")  # other workers may be reading


def load_vocabulary(path):
    if not files.exists(path):
        raise TrainerError(f"vocabulary file {path} does not exist")
    if files.isdir(path):
        raise TrainerError(f"vocabulary file {path} is a directory")
    try:
        text = files.read_text(path)
    except Exception as e:  # noqa: BLE001 - unreadable, not UTF-8, ...
        raise TrainerError(f"cannot read vocabulary file {path}: {first_line(e)}") from e
    vocab = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    return check_special_tokens(vocab, f"vocabulary {path}")


def check_special_tokens(vocab, what):
    """`vocab` (a list), or a TrainerError naming the special tokens it lacks."""
    vocab = list(vocab)
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise TrainerError(f"{what} lacks the special tokens {missing}")
    return vocab


def run_vocabulary(vocab_file, model_dir, is_chief, learn):
    """A run's vocabulary: ``vocab_file``, else ``model_dir/vocab.txt`` (a resumed run),
    else ``learn()``; the chief saves it as ``model_dir/vocab.txt``."""
    saved = files.join(model_dir, "vocab.txt")
    if not vocab_file and files.exists(saved):
        return load_vocabulary(saved)
    vocab = load_vocabulary(vocab_file) if vocab_file else learn()
    if is_chief:
        save_vocabulary(vocab, saved)
    return vocab


def corpus_vocabulary(train_documents, vocab_size):
    """WordPiece from a corpus' training documents (lists of paragraphs), memoised
    under the corpus cache directory: bert_pretrain, compare and gradient_noise
    learn the same vocabulary from the same split."""
    from trainers.common.text import corpus as corpus_lib

    print(f"WordPiece vocabulary of {vocab_size} tokens from the training split ...",
          flush=True)
    return cached_vocabulary([p for d in train_documents for p in d], vocab_size,
                             files.join(corpus_lib.cache_dir(), "vocab"))


def cached_vocabulary(paragraphs, vocab_size, cache_dir):
    """`build_vocabulary`, memoised in `cache_dir` by a hash of the text and size.

    Learning 8192 tokens from the default corpus takes about a minute; the
    demo and the tests learn it once per machine.
    """
    digest = hashlib.sha256()
    for p in paragraphs:
        digest.update(p.encode("utf-8") + b"\n")
    path = files.join(cache_dir, f"wordpiece-{vocab_size}-{digest.hexdigest()[:16]}.txt")
    if files.exists(path):
        return load_vocabulary(path)
    vocab = build_vocabulary(paragraphs, vocab_size)
    files.makedirs(cache_dir, what="the vocabulary cache")
    save_vocabulary(vocab, path)
    return vocab
