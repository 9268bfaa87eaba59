"""What GClip, CClip and ACClip share: the one step, written once.

The subclass contract (as small as Keras' own `build` / `update_step` /
`get_config`):

* `slot_specs()`: the per-variable state, a tuple of `SlotSpec(name,
  initializer)`; the order is the checkpoint format (slots are saved by
  position).
* `transform(gradient, slots, scalars) -> Transformed(slots, direction,
  clipped)`: ONE pure function (math from `acclip_tf.clipping`, no variable
  reads or writes) from the aggregated gradient of one variable, the current
  values of its slots and the step's `scalars` to the new slot values, the
  direction ``d`` (the update is ``x -= learning_rate * d``) and, when
  `track_clip_fraction` is on, the number of clipped coordinates (else None),
  all from the same pass.
* optionally `step_scalars(learning_rate, iteration)`: the scalars that all
  variables share, computed once per step, as a typed `NamedTuple`
  (`StepScalars` here; `ClippedSGD` adds the threshold ``tau``).
* optionally `clip_globally(directions, scalars) -> GlobalClip`: a factor over
  all variables at once, applied to the directions (GClip's global norm).
* `get_config()`.

Everything else lives here, once, in `_step`, which both the plain path and
the `tf.distribute` path run (in replica context, on the aggregated gradient);
they differ only in how the resulting writes reach the variables
(`_tf_distribute.write` uses a merge call):

* Under `tf.distribute`, Keras applies `clipnorm`/`clipvalue`/`global_clipnorm`
  and weight decay before its all-reduce; here they happen after it, so two
  replicas give the same update as one device on the same global batch.
* Decoupled weight decay ``x -= lr * wd * x`` (Keras' definition) is folded
  into the same assignment as the update: one pass over the weights, skipped
  together with the update when `skip_nonfinite` skips a step. Exclusion
  patterns given to `exclude_from_weight_decay(var_names=...)` are regular
  expressions searched in `variable.path` (which ends in `variable.name`), so
  ``["layer_norm", "bias"]`` excludes a KerasHub BERT's LayerNorm
  gamma/beta and all biases.
* `skip_nonfinite`: if any aggregated gradient entry is inf/NaN (the all-reduce
  propagates a non-finite value from any replica to all of them), the whole
  update is skipped (weights, slots and weight decay untouched) and
  `skipped_steps` counts it. `iterations` still advances, as it counts calls.
* Diagnostics: `clip_fraction` (fraction of clipped coordinates; for GClip 1.0
  when the step was clipped) when `track_clip_fraction=True`. The diagnostic
  variables always exist, so the checkpoint layout does not depend on flags.
* `state_dtype`: slots in e.g. float32 for bfloat16 variables (bfloat16 rounds
  beta_2=0.99 to 0.988 and loses small EMA increments). The math then runs in
  `state_dtype` and the weight is rounded once per step.
"""

import contextlib
import math
import re
from typing import Any, NamedTuple, Optional

import keras
from keras import ops

from acclip_tf import clipping


class SlotSpec(NamedTuple):
    """One per-variable state tensor: its name and initializer."""

    name: str
    initializer: Any


class StepScalars(NamedTuple):
    """What all variables of one step share (computed once per step)."""

    learning_rate: Any  # this step's learning rate, a scalar tensor
    iteration: Any  # the 0-based index of this step (`iterations` before it advances)


class Transformed(NamedTuple):
    """What `transform` returns for one variable."""

    slots: tuple  # the new slot values, in `slot_specs()` order
    direction: Any  # d: the update is x -= learning_rate * d
    clipped: Optional[Any] = None  # number of clipped coordinates, or None


class GlobalClip(NamedTuple):
    """What `clip_globally` returns: directions scaled over all variables."""

    directions: list
    clip_fraction: Optional[Any] = None  # replaces the per-coordinate count
    records: tuple = ()  # ((diagnostic variable, value), ...) to assign


class Write(NamedTuple):
    """One variable write of a step: ``target.<op>(value)``."""

    target: Any
    value: Any
    op: str  # "assign" | "assign_add" | "assign_sub"


def _tf():
    from acclip_tf.optimizers import _tf_distribute

    return _tf_distribute


def _is_tensorflow():
    return keras.backend.backend() == "tensorflow"


def fill_keyword_docs(cls):
    """Put Keras' shared keyword-argument docs into `cls.__doc__` (None under -OO)."""
    if cls.__doc__:
        cls.__doc__ = cls.__doc__.replace(
            "{{base_optimizer_keyword_args}}",
            keras.src.optimizers.optimizer.base_optimizer_keyword_args,
        )
    return cls


