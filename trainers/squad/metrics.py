"""The official SQuAD v1.1 exact match and F1, written from their definition.

An answer is normalised by: lower case, remove ASCII punctuation
(`string.punctuation`), remove the articles a/an/the as whole words, and
collapse whitespace. Exact match: the normalised strings are equal. F1: over
the normalised whitespace tokens, the overlap counts as a multiset; precision
= overlap / prediction tokens, recall = overlap / gold tokens, F1 their
harmonic mean (0 when nothing overlaps, also when both are empty). A question
scores the maximum over its gold answers; the totals are means over all
questions of the dataset in percent, a question without a prediction scoring 0.
"""

import collections
import re
import string

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text):
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction, gold):
    predicted = normalize_answer(prediction).split()
    wanted = normalize_answer(gold).split()
    overlap = sum((collections.Counter(predicted) & collections.Counter(wanted)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(wanted)
    return 2 * precision * recall / (precision + recall)


def best_over_gold(metric, prediction, golds):
    return max(metric(prediction, g) for g in golds)


def evaluate(gold_answers, predictions):
    """{"exact_match": %, "f1": %} of `predictions` (id -> text) against
    `gold_answers` (id -> [texts]); ids missing from predictions score 0."""
    if not gold_answers:
        return {"exact_match": float("nan"), "f1": float("nan")}
    em = f = 0.0
    for qid, golds in gold_answers.items():
        if qid not in predictions:
            continue
        em += best_over_gold(exact_match, predictions[qid], golds)
        f += best_over_gold(f1, predictions[qid], golds)
    n = len(gold_answers)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f / n}
