"""GClip: SGD clipped by the global norm, eq. (GClip) of Zhang et al., 2020."""

import keras
from keras import ops

from acclip_tf import clipping
from acclip_tf.optimizers.base import ClippingOptimizer, check_range, check_threshold


@keras.saving.register_keras_serializable(package="acclip_tf")
class GClip(ClippingOptimizer):
    """SGD whose direction is clipped by its global norm over all variables.

    Eq. (GClip) of "Why are Adaptive Methods Good for Attention Models?": with
    ``d`` the aggregated gradient (or, with ``momentum > 0``, its EMA
    ``m = momentum * m + (1 - momentum) * g``) of *all* variables together,

        update = min(tau / (||d|| + epsilon), 1) * d
        x      = x - learning_rate * update

    Under `tf.distribute` the norm is that of the all-reduced direction, so
    every replica applies the same update and ``||update|| <= tau`` holds for
    the global batch. (Keras' own ``global_clipnorm`` clips each replica's
    gradient before the all-reduce instead.)

    Theorem 4's growing threshold ``tau_k = G k**(alpha-1)`` is
    ``tau=acclip_tf.PolynomialThreshold(G, alpha - 1)`` as printed; see that
    class's docstring for why ``PolynomialThreshold(G, 1 / alpha)`` is the one
    that reached the theorem's rate in our experiment.

    Args:
        learning_rate: A float >= 0 or a schedule. Defaults to 1e-2.
        tau: The threshold: a float > 0 or a
            `keras.optimizers.schedules.LearningRateSchedule` of the iteration.
            Defaults to 1.
        momentum: EMA coefficient in [0, 1); 0 clips the gradient itself.
            Defaults to 0.
        epsilon: Added to the norm in the clipping ratio, >= 0. Defaults to 0.
        skip_nonfinite, track_clip_fraction, state_dtype: as in `ACClip`.
        {{base_optimizer_keyword_args}}

    Slots per variable: ``momentum`` when ``momentum > 0``, else none. The
    pre-clip norm of the last step is kept in the scalar `global_norm`.
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

    def _build_diagnostics(self):
        self.global_norm = self.add_variable(
            (), dtype="float32", name="global_norm", aggregation="only_first_replica"
        )

    def _direction(self, gradient, slots):
        if self.momentum > 0:
            return clipping.ema(slots[0], gradient, self.momentum)
        return gradient

    def _global_context(self, grads, variables):
        directions = []
        for gradient, variable in zip(grads, variables):
            slots = self._get_slots(variable)
            gradient = ops.cast(gradient, self._slot_dtype(variable))
            directions.append(self._direction(gradient, slots))
        tau = self._current_threshold(self.tau)
        norm = clipping.global_norm(directions)
        scale = clipping.global_clip_scale(norm, ops.cast(tau, norm.dtype), self.epsilon)
        return {"tau": tau, "global_norm": norm, "scale": scale}

    def _clip_fraction(self, grads, variables, context):
        clipped = ops.greater(
            ops.add(context["global_norm"], self.epsilon),
            ops.cast(context["tau"], context["global_norm"].dtype),
        )
        return ops.cast(clipped, "float32")

    def _diagnostic_updates(self, context):
        updates = super()._diagnostic_updates(context)
        updates.append((self.global_norm, context["global_norm"], "assign"))
        return updates

    def _compute(self, gradient, slots, context, want_mask=False):
        direction = self._direction(gradient, slots)
        new_slots = [direction] if self.momentum > 0 else []
        update = ops.multiply(direction, ops.cast(context["scale"], gradient.dtype))
        return new_slots, update, None

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError(
            "GClip's update depends on the norm over all variables; call "
            "`apply(grads, variables)` / `apply_gradients(...)` instead of the "
            "per-variable `update_step`."
        )

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


GClip.__doc__ = GClip.__doc__.replace(
    "{{base_optimizer_keyword_args}}",
    keras.src.optimizers.optimizer.base_optimizer_keyword_args,
)