def check_range(name, value, low=None, high=None, low_open=False, high_open=False):
    """Raise ValueError naming `name` unless `value` is a number in the range.

    Bounds are inclusive unless `low_open` / `high_open`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a number. Received: {name}={value!r}")
    bad = math.isnan(value)
    if low is not None:
        bad = bad or (value <= low if low_open else value < low)
    if high is not None:
        bad = bad or (value >= high if high_open else value > high)
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        low_s = "-inf" if low is None else low
        high_s = "inf" if high is None else high
        raise ValueError(
            f"`{name}` must lie in {lo}{low_s}, {high_s}{hi}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_threshold(name, value):
    """A threshold is a positive float or a schedule (a callable of the step)."""
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if callable(value) and not isinstance(value, (int, float)):
        raise ValueError(
            f"`{name}` must be a positive float or a "
            "keras.optimizers.schedules.LearningRateSchedule (e.g. "
            f"acclip_tf.schedules.PolynomialThreshold). Received: {name}={value!r}"
        )
    return check_range(name, value, low=0.0, low_open=True)


class ClippingOptimizer(keras.optimizers.Optimizer):
    """Base class of `GClip`, `CClip` and `ACClip` (not used directly)."""

    def __init__(
        self,
        learning_rate,
        skip_nonfinite=False,
        track_clip_fraction=False,
        state_dtype=None,
        **kwargs,
    ):
        if isinstance(learning_rate, int) and not isinstance(learning_rate, bool):
            learning_rate = float(learning_rate)
        if isinstance(learning_rate, float):
            check_range("learning_rate", learning_rate, low=0.0)
        weight_decay = kwargs.get("weight_decay")
        if weight_decay is not None:
            check_range("weight_decay", weight_decay, low=0.0)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.track_clip_fraction = bool(track_clip_fraction)
        if state_dtype is not None:
            state_dtype = keras.backend.standardize_dtype(state_dtype)
            if not keras.backend.is_float_dtype(state_dtype):
                raise ValueError(
                    "`state_dtype` must be a floating dtype such as 'float32'. "
                    f"Received: state_dtype={state_dtype!r}"
                )
        self.state_dtype = state_dtype

    # ------------------------------------------------------ the contract
    def slot_specs(self):
        """``(SlotSpec(name, initializer), ...)`` per variable, in checkpoint order."""
        return ()

    def step_scalars(self, learning_rate, iteration):
        """The scalars all variables share in this step (a NamedTuple)."""
        return StepScalars(learning_rate, iteration)

    def transform(self, gradient, slots, scalars):
        """Pure: ``Transformed(new_slots, direction, clipped_count_or_None)``."""
        raise NotImplementedError

    def clip_globally(self, directions, scalars):
        """A factor over all variables' directions (GClip); none by default."""
        return GlobalClip(directions)

    # ------------------------------------------------------------ state
    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        specs = self.slot_specs()
        self._slots = []
        for variable in var_list:
            if self._overwrite_variable_with_gradient(variable):
                self._slots.append(None)
                continue
            self._slots.append(
                tuple(self._add_slot(variable, s.name, s.initializer) for s in specs)
            )
        self.skipped_steps = self.add_variable(
            (), dtype="int32", name="skipped_steps", aggregation="only_first_replica"
        )
        self.clip_fraction = self.add_variable(
            (), dtype="float32", name="clip_fraction", aggregation="only_first_replica"
        )

    def _slot_dtype(self, variable):
        return self.state_dtype or keras.backend.standardize_dtype(variable.dtype)

    def _add_slot(self, variable, name, initializer):
        dtype = self._slot_dtype(variable)
        if dtype == keras.backend.standardize_dtype(variable.dtype):
            return self.add_variable_from_reference(
                variable, name=name, initializer=initializer
            )
        scope = (
            _tf().colocation_scope(self, variable)
            if _is_tensorflow()
            else contextlib.nullcontext()
        )
        prefix = getattr(variable, "path", variable.name).replace("/", "_")
        with scope:
            return self.add_variable(
                shape=variable.shape,
                initializer=initializer,
                dtype=dtype,
                name=f"{prefix}_{name}",
            )

    def _get_slots(self, variable):
        return self._slots[self._get_variable_index(variable)]

    # ------------------------------------------------------------ the step
    def _clip_gradients(self, grads):
        # Keras calls this on each replica's gradient before the all-reduce;
        # we clip the aggregated gradient instead (`_backend_update_step`).
        return grads

    def _apply_weight_decay(self, variables):
        # Folded into `_step` (same formula, one pass, skippable).
        return

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if _is_tensorflow():
            tf_distribute = _tf()
            grads = tf_distribute.all_reduce(self, grads, trainable_variables)
            grads = super()._clip_gradients(grads)
            writes = self._step(grads, trainable_variables, learning_rate)
            tf_distribute.write(self, writes)
        else:
            grads = super()._clip_gradients(list(grads))
            self._write(self._step(grads, trainable_variables, learning_rate))

    def update_step(self, gradient, variable, learning_rate):
        """Update one variable alone (Keras' per-variable contract).

        `apply()` does not go through here: it runs `_step` once over all
        variables (non-finite check, diagnostics, GClip's norm). Called
        directly, the step covers this variable only.
        """
        if _is_tensorflow():
            gradient = _tf().densify(gradient)
        self._write(self._step([gradient], [variable], learning_rate))

    def _write(self, writes):
        for target, value, op in writes:
            getattr(self, op)(target, ops.cast(value, target.dtype))

    def _step(self, grads, variables, learning_rate):
        """The whole step as a list of `Write`s (reads variables, writes none).

        Runs in replica context on the aggregated gradients: every replica
        computes the same values.
        """
        scalars = self.step_scalars(learning_rate, self._iterations)
        finite = clipping.all_finite(grads) if self.skip_nonfinite else None

        dtypes = [self._slot_dtype(v) for v in variables]
        slots = [self._get_slots(v) for v in variables]
        results = [
            self.transform(ops.cast(g, dtype), tuple(s), scalars)
            for g, s, dtype in zip(grads, slots, dtypes)
        ]
        clipped = self.clip_globally([r.direction for r in results], scalars)

        writes = []
        for variable, old_slots, result, direction, dtype in zip(
            variables, slots, results, clipped.directions, dtypes
        ):
            lr = ops.cast(learning_rate, dtype)
            step = ops.multiply(direction, lr)
            variable_dtype = keras.backend.standardize_dtype(variable.dtype)
            current = ops.cast(variable, dtype) if variable_dtype != dtype else variable
            if self._use_weight_decay(variable):
                wd = ops.cast(self.weight_decay, dtype)
                step = ops.add(step, ops.multiply(current, ops.multiply(lr, wd)))
            new_slots = result.slots
            if finite is not None:
                step = ops.where(finite, step, ops.zeros_like(step))
                new_slots = [
                    ops.where(finite, new, old) for new, old in zip(new_slots, old_slots)
                ]
            writes.extend(Write(s, v, "assign") for s, v in zip(old_slots, new_slots))
            if variable_dtype == dtype:
                writes.append(Write(variable, step, "assign_sub"))
            else:
                new = ops.cast(ops.subtract(current, step), variable_dtype)
                writes.append(Write(variable, new, "assign"))

        if finite is not None:
            skipped = ops.subtract(1, ops.cast(finite, "int32"))
            writes.append(Write(self.skipped_steps, skipped, "assign_add"))
        if self.track_clip_fraction:
            fraction = clipped.clip_fraction
            if fraction is None:
                fraction = self._fraction([r.clipped for r in results], variables)
            writes.append(Write(self.clip_fraction, fraction, "assign"))
        writes.extend(Write(v, value, "assign") for v, value in clipped.records)
        return writes

    @staticmethod
    def _fraction(counts, variables):
        total = ops.convert_to_tensor(0.0, "float32")
        for count in counts:
            total = ops.add(total, ops.cast(count, "float32"))
        # The variables' shapes, not the gradients': some layers' gradients
        # have an unknown static dimension inside tf.function.
        size = sum(int(math.prod(v.shape)) for v in variables)
        return ops.divide(total, float(max(size, 1)))

    # ------------------------------------------------------- weight decay
    def _use_weight_decay(self, variable):
        if not self.weight_decay:
            return False
        key = self._var_key(variable)
        excluded_ids = getattr(self, "_exclude_from_weight_decay", set())
        if key in excluded_ids:
            return False
        pattern = getattr(self, "_exclude_from_weight_decay_pattern", None)
        if pattern is None:
            return True
        index = self._trainable_variables_indices.get(key)
        reference = (
            self._trainable_variables[index] if index is not None else variable
        )
        path = getattr(reference, "path", None) or reference.name
        return re.search(pattern, path) is None

    # ------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "skip_nonfinite": self.skip_nonfinite,
                "track_clip_fraction": self.track_clip_fraction,
                "state_dtype": self.state_dtype,
            }
        )
        return config
