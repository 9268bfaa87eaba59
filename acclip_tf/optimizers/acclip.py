"""ACClip: adaptive coordinate-wise clipping (Algorithm 1 of Zhang et al., 2020)."""

import keras
from keras import ops

from acclip_tf import clipping
from acclip_tf.optimizers.base import (
    ClippingOptimizer,
    SlotSpec,
    Transformed,
    check_range,
    fill_keyword_docs,
)


@fill_keyword_docs
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

    ``normalize=True`` is the step of the ICLR-2020 submission's public
    PyTorch code (github.com/rivercold/ACClip-Pytorch, file
    ``optimizers/ACClip.py``, option ``mod=1``), which also keeps
    ``v``, an EMA of ``g**2`` at rate ``beta_2`` updated *before* use, and
    divides the clipped momentum by ``sqrt(beta_2 * v) + epsilon`` (``beta_2``
    applied once more inside the root, ``epsilon`` outside it, the same
    ``epsilon`` as in the clipping ratio, no bias correction):

        v         = beta_2 * v + (1 - beta_2) * g**2
        update    = min(tau_alpha ** (1 / alpha) / (|m| + epsilon), 1)
                    / (sqrt(beta_2 * v) + epsilon) * m

    This is an Adam-scale step (about ``learning_rate`` per coordinate), the
    scale on which the paper's ``learning_rate=1e-4`` fits; Algorithm 1's
    step is on the gradient's scale. Differences from that code that remain:
    weight decay here is Keras' decoupled ``x -= lr * wd * x`` (the reference
    adds ``wd * x`` to the gradient), and ``tau_alpha`` starts at
    ``initial_tau ** alpha`` (the reference starts it at 0 and defaults to
    ``alpha=2``).

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
            last step in `clip_fraction` (counted in the same pass as the
            update). Defaults to False.
        state_dtype: Dtype of the slots (e.g. "float32" for bfloat16
            variables). Defaults to the variable's dtype.
        normalize: Divide the clipped momentum by ``sqrt(beta_2 * v) +
            epsilon`` as the reference code's ``mod=1`` (see above). Defaults
            to False: Algorithm 1 exactly.
        {{base_optimizer_keyword_args}}

    Slots per variable, in checkpoint order: ``momentum``, ``tau_alpha``,
    and with ``normalize=True`` also ``second_moment`` (``v``, starting at 0).
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
        normalize=False,
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
        self.normalize = bool(normalize)

    def slot_specs(self):
        specs = (
            SlotSpec("momentum", "zeros"),
            SlotSpec(
                "tau_alpha", keras.initializers.Constant(self.initial_tau**self.alpha)
            ),
        )
        if self.normalize:
            specs += (SlotSpec("second_moment", "zeros"),)
        return specs

    def transform(self, gradient, slots, scalars):
        momentum = clipping.ema(slots[0], gradient, self.beta_1)
        tau_alpha = clipping.ema(
            slots[1], clipping.abs_pow(gradient, self.alpha), self.beta_2
        )
        new_slots = (momentum, tau_alpha)
        normalizer = None
        if self.normalize:
            second_moment = clipping.ema(slots[2], ops.square(gradient), self.beta_2)
            normalizer = clipping.adam_normalizer(
                second_moment, self.beta_2, self.epsilon
            )
            new_slots += (second_moment,)
        direction, clipped = clipping.acclip_step(
            momentum,
            tau_alpha,
            self.alpha,
            self.epsilon,
            normalizer=normalizer,
            count_clipped=self.track_clip_fraction,
        )
        return Transformed(new_slots, direction, clipped)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "alpha": self.alpha,
                "initial_tau": self.initial_tau,
                "normalize": self.normalize,
            }
        )
        return config

