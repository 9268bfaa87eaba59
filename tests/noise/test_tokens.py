"""trainers.noise.tokens: minibatch rarity against hand computations, and the rank
statistics against planted relations (pure numpy/scipy, no TensorFlow)."""

import math

import numpy as np
import pytest

from trainers.noise import tokens


def test_unigram_counts():
    counts = tokens.unigram_counts([np.array([[0, 1], [1, 3]]), np.array([3, 3])], 5)
    assert counts.tolist() == [1, 2, 0, 3, 0]


def test_batch_rarity_by_hand():
    counts = np.array([97, 2, 0, 1])  # total 100, add-one: p = (c + 1) / 104
    targets = [np.array([[0, 1], [2, 0]]), np.array([3, 3])]
    weights = [np.array([[1, 1], [1, 0]]), np.array([1.0, 0.0])]  # weight 0: not a target
    r = tokens.batch_rarity(targets, weights, counts, rare_count=1)
    s = {t: -math.log((c + 1) / 104) for t, c in enumerate(counts)}
    assert r["surprisal"][0] == pytest.approx((s[0] + s[1] + s[2]) / 3)
    assert r["max_surprisal"][0] == pytest.approx(s[2])
    assert r["rare_fraction"].tolist() == [pytest.approx(1 / 3), 1.0]  # token 2 (0x); token 3 (1x)
    assert r["targets"].tolist() == [3, 1]
    with pytest.raises(ValueError, match="without prediction targets"):
        tokens.batch_rarity([np.array([1])], [np.array([0])], counts)


def planted(n=2000, seed=0, coupling=1.0):
    rng = np.random.default_rng(seed)
    surprisal = rng.gamma(4.0, 1.0, n)
    rarity = {"surprisal": surprisal, "max_surprisal": surprisal + rng.exponential(1.0, n),
              "rare_fraction": rng.beta(2, 20, n)}
    norms = 1.0 + coupling * surprisal + rng.normal(0, 0.5, n)
    return rarity, norms


def test_rank_correlation_sees_a_planted_relation_and_not_an_absent_one():
    rarity, norms = planted(coupling=1.0)
    c = tokens.rank_correlations(rarity, norms)
    assert c["surprisal"]["rho"] > 0.8 and c["surprisal"]["p"] < 1e-10
    # rare_fraction is independent of the norms here: |rho| < 4 / sqrt(n) (4 sd of the
    # null distribution of Spearman's rho, P ~ 1e-4)
    assert abs(c["rare_fraction"]["rho"]) < 4 / math.sqrt(2000)
    # invariant to any increasing transformation of the norms (ranks only)
    c2 = tokens.rank_correlations(rarity, np.exp(norms))
    assert c2["surprisal"]["rho"] == pytest.approx(c["surprisal"]["rho"])


def test_tail_minibatches_hold_rarer_targets_when_planted():
    rarity, norms = planted(coupling=1.0)
    t = tokens.tail_versus_bulk(rarity, norms)
    assert t["tail_minibatches"] == 200
    assert t["surprisal"]["tail_mean"] > t["surprisal"]["bulk_mean"] + 2
    assert t["surprisal"]["p"] < 1e-10
    assert t["rare_fraction"]["p"] > 1e-4  # no planted relation: no tiny p (4-sd bound)
