"""Threshold schedules from the paper's theorems (usable as `tau=` or `learning_rate=`)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="acclip_tf")
class PolynomialThreshold(keras.optimizers.schedules.LearningRateSchedule):
    """``value(step) = scale * (step + offset) ** power``.

    With the optimizer's 0-based iteration counter and ``offset=1`` the first
    step is ``k = 1``, so Theorem 4's clipping threshold as printed,
    ``tau_k = G k**(alpha-1)``, is ``PolynomialThreshold(G, alpha - 1)`` and
    its step size ``eta_k = 4 / (mu (k + 1))`` is
    ``PolynomialThreshold(4 / mu, -1, offset=2)``.

    Note: balancing the clipping bias (~ tau**-(alpha-1)) against the clipped
    noise (~ tau**(2-alpha) / k) gives ``tau_k ~ k**(1/alpha)``, and only that
    exponent reached the theorem's rate ``k**(-2(alpha-1)/alpha)`` in our
    experiment (`python -m trainers.heavy_tail_rates`, docs/evidence.md):
    ``PolynomialThreshold(G, 1 / alpha)``. The printed exponent ``alpha - 1``
    equals ``1 / alpha`` only at alpha = 1.618 (the golden ratio).
    """

    def __init__(self, scale, power, offset=1.0):
        if not scale > 0:
            raise ValueError(f"`scale` must be > 0. Received: scale={scale!r}")
        if not offset > 0:
            raise ValueError(f"`offset` must be > 0. Received: offset={offset!r}")
        self.scale = float(scale)
        self.power = float(power)
        self.offset = float(offset)

    def __call__(self, step):
        k = ops.add(ops.cast(step, "float32"), self.offset)
        return ops.multiply(self.scale, ops.power(k, self.power))

    def get_config(self):
        return {"scale": self.scale, "power": self.power, "offset": self.offset}
