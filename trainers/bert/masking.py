"""BERT's masked-LM example generation, stateless and seeded per example.

For one sequence of token ids: choose ``n = min(max_predictions,
max(1, round(rate * candidates)))`` positions uniformly among the
*candidates* (not special tokens, not padding); replace 80% of them by
``[MASK]``, 10% by a random non-special token, and keep 10%. Randomness comes
from `tf.random.stateless_*` with a per-example seed, so the same
(seed, example index) always gives the same masks: the pipeline is
deterministic, resumable by skipping, and identical on every worker.
"""

import tensorflow as tf


def mask_sequence(token_ids, seed, *, mask_token_id, special_token_ids, vocab_size,
                  max_predictions, mask_rate=0.15, first_random_id=None):
    """One example -> dict(token_ids, mask_positions, mask_ids, mask_weights).

    Args:
        token_ids: int32 [L] (padding included; padding must be a special token).
        seed: int32/int64 [2], the example's stateless seed.
        special_token_ids: ids never selected ([PAD], [CLS], [SEP], ...).
        first_random_id: random replacements are drawn from
            ``[first_random_id, vocab_size)``; default ``max(special) + 1``.
    Returns positions sorted ascending, padded to `max_predictions` with 0 and
    weight 0; ``mask_ids`` are the original ids at those positions.
    """
    token_ids = tf.convert_to_tensor(token_ids, tf.int32)
    length = tf.shape(token_ids)[0]
    special = tf.constant(list(special_token_ids), tf.int32)
    if first_random_id is None:
        first_random_id = max(special_token_ids) + 1
    is_candidate = tf.reduce_all(token_ids[:, None] != special[None, :], axis=1)
    num_candidates = tf.reduce_sum(tf.cast(is_candidate, tf.int32))
    n = tf.cast(tf.round(mask_rate * tf.cast(num_candidates, tf.float32)), tf.int32)
    n = tf.minimum(tf.minimum(tf.maximum(n, 1), max_predictions), num_candidates)

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    scores = tf.random.stateless_uniform([length], seeds[0])
    scores = tf.where(is_candidate, scores, 2.0)  # non-candidates sort last
    k = tf.minimum(max_predictions, length)
    _, order = tf.math.top_k(-scores, k=k)
    chosen = tf.sort(order[:n])

    action = tf.random.stateless_uniform([n], seeds[1])
    random_ids = tf.random.stateless_uniform(
        [n], seeds[2], minval=first_random_id, maxval=vocab_size, dtype=tf.int32)
    original = tf.gather(token_ids, chosen)
    replacement = tf.where(action < 0.8, mask_token_id,
                           tf.where(action < 0.9, random_ids, original))
    masked = tf.tensor_scatter_nd_update(token_ids, chosen[:, None], replacement)

    pad = max_predictions - n
    return {
        "token_ids": masked,
        "mask_positions": tf.pad(chosen, [[0, pad]]),
        "mask_ids": tf.pad(original, [[0, pad]]),
        "mask_weights": tf.pad(tf.ones([n], tf.float32), [[0, pad]]),
    }


def example_seed(seed, index):
    """The stateless seed of example `index` under the run's `seed`."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
