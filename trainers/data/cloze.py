"""A GENERATED cloze question-answering task on real Wikipedia text (not SQuAD).

No SQuAD data can be fetched here, so the demo and the tests fine-tune on
questions made from the *held-out* articles of the pretraining corpus (the
documents `trainers.bert_pretrain` never trains on): a sentence of a
paragraph with one span blanked out (a number, or a capitalised name that
does not begin the sentence) is the question, the paragraph is the context,
and the blanked span at its place in the paragraph is the answer. The
result is written in the SQuAD v1.1 JSON format (so the same reader,
features and metric apply) with ``"version": GENERATED_VERSION`` and titles
``generated-cloze-doc<N>`` so that it is never mistaken for SQuAD.
"""

import random
import re

from trainers.common.cli import TrainerError
from trainers.data import corpus as corpus_lib
from trainers.data.squad import Answer, SquadExample, to_squad_json

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


def candidates(sentence):
    """[(start, end)] spans of `sentence` that can be blanked out."""
    found = [m.span() for m in _NUMBER.finditer(sentence)]
    found += [m.span() for m in _NAME.finditer(sentence) if m.start() > 0]
    return sorted(set(found))


def paragraph_questions(paragraph, rng, per_paragraph, min_chars=30, max_chars=300):
    """[(question, answer_text, answer_start)] for one paragraph."""
    options = []
    for s, e in sentences(paragraph):
        sentence = paragraph[s:e]
        if min_chars <= len(sentence) <= max_chars:
            spans = candidates(sentence)
            if spans:
                options.append((s, sentence, spans))
    rng.shuffle(options)
    out = []
    for s, sentence, spans in options[:per_paragraph]:
        a, b = rng.choice(spans)
        question = f"{sentence[:a]}{BLANK}{sentence[b:]}"
        out.append((question, sentence[a:b], s + a))
    return out


def generate_examples(documents, seed=0, per_paragraph=2, doc_offset=0):
    """`SquadExample`s of cloze questions over `documents` (lists of paragraphs)."""
    examples = []
    for d, paragraphs in enumerate(documents):
        rng = random.Random(f"{seed}-{doc_offset + d}")
        title = f"generated-cloze-doc{doc_offset + d}"
        for p, paragraph in enumerate(paragraphs):
            for q, (question, text, start) in enumerate(
                    paragraph_questions(paragraph, rng, per_paragraph)):
                examples.append(SquadExample(
                    f"gen-{doc_offset + d}-{p}-{q}", title, question, paragraph,
                    (Answer(text, start),)))
    return examples


def generated_sets(corpus="wiki", eval_fraction=0.1, dev_fraction=0.3, seed=0,
                   max_train=0, max_dev=0, per_paragraph=2, max_documents=None):
    """(train_json, dev_json): cloze sets over the pretraining corpus' held-out
    articles (the split of `trainers.bert_pretrain` with the same
    `--corpus`/`--eval_fraction`), divided again by article into train and dev."""
    documents = corpus_lib.load_corpus(corpus, max_documents)
    _, held_out = corpus_lib.split_documents(documents, eval_fraction, seed=0)
    if len(held_out) < 2:
        raise TrainerError(f"the held-out split of --corpus={corpus} has {len(held_out)} "
                           "article(s); the generated task needs at least 2")
    _, dev_docs = corpus_lib.split_documents(held_out, dev_fraction, seed=seed)
    dev_ids = {id(d) for d in dev_docs}
    train = generate_examples([d for d in held_out if id(d) not in dev_ids], seed,
                              per_paragraph, doc_offset=0)
    dev = generate_examples(dev_docs, seed, per_paragraph, doc_offset=len(held_out))
    rng = random.Random(seed)
    rng.shuffle(train)
    if max_train:
        train = train[:max_train]
    if max_dev:
        dev = sorted(dev, key=lambda e: random.Random(f"{seed}-{e.qid}").random())[:max_dev]
    return to_squad_json(train, GENERATED_VERSION), to_squad_json(dev, GENERATED_VERSION)
