"""The subclass contract: slot_specs, one pure transform, typed step scalars.

A new optimizer written against the contract alone gets the whole step
(weight decay, skip_nonfinite, clip fraction, tf.distribute, checkpoints);
and the built-in ones do each piece of work once per step.
"""

from typing import NamedTuple

import numpy as np
import pytest
import keras
from keras import ops

import acclip_tf
from acclip_tf import clipping
from acclip_tf.optimizers.base import (
    ClippingOptimizer,
    SlotSpec,
    StepScalars,
    Transformed,
)


class SignMomentum(ClippingOptimizer):
    """A toy written against the contract only: sign of an EMA, scaled by a step scalar."""

    class Scalars(NamedTuple):
        learning_rate: object
        iteration: object
        scale: object

    def __init__(self, learning_rate=0.1, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_specs(self):
        return (SlotSpec("m", "zeros"),)

    def step_scalars(self, learning_rate, iteration):
        return self.Scalars(learning_rate, iteration, ops.convert_to_tensor(2.0))

    def transform(self, gradient, slots, scalars):
        m = clipping.ema(slots[0], gradient, 0.5)
        clipped = ops.sum(ops.cast(ops.greater(ops.abs(m), 1.0), "float32"))
        return Transformed((m,), ops.multiply(ops.sign(m), scalars.scale),
                           clipped if self.track_clip_fraction else None)


def test_a_new_optimizer_needs_only_the_contract():
    opt = SignMomentum(learning_rate=0.1, weight_decay=0.5, track_clip_fraction=True,
                       skip_nonfinite=True)
    v = keras.Variable(np.ones(4, "float32"), name="w")
    g = np.array([4.0, -1.0, 0.5, -3.0], "float32")
    opt.apply([g], [v])
    np.testing.assert_allclose(v.numpy(), 1 - 0.1 * 0.5 - 0.1 * 2 * np.sign(g), rtol=1e-6)
    assert [s.name for s in opt.variables] == ["iteration", "learning_rate", "w_m",
                                               "skipped_steps", "clip_fraction"]
    assert float(opt.clip_fraction.numpy()) == 0.5  # |m| = 2, 0.5, 0.25, 1.5
    before = v.numpy()
    opt.apply([np.array([np.nan, 0, 0, 0], "float32")], [v])
    np.testing.assert_array_equal(v.numpy(), before)
    assert int(opt.skipped_steps.numpy()) == 1


def test_step_scalars_are_typed_and_computed_once(monkeypatch):
    calls = []
    original = acclip_tf.CClip.step_scalars

    def spy(self, learning_rate, iteration):
        scalars = original(self, learning_rate, iteration)
        calls.append(scalars)
        return scalars

    monkeypatch.setattr(acclip_tf.CClip, "step_scalars", spy)
    opt = acclip_tf.CClip(tau=acclip_tf.PolynomialThreshold(0.5, 0.5))
    variables = [keras.Variable(np.zeros(s, "float32")) for s in [(3,), (2, 2), ()]]
    opt.apply([np.ones(v.shape, "float32") for v in variables], variables)
    assert len(calls) == 1
    assert calls[0]._fields == ("learning_rate", "iteration", "tau")
    np.testing.assert_allclose(float(calls[0].tau), 0.5)
    assert StepScalars._fields == ("learning_rate", "iteration")


@pytest.mark.parametrize("make,expected_emas", [
    # GClip: one momentum EMA per variable (the norm reuses it).
    (lambda: acclip_tf.GClip(momentum=0.9, track_clip_fraction=True), 1),
    (lambda: acclip_tf.CClip(tau=0.1, momentum=0.9, track_clip_fraction=True), 1),
    # ACClip: momentum and tau_alpha (+ second_moment) once each, clip count included.
    (lambda: acclip_tf.ACClip(initial_tau=0.01, track_clip_fraction=True), 2),
    (lambda: acclip_tf.ACClip(initial_tau=0.01, track_clip_fraction=True, normalize=True), 3),
])
def test_each_ema_is_computed_once_per_variable(make, expected_emas, monkeypatch):
    count = [0]
    original = clipping.ema

    def spy(*args):
        count[0] += 1
        return original(*args)

    monkeypatch.setattr(clipping, "ema", spy)
    opt = make()
    variables = [keras.Variable(np.zeros(s, "float32")) for s in [(3,), (2, 2)]]
    opt.build(variables)
    opt.apply([np.full(v.shape, 5.0, "float32") for v in variables], variables)
    assert count[0] == expected_emas * len(variables)
    assert float(opt.clip_fraction.numpy()) > 0
