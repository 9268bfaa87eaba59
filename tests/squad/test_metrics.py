"""The official SQuAD v1.1 EM/F1 on cases whose values are worked out by hand."""

import pytest

from trainers.squad import metrics as m

# (prediction, gold, EM, F1), each computed by hand from the definition:
# lower case -> drop ASCII punctuation -> drop whole-word a/an/the -> collapse spaces.
CASES = [
    ("The Beatles", "beatles", 1.0, 1.0),
    ("the Church of St. Alban", "Church of St. Alban", 1.0, 1.0),
    # [in, 1642] vs [1642]: overlap 1, P 1/2, R 1 -> 2/3.
    ("in 1642", "1642", 0.0, 2 / 3),
    ("40,000", "40000", 1.0, 1.0),
    ("U.S.A.", "usa", 1.0, 1.0),
    ("an apple", "Apple!", 1.0, 1.0),
    # "theatre" is no article: [theatre] vs [atre] share nothing.
    ("theatre", "atre", 0.0, 0.0),
    # Both normalise to "": equal (EM 1) but no common token (F1 0).
    ("the", "a", 1.0, 0.0),
    # [cat, cat, sat] vs [cat, sat, on, mat]: overlap min(2,1)+1 = 2, P 2/3, R 1/2 -> 4/7.
    ("the cat the cat sat", "cat sat on the mat", 0.0, 4 / 7),
    # The en dash is not ASCII punctuation: one token "paris–roubaix" vs [paris, roubaix].
    ("Paris–Roubaix", "Paris Roubaix", 0.0, 0.0),
    ("  New   York ", "new york", 1.0, 1.0),
    # [100, °c] vs [100]: P 1/2, R 1 -> 2/3.
    ("100 °C", "100", 0.0, 2 / 3),
]


@pytest.mark.parametrize("prediction,gold,em,f1", CASES)
def test_single_answer(prediction, gold, em, f1):
    assert m.exact_match(prediction, gold) == em
    assert m.f1(prediction, gold) == pytest.approx(f1, abs=1e-12)


def test_normalisation():
    assert m.normalize_answer("The  Quick, brown FOX!") == "quick brown fox"
    assert m.normalize_answer("A man, a plan, an apple") == "man plan apple"


def test_max_over_gold_answers():
    golds = ["Broncos", "Denver Broncos team"]
    # vs [broncos]: P 1/2, R 1 -> 2/3; vs [denver, broncos, team]: P 1, R 2/3 -> 4/5.
    assert m.best_over_gold(m.f1, "Denver Broncos", golds) == pytest.approx(0.8)
    assert m.best_over_gold(m.exact_match, "Denver Broncos", golds) == 0.0
    assert m.best_over_gold(m.exact_match, "broncos.", golds) == 1.0


def test_dataset_totals_in_percent_missing_prediction_scores_zero():
    gold = {"q1": ["Denver Broncos"], "q2": ["1642"], "q3": ["anything"]}
    predictions = {"q1": "the Denver Broncos", "q2": "in 1642"}  # q3 unanswered
    result = m.evaluate(gold, predictions)
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
