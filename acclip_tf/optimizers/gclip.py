"""GClip: SGD clipped by the global norm, eq. (GClip) of Zhang et al., 2020."""

import keras
from keras import ops

from acclip_tf import clipping
from acclip_tf.optimizers.base import GlobalClip, Transformed, fill_keyword_docs
from acclip_tf.optimizers.clipped_sgd import ClippedSGD


@fill_keyword_docs
@keras.saving.register_keras_serializable(package="acclip_tf")
class GClip(ClippedSGD):
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

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.global_norm = self.add_variable(
            (), dtype="float32", name="global_norm", aggregation="only_first_replica"
        )

    def transform(self, gradient, slots, scalars):
        # The direction before the global factor (`clip_globally`).
        direction, new_slots = self.direction(gradient, slots)
        return Transformed(new_slots, direction)

    def clip_globally(self, directions, scalars):
        norm = clipping.global_norm(directions)
        tau = ops.cast(scalars.tau, norm.dtype)
        scale = clipping.global_clip_scale(norm, tau, self.epsilon)
        clipped = None
        if self.track_clip_fraction:  # 1.0 when the step was clipped
            clipped = ops.cast(ops.greater(ops.add(norm, self.epsilon), tau), "float32")
        return GlobalClip(
            [ops.multiply(d, ops.cast(scale, d.dtype)) for d in directions],
            clip_fraction=clipped,
            records=((self.global_norm, norm),),
        )

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError(
            "GClip's update depends on the norm over all variables; call "
            "`apply(grads, variables)` / `apply_gradients(...)` instead of the "
            "per-variable `update_step`."
        )

