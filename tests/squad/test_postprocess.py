"""Post-processing: oracle logits reproduce the gold answers; invalid spans are dropped."""

import numpy as np
import pytest

from squad_helpers import handwritten, small_vocabulary
from trainers.squad import metrics as squad_metrics
from trainers.squad import features as sf
from trainers.squad.postprocess import postprocess


@pytest.fixture(scope="module")
def data():
    import keras_hub

    dataset = handwritten()
    examples = dataset.examples
    vocab = small_vocabulary([e.context for e in examples] + [e.question for e in examples])
    tokenizer = sf.OffsetTokenizer.like(keras_hub.models.BertTokenizer(vocabulary=vocab,
                                                                       lowercase=True))
    features = sf.build_features(examples, tokenizer, max_seq_length=64, doc_stride=16,
                                 max_query_length=16, training=False)
    return dataset, features


def oracle_logits(examples, features, which):
    """Logits 10 at the tokens whose *characters* start/end gold answer `which`, else 0,
    in every window that holds them (found from the offsets, not from the labels)."""
    start = np.zeros(features.token_ids.shape, np.float32)
    end = np.zeros_like(start)
    for f in range(len(features)):
        example = examples[features.example_index[f]]
        answer = example.answers[min(which, len(example.answers) - 1)]
        s = np.nonzero(features.token_start[f] == answer.start)[0]
        e = np.nonzero(features.token_end[f] == answer.start + len(answer.text))[0]
        if len(s) and len(e):
            start[f, s[0]] = 10.0
            end[f, e[0]] = 10.0
    return start, end


@pytest.mark.parametrize("which", [0, 1])
def test_oracle_logits_give_exact_match_100(data, which):
    dataset, features = data
    examples = dataset.examples
    predictions, nbest = postprocess(examples, features, *oracle_logits(examples, features, which))
    for e in examples:
        assert predictions[e.qid] == e.answers[min(which, len(e.answers) - 1)].text, e.qid
        probabilities = [c["probability"] for c in nbest[e.qid]]
        assert sum(probabilities) == pytest.approx(1.0)
        assert probabilities == sorted(probabilities, reverse=True)
    assert squad_metrics.evaluate(dataset.gold_answers(), predictions) == {
        "exact_match": 100.0, "f1": 100.0}
    # The late answer is taken from a later window (its first window holds it not).
    index = [e.qid for e in examples].index("h-end")
    rows = np.nonzero(features.example_index == index)[0]
    assert len(rows) >= 5
    assert not (features.token_start[rows[0]] == examples[index].answers[0].start).any()


def _one_window(data, qid):
    dataset, features = data
    examples = dataset.examples
    i = [e.qid for e in examples].index(qid)
    rows = np.nonzero(features.example_index == i)[0]
    assert len(rows) == 1
    return examples, features, rows[0], features.token_start[rows[0]] >= 0


def test_invalid_spans_are_dropped(data):
    examples, features, f, context = _one_window(data, "w-sea")
    positions = np.nonzero(context)[0]
    # Every other position is far below (so only the designated candidates compete).
    start = np.full(features.token_ids.shape, -100.0, np.float32)
    end = np.full_like(start, -100.0)
    # Best of all: a span inside the question (outside the context) -> dropped.
    start[f, 1] = end[f, 2] = 100.0
    # Next: a valid two-token span.
    start[f, positions[0]] = 20.0
    end[f, positions[1]] = 20.0
    predictions, _ = postprocess(examples, features, start, end)
    context_text = examples[features.example_index[f]].context
    want = context_text[features.token_start[f, positions[0]]:features.token_end[f, positions[1]]]
    assert predictions["w-sea"] == want == "Water boils"
    # The only candidates (n_best_size 1) end before they start -> no valid span -> "".
    start[:] = end[:] = -100.0
    start[f, positions[5]] = 50.0
    end[f, positions[3]] = 50.0
    predictions, nbest = postprocess(examples, features, start, end, n_best_size=1)
    assert predictions["w-sea"] == "" and nbest["w-sea"] == []
    end[f, positions[6]] = 40.0
    assert postprocess(examples, features, start, end, n_best_size=2)[0]["w-sea"] == \
        context_text[features.token_start[f, positions[5]]:features.token_end[f, positions[6]]]
    # Longer than max_answer_length tokens -> dropped; a question without any valid span -> "".
    start[:] = end[:] = -100.0
    start[f, positions[0]] = 10.0
    end[f, positions[10]] = 10.0
    end[f, positions[0]] = 5.0
    assert postprocess(examples, features, start, end, max_answer_length=11)[0]["w-sea"] == \
        context_text[:features.token_end[f, positions[10]]]
    assert postprocess(examples, features, start, end, max_answer_length=10)[0]["w-sea"] == "Water"


def test_only_the_max_context_window_starts_a_span(data):
    dataset, features = data
    examples = dataset.examples
    i = [e.qid for e in examples].index("h-fire")
    rows = np.nonzero(features.example_index == i)[0]
    start = np.full(features.token_ids.shape, -100.0, np.float32)
    end = np.full_like(start, -100.0)
    # One character position seen by two windows: the higher score sits in the window where
    # that token does NOT have its maximal context, so that candidate must be ignored.
    for f in rows:
        for g in rows:
            if f == g:
                continue
            both = np.intersect1d(features.token_start[f][features.token_start[f] >= 0],
                                  features.token_start[g][features.token_start[g] >= 0])
            for char in both:
                pf = np.nonzero(features.token_start[f] == char)[0][0]
                pg = np.nonzero(features.token_start[g] == char)[0][0]
                if features.max_context[g, pg] and not features.max_context[f, pf]:
                    start[f, pf] = end[f, pf] = 30.0   # not max context here
                    start[g, pg] = end[g, pg] = 10.0   # max context here
                    text = examples[i].context[char:features.token_end[g, pg]]
                    predictions, _ = postprocess(examples, features, start, end)
                    assert predictions["h-fire"] == text
                    return
    pytest.fail("no token shared by two windows")
