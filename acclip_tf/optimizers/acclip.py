"""ACClip: adaptive coordinate-wise clipping (Algorithm 1 of Zhang et al., 2020)."""

import keras

from acclip_tf import clipping
from acclip_tf.optimizers.base import ClippingOptimizer, check_range


@keras.saving.register_keras_serializable(package="acclip_tf")
class ACClip(ClippingOptimizer):
    """Adaptive coordinate-wise clipping of the momentum (ACClip).

    Algorithm 1 of "Why are Adaptive Methods Good for Attention Models?"
    (Zhang et al., NeurIPS 2020), per coordinate, on the aggregated gradient
    ``g``:

        m         = beta_1 * m + (1 - beta_1) * g
        tau_alpha = beta_2 * tau_alpha + (1 - beta_2) * |g| ** alpha
        update    = min(tau_alpha ** (1 / alpha) / (|m| + epsilon), 1) * m
        x         = x - learning_rate * update

    The threshold ``tau`` tracks the alpha-th moment of each coordinate's
    gradient online, so the momentum is clipped at the current noise level of
    that coordinate: ``|update_i| <= tau_i``. There is no bias correction
    (the paper has none; ``m`` starting at 0 acts as a short warm-up).

    The paper's BERT settings are the defaults: ``learning_rate=1e-4``,
    ``beta_1=0.9``, ``beta_2=0.99``, ``epsilon=1e-5``, ``alpha=1``,
    ``initial_tau=1``, with ``weight_decay=1e-5``.

    Args:
        learning_rate: A float >= 0 or a
            `keras.optimizers.schedules.LearningRateSchedule`. Defaults to 1e-4.
        beta_1: Momentum decay in [0, 1). Defaults to 0.9.
        beta_2: Decay of the moment estimate ``tau ** alpha`` in [0, 1).
            Defaults to 0.99.
        epsilon: Added to ``|m|`` in the clipping ratio, >= 0. Defaults to 1e-5.
        alpha: The moment order in [1, 2]; 1 (the paper's choice) and 2 run
            without `pow`. Defaults to 1.
        initial_tau: The threshold before any gradient, > 0; the slot starts
            at ``initial_tau ** alpha``. Defaults to 1.
        skip_nonfinite: Skip the whole step (weights and slots untouched) when
            any aggregated gradient entry is inf/NaN; counted in
            `skipped_steps`. Defaults to False (non-finite values propagate).
        track_clip_fraction: Store the fraction of clipped coordinates of the
            last step in `clip_fraction`. Costs a second pass over the
            gradients and slots. Defaults to False.
        state_dtype: Dtype of the slots (e.g. "float32" for bfloat16
            variables). Defaults to the variable's dtype.
        {{base_optimizer_keyword_args}}

    Slots per variable, in checkpoint order: ``momentum``, ``tau_alpha``.
    """

    def __init__(
        self,
        learning_rate=1e-4,
        beta_1=0.9,
        beta_2=0.99,
        epsilon=1e-5,
        alpha=1.0,
        initial_tau=1.0,
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
        beta_1 = check_range("beta_1", beta_1, 0.0, 1.0, high_open=True)
        beta_2 = check_range("beta_2", beta_2, 0.0, 1.0, high_open=True)
        epsilon = check_range("epsilon", epsilon, low=0.0)
        alpha = check_range("alpha", alpha, 1.0, 2.0)
        initial_tau = check_range("initial_tau", initial_tau, low=0.0, low_open=True)
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
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.alpha = alpha
        self.initial_tau = initial_tau

    def _slot_specs(self):
        return [
            ("momentum", "zeros"),
            ("tau_alpha", keras.initializers.Constant(self.initial_tau**self.alpha)),
        ]

    def _compute(self, gradient, slots, context, want_mask=False):
        momentum, tau_alpha = slots
        momentum = clipping.ema(momentum, gradient, self.beta_1)
        tau_alpha = clipping.ema(
            tau_alpha, clipping.abs_pow(gradient, self.alpha), self.beta_2
        )
        direction = clipping.acclip_direction(
            momentum, tau_alpha, self.alpha, self.epsilon
        )
        mask = None
        if want_mask:
            mask = clipping.acclip_clip_mask(
                momentum, tau_alpha, self.alpha, self.epsilon
            )
        return [momentum, tau_alpha], direction, mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "alpha": self.alpha,
                "initial_tau": self.initial_tau,
            }
        )
        return config


ACClip.__doc__ = ACClip.__doc__.replace(
    "{{base_optimizer_keyword_args}}",
    keras.src.optimizers.optimizer.base_optimizer_keyword_args,
)
