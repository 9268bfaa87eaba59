"""Rare tokens in a minibatch and its gradient noise (issue 11, measurement 3).

Kunstner et al. (NeurIPS 2024) tie the difficulty of language models for SGD to
heavy-tailed class imbalance: most tokens are rare. If rare tokens carry the
noise, a minibatch whose prediction targets are rarer should have a larger noise
norm, above all in the groups a target touches directly (token embedding / tied
output matrix, output bias), and the minibatches in the tail (the excesses the
tail fit uses) should hold rarer targets than the bulk.

Pure numpy/scipy: the minibatches' targets and the training split's token counts
in, per-minibatch rarity and its rank correlations with noise norms out.
"""

import numpy as np
from scipy import stats

#: A target is "rare" when the training split holds it at most this many times.
RARE_COUNT = 10
#: The tail: the largest noise norms, the same fraction the tail fit uses.
TAIL_FRACTION = 0.1


def unigram_counts(token_arrays, vocab_size):
    """Occurrences of each token id in the training split (arrays of ids, any shape)."""
    ids = np.concatenate([np.asarray(a).ravel() for a in token_arrays])
    return np.bincount(ids, minlength=vocab_size)[:vocab_size]


def batch_rarity(targets, weights, counts, rare_count=RARE_COUNT):
    """Per minibatch, over its prediction targets (``weights > 0``):

    * ``surprisal``: mean of ``-log p(t)``, ``p`` the add-one unigram frequency of
      the training split (nats; larger = rarer targets),
    * ``max_surprisal``: the rarest target's,
    * ``rare_fraction``: the share of targets seen at most `rare_count` times,
    * ``targets``: how many targets.

    `targets`, `weights`: sequences of per-minibatch arrays of the same shape.
    """
    counts = np.asarray(counts, np.float64)
    log_p = np.log(counts + 1.0) - np.log(counts.sum() + len(counts))
    out = {"surprisal": [], "max_surprisal": [], "rare_fraction": [], "targets": []}
    for t, w in zip(targets, weights):
        t = np.asarray(t).ravel()[np.asarray(w).ravel() > 0]
        if t.size == 0:
            raise ValueError("a minibatch without prediction targets")
        s = -log_p[t]
        out["surprisal"].append(float(s.mean()))
        out["max_surprisal"].append(float(s.max()))
        out["rare_fraction"].append(float(np.mean(counts[t] <= rare_count)))
        out["targets"].append(int(t.size))
    return {k: np.asarray(v) for k, v in out.items()}


def rank_correlations(rarity, norms):
    """{statistic: {"rho", "p"}}: Spearman's rank correlation of each rarity
    statistic with the noise norms (one per minibatch, the same order)."""
    norms = np.asarray(norms, np.float64)
    out = {}
    for name in ("surprisal", "max_surprisal", "rare_fraction"):
        rho, p = stats.spearmanr(rarity[name], norms)
        out[name] = {"rho": float(rho), "p": float(p)}
    return out


def tail_versus_bulk(rarity, norms, tail_fraction=TAIL_FRACTION):
    """The rarity of the minibatches whose noise norm is among the largest
    `tail_fraction` vs the others: {statistic: {"tail_mean", "bulk_mean", "p"}}, ``p``
    the two-sided Mann-Whitney U test (no distributional assumption)."""
    norms = np.asarray(norms, np.float64)
    k = max(1, int(round(tail_fraction * len(norms))))
    in_tail = np.zeros(len(norms), bool)
    in_tail[np.argsort(norms)[-k:]] = True
    out = {"tail_minibatches": k}
    for name in ("surprisal", "max_surprisal", "rare_fraction"):
        values = np.asarray(rarity[name], np.float64)
        p = stats.mannwhitneyu(values[in_tail], values[~in_tail], alternative="two-sided").pvalue
        out[name] = {"tail_mean": float(values[in_tail].mean()),
                     "bulk_mean": float(values[~in_tail].mean()), "p": float(p)}
    return out
