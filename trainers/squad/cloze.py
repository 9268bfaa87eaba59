"""A GENERATED cloze question-answering task on real Wikipedia text (not SQuAD).

No SQuAD data can be fetched here, so the demo and the tests fine-tune on
questions made from the *held-out* articles of the pretraining corpus (the
documents `trainers.bert_pretrain` never trains on): a sentence of a
paragraph with one span blanked out (a number, or a capitalised name that
does not begin the sentence) is the question, the paragraph (or, with
`max_context_chars`, the sentences around that sentence) is the context, and
the blanked span at its place in the context is the answer. The
result is written in the SQuAD v1.1 JSON format (so the same reader,
features and metric apply) with ``"version": GENERATED_VERSION`` and titles
``generated-cloze-doc<N>`` so that it is never mistaken for SQuAD.
"""

import random
import re

from trainers.common.errors import TrainerError
from trainers.common.text import corpus as corpus_lib
from trainers.squad.data import Answer, SquadExample, to_squad_json

GENERATED_VERSION = "generated-cloze-on-wikipedia (NOT SQuAD)"
BLANK = "_"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*(?!\w)")
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,3}\b")


def sentences(paragraph):
    """[(start, end)] character spans of the paragraph's sentences."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(paragraph)))
    return spans


ANSWER_KINDS = ("both", "numbers", "names")


def candidates(sentence, kinds="both"):
    """[(start, end)] spans of `sentence` that can be blanked out: numbers and/or
    capitalised names (not the sentence's first word)."""
    found = []
    if kinds in ("both", "numbers"):
        found += [m.span() for m in _NUMBER.finditer(sentence)]
    if kinds in ("both", "names"):
        found += [m.span() for m in _NAME.finditer(sentence) if m.start() > 0]
    return sorted(set(found))


def _context_around(spans, k, max_chars):
    """(start, end) of consecutive sentences around sentence k within max_chars."""
    lo = hi = k
    start, end = spans[k]
    grew = True
    while grew:
        grew = False
        if lo > 0 and end - spans[lo - 1][0] <= max_chars:
            lo -= 1
            start = spans[lo][0]
            grew = True
        if hi + 1 < len(spans) and spans[hi + 1][1] - start <= max_chars:
            hi += 1
            end = spans[hi][1]
            grew = True
    return start, end


def paragraph_questions(paragraph, rng, per_paragraph, max_context_chars=0, kinds="both",
                        min_chars=30, max_chars=300):
    """[(question, answer_text, context_start, context_end, answer_start)] of one paragraph.

    The context is the paragraph, or with `max_context_chars` the sentences
    around the question's sentence that fit in that many characters."""
    spans = sentences(paragraph)
    options = []
    for k, (s, e) in enumerate(spans):
        sentence = paragraph[s:e]
        if min_chars <= len(sentence) <= max_chars:
            found = candidates(sentence, kinds)
            if found:
                options.append((k, s, sentence, found))
    rng.shuffle(options)
    out = []
    for k, s, sentence, found in options[:per_paragraph]:
        a, b = rng.choice(found)
        question = f"{sentence[:a]}{BLANK}{sentence[b:]}"
        c0, c1 = (_context_around(spans, k, max_context_chars) if max_context_chars
                  else (0, len(paragraph)))
        out.append((question, sentence[a:b], c0, c1, s + a - c0))
    return out


def generate_examples(documents, seed=0, per_paragraph=2, doc_offset=0, max_context_chars=0,
                      kinds="both"):
    """`SquadExample`s of cloze questions over `documents` (lists of paragraphs)."""
    examples = []
    for d, paragraphs in enumerate(documents):
        rng = random.Random(f"{seed}-{doc_offset + d}")
        title = f"generated-cloze-doc{doc_offset + d}"
        for p, paragraph in enumerate(paragraphs):
            made = paragraph_questions(paragraph, rng, per_paragraph, max_context_chars, kinds)
            for q, (question, text, c0, c1, start) in enumerate(made):
                examples.append(SquadExample(
                    f"gen-{doc_offset + d}-{p}-{q}", title, question, paragraph[c0:c1],
                    (Answer(text, start),)))
    return examples


def generated_sets(corpus="wiki", eval_fraction=0.1, dev_fraction=0.3, seed=0,
                   max_train=0, max_dev=0, per_paragraph=2, max_context_chars=0,
                   kinds="both", max_documents=None):
    """(train_json, dev_json): cloze sets over the pretraining corpus' held-out
    articles (the split of `trainers.bert_pretrain` with the same
    `--corpus`/`--eval_fraction`), divided again by article into train and dev."""
    if kinds not in ANSWER_KINDS:
        raise TrainerError(f"unknown answer kinds {kinds!r}; choose one of "
                           f"{', '.join(ANSWER_KINDS)}")
    documents = corpus_lib.load_corpus(corpus, max_documents)
    _, held_out = corpus_lib.split_documents(documents, eval_fraction, seed=0)
    if len(held_out) < 2:
        raise TrainerError(f"the held-out split of --corpus={corpus} has {len(held_out)} "
                           "article(s); the generated task needs at least 2")
    _, dev_docs = corpus_lib.split_documents(held_out, dev_fraction, seed=seed)
    dev_ids = {id(d) for d in dev_docs}
    train = generate_examples([d for d in held_out if id(d) not in dev_ids], seed,
                              per_paragraph, 0, max_context_chars, kinds)
    dev = generate_examples(dev_docs, seed, per_paragraph, len(held_out), max_context_chars,
                            kinds)
    rng = random.Random(seed)
    rng.shuffle(train)
    if max_train:
        train = train[:max_train]
    if max_dev:
        dev = sorted(dev, key=lambda e: random.Random(f"{seed}-{e.qid}").random())[:max_dev]
    return to_squad_json(train, GENERATED_VERSION), to_squad_json(dev, GENERATED_VERSION)
