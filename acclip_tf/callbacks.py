"""Keras callbacks that report what the clipping optimizers did.

`OptimizerDiagnostics` puts the optimizer's diagnostics into the ``logs`` of
`model.fit`, so that every callback after it in the list (`keras.callbacks.
TensorBoard`, `CSVLogger`, `History`, the progress bar) records them::

    model.compile(optimizer=acclip_tf.ACClip(learning_rate=0.1,
                                             track_clip_fraction=True), ...)
    model.fit(x, y, callbacks=[acclip_tf.callbacks.OptimizerDiagnostics(),
                               keras.callbacks.CSVLogger("log.csv")])
"""

import keras
import numpy as np

__all__ = ["OptimizerDiagnostics"]


def unwrap(optimizer):
    """The optimizer inside `keras.optimizers.LossScaleOptimizer` (mixed_float16)."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _scalar(variable):
    return float(keras.ops.convert_to_numpy(variable))


class OptimizerDiagnostics(keras.callbacks.Callback):
    """Adds the optimizer's diagnostics to the training logs of `model.fit`.

    Put it **before** `keras.callbacks.TensorBoard`, `CSVLogger` and any other
    callback that should record these values: Keras hands the same ``logs``
    dict to the callbacks in list order, so a callback listed earlier does not
    see the keys added here. (`History` and the progress bar, which Keras adds
    itself, do see them.)

    Keys (each with `prefix` in front):

    * ``clip_fraction``: the fraction of coordinates clipped in the step
      (`optimizer.clip_fraction`; GClip: 1.0 if the step was clipped, 0.0
      if not). At each batch end it is the last step's value (with
      ``steps_per_execution > 1``, the last step of the execution); at each
      epoch end, the mean over the batch ends of that epoch.
    * ``global_norm`` (GClip only): the pre-clip global norm of the direction,
      per batch and as the epoch's mean, like ``clip_fraction``.
    * ``skipped_steps`` (only when the optimizer was created with
      ``skip_nonfinite=True``): how many steps were skipped for a non-finite
      gradient since the optimizer was built (a running count).
    * ``tau_mean``, ``tau_median`` (ACClip only, at each epoch end; also at
      each batch end with ``batch_thresholds=True``): the mean and median over
      all coordinates of the model of ACClip's threshold
      ``tau = tau_alpha ** (1 / alpha)``. These read every slot back to the
      host, which is why they are per epoch by default.

    ``clip_fraction`` exists only when the optimizer counts it: created with
    ``track_clip_fraction=False`` (the default) its value would be a constant
    0. So `on_train_begin` raises ``ValueError`` in that case, saying how to
    fix it, instead of logging a silent 0; pass ``clip_fraction=False`` to
    log the other diagnostics without it. An optimizer that is not a
    `acclip_tf` clipping optimizer also raises ``ValueError``.

    Works when Keras wraps the optimizer in `LossScaleOptimizer`
    (``mixed_float16``): the inner optimizer is read.

    Args:
        prefix: Put in front of every key, e.g. ``"optimizer/"``. Defaults to
            ``""``.
        clip_fraction: Log ``clip_fraction`` (requires
            ``track_clip_fraction=True``). Defaults to True.
        batch_thresholds: Also log ACClip's ``tau_mean`` / ``tau_median`` at
            each batch end. Defaults to False.
    """

    def __init__(self, prefix="", clip_fraction=True, batch_thresholds=False):
        super().__init__()
        self.prefix = prefix
        self.clip_fraction = bool(clip_fraction)
        self.batch_thresholds = bool(batch_thresholds)
        self._epoch_values = {}

    # ------------------------------------------------------------ checks
    def _optimizer(self):
        from acclip_tf.optimizers import ACClip, ClippingOptimizer, GClip

        optimizer = unwrap(self.model.optimizer)
        if not isinstance(optimizer, ClippingOptimizer):
            raise ValueError(
                "OptimizerDiagnostics reads the diagnostics of acclip_tf's optimizers "
                "(ACClip, CClip, GClip); the model's optimizer is "
                f"{type(optimizer).__name__}."
            )
        return optimizer, isinstance(optimizer, ACClip), isinstance(optimizer, GClip)

    def on_train_begin(self, logs=None):
        optimizer, _, _ = self._optimizer()
        if self.clip_fraction and not optimizer.track_clip_fraction:
            raise ValueError(
                f"{type(optimizer).__name__} was created with track_clip_fraction=False, so "
                "it does not count clipped coordinates and clip_fraction would be a "
                "constant 0. Create it with track_clip_fraction=True, or pass "
                "OptimizerDiagnostics(clip_fraction=False) to log the other diagnostics."
            )
        self._epoch_values = {}

    # ------------------------------------------------------------ values
    def _scalars(self, optimizer, is_gclip):
        values = {}
        if self.clip_fraction:
            values["clip_fraction"] = _scalar(optimizer.clip_fraction)
        if is_gclip:
            values["global_norm"] = _scalar(optimizer.global_norm)
        return values

    def thresholds(self):
        """ACClip's ``tau`` of every coordinate, one flat float64 numpy array."""
        optimizer, is_acclip, _ = self._optimizer()
        if not is_acclip:
            raise ValueError("only ACClip has per-coordinate thresholds")
        index = [s.name for s in optimizer.slot_specs()].index("tau_alpha")
        parts = []
        for variable in optimizer._trainable_variables:
            slots = optimizer._get_slots(variable)
            if slots is None:  # a variable Keras overwrites with its gradient
                continue
            parts.append(
                np.ravel(keras.ops.convert_to_numpy(slots[index])).astype(np.float64)
            )
        if not parts:
            return np.zeros((0,))
        return np.concatenate(parts) ** (1.0 / optimizer.alpha)

    def _threshold_summary(self):
        tau = self.thresholds()
        if tau.size == 0:
            return {}
        return {"tau_mean": float(np.mean(tau)), "tau_median": float(np.median(tau))}

    def _put(self, logs, values):
        if logs is None:
            return
        for key, value in values.items():
            logs[self.prefix + key] = value

    # ------------------------------------------------------------ hooks
    def on_train_batch_end(self, batch, logs=None):
        optimizer, is_acclip, is_gclip = self._optimizer()
        values = self._scalars(optimizer, is_gclip)
        for key, value in values.items():
            self._epoch_values.setdefault(key, []).append(value)
        if optimizer.skip_nonfinite:
            values["skipped_steps"] = int(_scalar(optimizer.skipped_steps))
        if is_acclip and self.batch_thresholds:
            values.update(self._threshold_summary())
        self._put(logs, values)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_values = {}

    def on_epoch_end(self, epoch, logs=None):
        optimizer, is_acclip, is_gclip = self._optimizer()
        if not optimizer.built:  # no step yet: nothing to report
            return
        values = {}
        for key, seen in self._epoch_values.items():
            values[key] = float(np.mean(seen))
        if not self._epoch_values:  # no training batch: the last values
            values.update(self._scalars(optimizer, is_gclip))
        if optimizer.skip_nonfinite:
            values["skipped_steps"] = int(_scalar(optimizer.skipped_steps))
        if is_acclip:
            values.update(self._threshold_summary())
        self._put(logs, values)
