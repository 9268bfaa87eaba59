"""The clipping math of the paper as pure functions over `keras.ops`.

Every function here takes and returns tensors (no variables, no state), so the
optimizers, the tests and the synthetic experiments share one definition of
each equation of "Why are Adaptive Methods Good for Attention Models?"
(Zhang et al., 2020):

* ``coordinate_clip``: eq. (CClip), ``min(tau / (|d| + eps), 1) * d`` per
  coordinate (with ``eps == 0`` exactly ``clip(d, -tau, tau)``).
* ``global_norm`` and ``global_clip_scale``: eq. (GClip), the factor
  ``min(tau / (||d|| + eps), 1)`` shared by all coordinates of all tensors.
* ``ema``, ``abs_pow`` and ``alpha_root``: the online moment estimate of
  Algorithm 1 (lines 3-4), ``tau**alpha <- beta_2 tau**alpha + (1-beta_2)|g|**alpha``.
* ``acclip_step``: Algorithm 1, line 5, with the count of clipped coordinates
  from the same pass and, optionally, the Adam-style normaliser ``sqrt(beta_2 * v) + eps`` of the ICLR-2020 reference
  code (``adam_normalizer``).

All functions are XLA-friendly (no data-dependent shapes, no Python branching
on tensor values) and work on any Keras backend.
"""

from keras import ops


def ema(average, value, decay):
    """Exponential moving average ``decay * average + (1 - decay) * value``."""
    return ops.add(ops.multiply(average, decay), ops.multiply(value, 1.0 - decay))


def abs_pow(x, alpha):
    """``|x| ** alpha``, with ``pow`` avoided for the common alpha 1 and 2."""
    alpha = float(alpha)
    if alpha == 1.0:
        return ops.abs(x)
    if alpha == 2.0:
        return ops.square(x)
    return ops.power(ops.abs(x), alpha)


def alpha_root(x, alpha):
    """``x ** (1 / alpha)`` for ``x >= 0``, avoiding ``pow`` for alpha 1 and 2."""
    alpha = float(alpha)
    if alpha == 1.0:
        return x
    if alpha == 2.0:
        return ops.sqrt(x)
    return ops.power(x, 1.0 / alpha)


def _safe_ratio_factor(tau, denominator):
    """``min(tau / denominator, 1)`` that is 0 (not NaN) when both are 0.

    Written as ``min(tau, den) / max(den, tiny)``: for ``den >= tiny`` this is
    bit-identical to ``min(tau / den, 1)`` (the same single division), and when
    ``den == 0`` (a zero direction with ``eps == 0``) the factor multiplies a
    zero anyway, so returning 0 keeps the update at 0 instead of NaN.
    """
    return ops.divide(
        ops.minimum(tau, denominator), ops.maximum(denominator, _tiny(denominator))
    )


def _tiny(x):
    return 1e-30 if ops.dtype(x) in ("float32", "float64") else 1e-7


def coordinate_clip(d, tau, epsilon=0.0):
    """Coordinate-wise clipping, eq. (CClip): ``min(tau / (|d| + eps), 1) * d``.

    Args:
        d: the direction (a gradient or a momentum), any shape.
        tau: the threshold, a scalar or a tensor broadcastable to ``d``; must
            be positive.
        epsilon: added to ``|d|``; with ``epsilon == 0`` the result is exactly
            ``clip(d, -tau, tau)``, which is what is computed.

    Returns:
        A tensor of ``d``'s shape whose entries satisfy ``|out_i| <= tau_i``.
    """
    if isinstance(epsilon, (int, float)) and float(epsilon) == 0.0:
        return ops.clip(d, ops.negative(tau), tau)
    return ops.multiply(
        _safe_ratio_factor(tau, ops.add(ops.abs(d), epsilon)), d
    )


def coordinate_clip_mask(d, tau, epsilon=0.0):
    """Boolean mask of the coordinates that ``coordinate_clip`` shrinks."""
    return ops.greater(ops.add(ops.abs(d), epsilon), tau)


def global_norm(tensors):
    """Euclidean norm of all entries of all ``tensors`` together (float32+)."""
    squares = [
        ops.sum(ops.square(ops.cast(t, _accumulation_dtype(t))))
        for t in tensors
        if t is not None
    ]
    if not squares:
        raise ValueError("global_norm needs at least one tensor.")
    total = squares[0]
    for s in squares[1:]:
        total = ops.add(total, ops.cast(s, ops.dtype(total)))
    return ops.sqrt(total)


def _accumulation_dtype(t):
    dtype = ops.dtype(t)
    return "float64" if dtype == "float64" else "float32"


def global_clip_scale(norm, tau, epsilon=0.0):
    """The GClip factor ``min(tau / (norm + eps), 1)``.

    A zero norm gives factor 1 (nothing to clip, no NaN); a non-finite norm
    gives a non-finite factor, so that a non-finite gradient is never hidden.
    """
    denominator = ops.add(norm, epsilon)
    factor = _safe_ratio_factor(tau, denominator)
    # _safe_ratio_factor maps 0/0 to 0; for GClip a zero norm means "no clip".
    return ops.where(ops.equal(denominator, 0.0), ops.ones_like(factor), factor)


def adam_normalizer(second_moment, beta_2, epsilon):
    """``sqrt(beta_2 * v) + eps``: the divisor of the reference code's ``mod=1``.

    As in rivercold/ACClip-Pytorch, optimizers/ACClip.py: ``v`` (an EMA of
    ``g**2`` at rate ``beta_2``, already updated with this step's gradient) is
    multiplied by ``beta_2`` once more inside the square root, and ``eps`` is
    added outside it.
    """
    return ops.add(ops.sqrt(ops.multiply(second_moment, beta_2)), epsilon)


def acclip_step(momentum, tau_alpha, alpha, epsilon, normalizer=None, count_clipped=False):
    """Algorithm 1 line 5 (optionally normalised) and its clip count, in one pass.

    Returns ``(direction, clipped)``: ``direction`` is
    ``min(tau / (|m| + eps), 1) * m`` (Algorithm 1 line 5) or, with a
    ``normalizer`` ``n``, ``(min(tau / (|m| + eps), 1) / n) * m``; ``clipped``
    is the number of coordinates whose factor is below 1 (float32 scalar) when
    ``count_clipped``, else None. ``tau = tau_alpha ** (1 / alpha)`` is
    computed once for both.
    """
    tau = alpha_root(tau_alpha, alpha)
    denominator = ops.add(ops.abs(momentum), epsilon)
    factor = _safe_ratio_factor(tau, denominator)
    if normalizer is not None:
        # A zero normaliser (eps == 0 and v == 0) comes with m == 0: factor 0.
        factor = ops.divide(factor, ops.maximum(normalizer, _tiny(normalizer)))
    clipped = None
    if count_clipped:
        clipped = ops.sum(ops.cast(ops.greater(denominator, tau), "float32"))
    return ops.multiply(factor, momentum), clipped


def all_finite(tensors):
    """Scalar boolean: every entry of every tensor is finite."""
    flags = [ops.all(ops.isfinite(t)) for t in tensors if t is not None]
    result = flags[0]
    for f in flags[1:]:
        result = ops.logical_and(result, f)
    return result
