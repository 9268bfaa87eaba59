"""CClip: coordinate-wise clipped SGD, eq. (CClip) of Zhang et al., 2020."""

import keras

from acclip_tf import clipping
from acclip_tf.optimizers.base import ClippingOptimizer, check_range, check_threshold


@keras.saving.register_keras_serializable(package="acclip_tf")
class CClip(ClippingOptimizer):
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

    def __init__(
        self,
        learning_rate=1e-2,
        tau=1.0,
        momentum=0.0,
        epsilon=0.0,
        skip_nonfinite=False,
        track_clip_fraction=False,
        state_dtype=None,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        tau = check_threshold("tau", tau)
        momentum = check_range("momentum", momentum, 0.0, 1.0, high_open=True)
        epsilon = check_range("epsilon", epsilon, low=0.0)
        super().__init__(
            learning_rate=learning_rate,
            skip_nonfinite=skip_nonfinite,
            track_clip_fraction=track_clip_fraction,
            state_dtype=state_dtype,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
            **kwargs,
        )
        self.tau = tau
        self.momentum = momentum
        self.epsilon = epsilon

    _schedule_arguments = ("tau",)

    def _slot_specs(self):
        return [("momentum", "zeros")] if self.momentum > 0 else []

    def _global_context(self, grads, variables):
        return {"tau": self._current_threshold(self.tau)}

    def _compute(self, gradient, slots, context, want_mask=False):
        if self.momentum > 0:
            direction = clipping.ema(slots[0], gradient, self.momentum)
            new_slots = [direction]
        else:
            direction, new_slots = gradient, []
        tau = keras.ops.cast(context["tau"], gradient.dtype)
        update = clipping.coordinate_clip(direction, tau, self.epsilon)
        mask = None
        if want_mask:
            mask = clipping.coordinate_clip_mask(direction, tau, self.epsilon)
        return new_slots, update, mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tau": self._serialize_threshold(self.tau),
                "momentum": self.momentum,
                "epsilon": self.epsilon,
            }
        )
        return config


CClip.__doc__ = CClip.__doc__.replace(
    "{{base_optimizer_keyword_args}}",
    keras.src.optimizers.optimizer.base_optimizer_keyword_args,
)
