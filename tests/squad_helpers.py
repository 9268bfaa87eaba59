"""Shared by the SQuAD tests: the hand-written set and a vocabulary made for it."""

import os
import re

from trainers.squad import data as squad
from trainers.common.text.vocab import SPECIAL_TOKENS

HANDWRITTEN = os.path.join(os.path.dirname(__file__), "data", "squad_handwritten.json")


def handwritten():
    return squad.load_squad_file(HANDWRITTEN, strict=True)


def small_vocabulary(texts, max_word_chars=5):
    """Special tokens, every character (as a word start and as ##suffix), and the
    lower-cased words of at most `max_word_chars` characters, so longer words
    split into several pieces (which exercises the pieces' offsets)."""
    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    words = sorted({w for t in texts for w in re.findall(r"\w+", t.lower())
                    if 1 < len(w) <= max_word_chars})
    return list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars] + words


def corpus_vocabulary(texts, size):
    """A fast stand-in for a learned WordPiece vocabulary: special tokens, every
    character (word start and ##suffix), then the most frequent lower-cased words."""
    import collections

    counts = collections.Counter(w for t in texts for w in re.findall(r"\w+", t.lower()))
    vocab = small_vocabulary(texts, max_word_chars=0)
    known = set(vocab)
    for word, _ in counts.most_common():
        if len(vocab) >= size:
            break
        if word not in known:
            vocab.append(word)
            known.add(word)
    return vocab
