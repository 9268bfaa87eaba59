"""Windows, labels and character offsets of SQuAD features."""

import numpy as np
import pytest
import tensorflow as tf

from squad_helpers import handwritten, small_vocabulary
from trainers.squad import features as sf

TRICKY = ["Café Ǆ Straße İstanbul ﬁne naïve 東京タワー résumé — “quoted” U.S.A. 1,000.5 $5 "
          "a\u00a0b e\u0301 \u200bzero", "  leading  spaces", "", "Ünïcödé ÀÉÎ"]


@pytest.fixture(scope="module")
def examples():
    return handwritten().examples


@pytest.fixture(scope="module")
def vocab(examples):
    return small_vocabulary([e.context for e in examples] + [e.question for e in examples]
                            + TRICKY)


@pytest.mark.parametrize("strip_accents", [False, True])
def test_token_ids_equal_keras_hub_bert_tokenizer(examples, vocab, strip_accents):
    import keras_hub

    # What trainers.bert_pretrain tokenises with (lowercase=True; accents as configured).
    reference = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True,
                                               strip_accents=strip_accents)
    tokenizer = sf.OffsetTokenizer.like(reference)
    texts = list(dict.fromkeys(e.context for e in examples)) + [e.question for e in examples] \
        + TRICKY
    expected = reference(tf.constant(texts))
    for text, (ids, starts, ends), want in zip(texts, tokenizer.tokenize(texts), expected):
        np.testing.assert_array_equal(ids, np.asarray(want), err_msg=text)
        assert np.all(starts < ends) and np.all(starts[1:] >= starts[:-1])
        assert len(ids) == 0 or ends[-1] <= len(text)


def test_offsets_point_at_the_original_characters(vocab):
    import keras_hub

    tokenizer = sf.OffsetTokenizer.like(
        keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True, strip_accents=True))
    text = "Über Straße, the CAFÉ's 40,000 copies."
    ids, starts, ends = tokenizer.tokenize([text])[0]
    # Accents are stripped and case folded for the ids, but the offsets index the original:
    # together the pieces cover exactly its non-space characters, in order.
    covered = sorted({i for a, b in zip(starts, ends) for i in range(a, b)})
    assert covered == [i for i, c in enumerate(text) if not c.isspace()]
    assert (np.diff(starts) >= 0).all()
    pieces = [text[a:b] for a, b in zip(starts, ends)]
    # "café" (accented) is a vocabulary word, "cafe" is not: CAFÉ -> c ##a ##f ##e, and the
    # last piece's span is the original "É".
    k = pieces.index("C")
    assert pieces[k:k + 5] == ["C", "A", "F", "É", "'"]
    assert pieces[0] == "Ü" and pieces[-1] == "."


def test_windows_follow_the_stride_rule():
    # 10 tokens, 4 per window, a new window every 2 tokens; the last one reaches the end.
    assert sf.windows(10, 4, 2) == [(0, 4), (2, 4), (4, 4), (6, 4)]
    assert sf.windows(11, 4, 3) == [(0, 4), (3, 4), (6, 4), (9, 2)]
    assert sf.windows(3, 4, 2) == [(0, 3)]
    mask = sf.max_context_mask(sf.windows(10, 4, 2), 10)
    # Token 3 sits at offset 3 of window 0 (score 0), 1 of window 1 (score 1), so window 1.
    assert mask[:, 3].tolist() == [False, True, False, False]
    assert (mask.sum(axis=0) == 1).all()


@pytest.fixture(scope="module")
def features(examples, vocab):
    import keras_hub

    tokenizer = sf.OffsetTokenizer.like(keras_hub.models.BertTokenizer(vocabulary=vocab,
                                                                       lowercase=True))
    return sf.build_features(examples, tokenizer, max_seq_length=64, doc_stride=16,
                             max_query_length=16, training=True)


def test_labels_map_back_to_exactly_the_answer_text(examples, features):
    labelled = {}
    for f in range(len(features)):
        s, e = features.start_positions[f], features.end_positions[f]
        if s == 0:
            assert e == 0
            continue
        example = examples[features.example_index[f]]
        text = example.context[features.token_start[f, s]:features.token_end[f, e]]
        assert text == example.answers[0].text.strip(), example.qid
        assert features.segment_ids[f, s] == 1 and features.segment_ids[f, e] == 1
        labelled[example.qid] = labelled.get(example.qid, 0) + 1
    # No example loses its answer: every one has at least one labelled window.
    assert set(labelled) == {e.qid for e in examples}


def test_long_contexts_make_several_windows(examples, features):
    count = np.bincount(features.example_index, minlength=len(examples))
    by_id = {e.qid: count[i] for i, e in enumerate(examples)}
    assert by_id["h-start"] >= 5 and by_id["b-title"] >= 3 and by_id["w-sea"] == 1
    # The late answer is only in later windows, the early one only in the first.
    rows = np.nonzero(features.example_index == [e.qid for e in examples].index("h-end"))[0]
    assert features.start_positions[rows[0]] == 0 and features.start_positions[rows[-1]] > 0
    rows = np.nonzero(features.example_index == 0)[0]
    assert features.start_positions[rows[0]] > 0 and features.start_positions[rows[-1]] == 0


def test_window_layout(examples, features, vocab):
    cls, sep, pad = (vocab.index(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    for f in range(len(features)):
        ids = features.token_ids[f]
        assert ids[0] == cls
        n = features.padding_mask[f].sum()
        assert ids[n - 1] == sep and (ids[n:] == pad).all()
        context = np.nonzero(features.token_start[f] >= 0)[0]
        # [CLS] q [SEP] | context | [SEP]: the context is contiguous, segment 1, before the last [SEP].
        assert context[-1] == n - 2 and (np.diff(context) == 1).all()
        assert ids[context[0] - 1] == sep
        assert (features.segment_ids[f, context[0]:n] == 1).all()
        assert (features.segment_ids[f, :context[0]] == 0).all()
    # Each context token has its maximal context in exactly one window of its example.
    for i in range(len(examples)):
        rows = np.nonzero(features.example_index == i)[0]
        starts = np.concatenate([features.token_start[r][features.max_context[r]] for r in rows])
        all_starts = np.unique(np.concatenate([features.token_start[r][features.token_start[r] >= 0]
                                               for r in rows]))
        assert sorted(starts.tolist()) == all_starts.tolist()


def test_training_skips_answers_without_tokens(vocab):
    import keras_hub

    from trainers.squad.data import Answer, SquadExample

    tokenizer = sf.OffsetTokenizer.like(keras_hub.models.BertTokenizer(vocabulary=vocab,
                                                                       lowercase=True))
    bad = SquadExample("ws", "t", "what?", "a \u200b b", (Answer("\u200b", 2),))
    train = sf.build_features([bad], tokenizer, 64, 16, 16, training=True)
    assert len(train) == 0 and train.skipped == [("ws", "the answer covers no token")]
    assert len(sf.build_features([bad], tokenizer, 64, 16, 16, training=False)) == 1
