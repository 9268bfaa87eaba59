"""CClip: coordinate-wise clipped SGD, eq. (CClip) of Zhang et al., 2020."""

import keras
from keras import ops

from acclip_tf import clipping
from acclip_tf.optimizers.base import Transformed, fill_keyword_docs
from acclip_tf.optimizers.clipped_sgd import ClippedSGD


@fill_keyword_docs
@keras.saving.register_keras_serializable(package="acclip_tf")
class CClip(ClippedSGD):
    """SGD whose direction is clipped coordinate by coordinate.

    Eq. (CClip) of "Why are Adaptive Methods Good for Attention Models?":
    with ``d`` the aggregated gradient (or, with ``momentum > 0``, its EMA
    ``m = momentum * m + (1 - momentum) * g``),

        update = min(tau / (|d| + epsilon), 1) * d      # = clip(d, -tau, tau) for epsilon=0
        x      = x - learning_rate * update

    Theorem 8 analyses it with the growing threshold ``tau_k = B k**(alpha-1)``:
    pass ``tau=acclip_tf.PolynomialThreshold(B, alpha - 1)`` (see its
    docstring: exponent ``1 / alpha`` is the one that reached the stated rate
    in our experiment).

    Args:
        learning_rate: A float >= 0 or a schedule. Defaults to 1e-2.
        tau: The threshold: a float > 0 or a
            `keras.optimizers.schedules.LearningRateSchedule` of the iteration.
            Defaults to 1.
        momentum: EMA coefficient of the clipped direction in [0, 1); 0 clips
            the raw gradient (no slot). Defaults to 0.
        epsilon: Added to ``|d|`` in the clipping ratio, >= 0. Defaults to 0.
        skip_nonfinite, track_clip_fraction, state_dtype: as in `ACClip`.
        {{base_optimizer_keyword_args}}

    Slots per variable: ``momentum`` when ``momentum > 0``, else none.
    """

    def transform(self, gradient, slots, scalars):
        direction, new_slots = self.direction(gradient, slots)
        tau = ops.cast(scalars.tau, gradient.dtype)
        clipped = None
        if self.track_clip_fraction:
            clipped = ops.sum(
                ops.cast(clipping.coordinate_clip_mask(direction, tau, self.epsilon), "float32")
            )
        return Transformed(
            new_slots, clipping.coordinate_clip(direction, tau, self.epsilon), clipped
        )
