"""Start/end logits of the windows -> one answer text per question (plus n-best).

For every window of a question the `n_best_size` highest start and end
logits are paired; a pair is dropped when either token lies outside the
context, the end precedes the start, the span is longer than
`max_answer_length` tokens, or the start token does not have its maximal
context in this window. The remaining spans of all windows are ranked by
start + end logit, identical texts are merged, and the best is the
prediction: the original context's characters from the start token's first
to the end token's last character (so case, accents and spacing are the
context's own). A question without any valid span predicts "".
"""

import math

import numpy as np


def _top(logits, n):
    return np.argsort(-logits, kind="stable")[:n]


def _softmax(scores):
    if not scores:
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def postprocess(examples, features, start_logits, end_logits, n_best_size=20,
                max_answer_length=30):
    """(predictions {id: text}, nbest {id: [{text, probability, start_logit, end_logit}]})

    `start_logits`/`end_logits`: [len(features), max_seq_length] arrays in the
    order of `features` (a `trainers.squad.features.Features`).
    """
    by_example = {}
    for f, e in enumerate(features.example_index):
        by_example.setdefault(int(e), []).append(f)
    predictions, nbest = {}, {}
    for i, example in enumerate(examples):
        candidates = []
        for f in by_example.get(i, []):
            token_start, token_end = features.token_start[f], features.token_end[f]
            best_context = features.max_context[f]
            sl, el = start_logits[f], end_logits[f]
            for s in _top(sl, n_best_size):
                if token_start[s] < 0 or not best_context[s]:
                    continue
                for e in _top(el, n_best_size):
                    if token_start[e] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    candidates.append((float(sl[s] + el[e]), float(sl[s]), float(el[e]),
                                       int(token_start[s]), int(token_end[e])))
        candidates.sort(key=lambda c: -c[0])
        chosen, seen = [], set()
        for score, s_logit, e_logit, a, b in candidates:
            text = example.context[a:b]
            if text in seen:
                continue
            seen.add(text)
            chosen.append((score, text, s_logit, e_logit))
            if len(chosen) == n_best_size:
                break
        probabilities = _softmax([c[0] for c in chosen])
        nbest[example.qid] = [
            {"text": text, "probability": p, "start_logit": s_logit, "end_logit": e_logit}
            for (_, text, s_logit, e_logit), p in zip(chosen, probabilities)]
        predictions[example.qid] = chosen[0][1] if chosen else ""
    return predictions, nbest
