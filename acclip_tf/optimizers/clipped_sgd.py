"""What CClip and GClip share: SGD (optionally with EMA momentum) with a threshold."""

from typing import Any, NamedTuple

import keras
from keras import ops

from acclip_tf import clipping
from acclip_tf.optimizers.base import (
    ClippingOptimizer,
    SlotSpec,
    check_range,
    check_threshold,
)


class ThresholdScalars(NamedTuple):
    """`StepScalars` plus the threshold of this step."""

    learning_rate: Any
    iteration: Any
    tau: Any  # float32 scalar: `tau`, or its schedule at `iteration`


class ClippedSGD(ClippingOptimizer):
    """Base of `CClip` and `GClip`: the direction ``d`` and the threshold ``tau``.

    ``d`` is the aggregated gradient, or with ``momentum > 0`` its EMA
    ``m = momentum * m + (1 - momentum) * g`` (slot ``momentum``). Subclasses
    say how ``d`` is clipped at ``tau``.
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

    def slot_specs(self):
        return (SlotSpec("momentum", "zeros"),) if self.momentum > 0 else ()

    def step_scalars(self, learning_rate, iteration):
        tau = self.tau
        if isinstance(tau, keras.optimizers.schedules.LearningRateSchedule):
            tau = tau(iteration)
        return ThresholdScalars(learning_rate, iteration, ops.cast(tau, "float32"))

    def direction(self, gradient, slots):
        """``(d, new_slots)`` for one variable: the gradient or its EMA."""
        if self.momentum > 0:
            momentum = clipping.ema(slots[0], gradient, self.momentum)
            return momentum, (momentum,)
        return gradient, ()

    def get_config(self):
        config = super().get_config()
        tau = self.tau
        if isinstance(tau, keras.optimizers.schedules.LearningRateSchedule):
            tau = keras.saving.serialize_keras_object(tau)
        config.update(
            {"tau": tau, "momentum": self.momentum, "epsilon": self.epsilon}
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)  # the caller's dict stays as it was
        if isinstance(config.get("tau"), dict):
            config["tau"] = keras.saving.deserialize_keras_object(
                config["tau"], custom_objects=custom_objects
            )
        return super().from_config(config, custom_objects=custom_objects)
