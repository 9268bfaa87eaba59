"""A small text corpus (written, never downloaded) and preparation settings for the
prepared-shard tests (tests/common/text/test_shards.py, tests/bert/test_bert_shards.py,
tests/lm/test_causal_lm_shards.py)."""

import os
import random

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the bird", "our teacher",
            "the river pilot", "a young engineer", "the quiet village"]
VERBS = ["sees", "likes", "follows", "finds", "helps", "watches", "remembers", "paints"]
OBJECTS = ["the river", "a small house", "the green field", "the market", "a red ball",
           "the northern mountains", "an unusual painting", "the harbour lights"]


SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the bird", "our teacher",
            "the river pilot", "a young engineer", "the quiet village"]
VERBS = ["sees", "likes", "follows", "finds", "helps", "watches", "remembers", "paints"]
OBJECTS = ["the river", "a small house", "the green field", "the market", "a red ball",
           "the northern mountains", "an unusual painting", "the harbour lights"]


def write_corpus(directory, documents=30, seed=0):
    r = random.Random(seed)
    docs = []
    for d in range(documents):
        paras = [" ".join(f"{r.choice(SUBJECTS).capitalize()} {r.choice(VERBS)} "
                          f"{r.choice(OBJECTS)} number {r.randrange(100)}."
                          for _ in range(r.randrange(2, 9))) for _ in range(r.randrange(1, 5))]
        docs.append("\n".join(paras))
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "corpus.txt"), "w") as f:
        f.write("\n\n".join(docs) + "\n")
    return f"files:{directory}/*.txt"


def mlm_settings(corpus, **over):
    s = dict(corpus=corpus, max_documents=0, eval_fraction=0.2, layout="mlm",
             tokenizer="wordpiece", seq_length=32, num_shards=3, vocab_size=200,
             vocab_sample_documents=12)
    s.update(over)
    return s


def lm_settings(corpus, **over):
    s = dict(corpus=corpus, max_documents=0, eval_fraction=0.2, layout="causal_lm",
             tokenizer="word", seq_length=16, num_shards=2, vocab_size=80,
             vocab_sample_documents=0)
    s.update(over)
    return s
