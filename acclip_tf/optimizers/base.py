"""What GClip, CClip and ACClip share: one `apply` path built for tf.distribute.

A subclass says only what is specific to its algorithm:

* `_slot_specs()`: the per-variable state, as ``[(name, initializer), ...]``;
  the order is the checkpoint format (slots are saved by position).
* `_compute(gradient, slots, context, want_mask)`: pure math (see
  `acclip_tf.clipping`) from the aggregated gradient and the current slots to
  ``(new_slot_values, direction, clipped_mask_or_None)``.
* optionally `_global_context(grads, variables)`: scalars over all variables
  (GClip's norm, a threshold schedule's current value).

Everything else lives here, once:

* The step runs on the *aggregated* gradient. Under `tf.distribute`, Keras
  applies `clipnorm`/`clipvalue`/`global_clipnorm` and weight decay before its
  all-reduce; here they happen after it (see `_tf_distribute`), so two replicas
  give the same update as one device on the same global batch.
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

import keras
from keras import ops

from acclip_tf import clipping


def _tf():
    from acclip_tf.optimizers import _tf_distribute

    return _tf_distribute


def _is_tensorflow():
    return keras.backend.backend() == "tensorflow"


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

    # ------------------------------------------------------------------ state
    def _slot_specs(self):
        """``[(name, initializer), ...]`` per variable, in checkpoint order."""
        return []

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        specs = self._slot_specs()
        self._slots = []
        for variable in var_list:
            if self._overwrite_variable_with_gradient(variable):
                self._slots.append(None)
                continue
            self._slots.append(
                [self._add_slot(variable, name, init) for name, init in specs]
            )
        self.skipped_steps = self.add_variable(
            (), dtype="int32", name="skipped_steps", aggregation="only_first_replica"
        )
        self.clip_fraction = self.add_variable(
            (), dtype="float32", name="clip_fraction", aggregation="only_first_replica"
        )
        self._build_diagnostics()

    def _build_diagnostics(self):
        """Subclasses add further scalar diagnostics here (after the slots)."""

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
        # we clip the aggregated gradient instead (`_clip_aggregated_gradients`).
        return grads

    def _clip_aggregated_gradients(self, grads):
        return super()._clip_gradients(grads)

    def _apply_weight_decay(self, variables):
        # Folded into `_update_variable` (same formula, one pass, skippable).
        return

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if _is_tensorflow():
            return _tf().backend_update_step(
                self, grads, trainable_variables, learning_rate
            )
        grads = self._clip_aggregated_gradients(list(grads))
        context = self._prepare_step(grads, trainable_variables)
        for gradient, variable in zip(grads, trainable_variables):
            self._update_variable(variable, gradient, learning_rate, context)
        for variable, value, mode in self._diagnostic_updates(context):
            value = ops.cast(value, variable.dtype)
            if mode == "add":
                variable.assign_add(value)
            else:
                variable.assign(value)

    def _global_context(self, grads, variables):
        """Scalars over all variables, computed once per step in replica context."""
        return {}

    def _prepare_step(self, grads, variables):
        context = {}
        if self.skip_nonfinite:
            context["finite"] = clipping.all_finite(grads)
            context["skipped"] = ops.subtract(1, ops.cast(context["finite"], "int32"))
        context.update(self._global_context(grads, variables))
        if self.track_clip_fraction:
            context["clip_fraction"] = self._clip_fraction(grads, variables, context)
        return context

    def _clip_fraction(self, grads, variables, context):
        """Fraction of clipped coordinates over all variables (element-wise rules)."""
        clipped = ops.convert_to_tensor(0.0, "float32")
        total = 0
        for gradient, variable in zip(grads, variables):
            slots = self._get_slots(variable)
            gradient = ops.cast(gradient, self._slot_dtype(variable))
            _, _, mask = self._compute(gradient, slots, context, want_mask=True)
            clipped = ops.add(clipped, ops.sum(ops.cast(mask, "float32")))
            # The variable's shape, not the gradient's: some layers' gradients
            # have an unknown static dimension inside tf.function.
            total += int(math.prod(variable.shape))
        return ops.divide(clipped, float(max(total, 1)))

    def _diagnostic_updates(self, context):
        """``(variable, value, "add" | "assign")`` written after each step.

        Values are entries of `context` as they are: under tf.distribute this
        runs in cross-replica context, where no further math may be done.
        """
        updates = []
        if "skipped" in context:
            updates.append((self.skipped_steps, context["skipped"], "add"))
        if "clip_fraction" in context:
            updates.append((self.clip_fraction, context["clip_fraction"], "assign"))
        return updates

    def _compute(self, gradient, slots, context, want_mask=False):
        raise NotImplementedError

    def update_step(self, gradient, variable, learning_rate):
        """Update one variable alone (Keras' per-variable contract).

        `apply()` does not go through here: it prepares the global context of
        the step (non-finite check, diagnostics, GClip's norm) once for all
        variables. Called directly, the context covers this variable only.
        """
        if _is_tensorflow():
            gradient = _tf().densify(gradient)
        context = self._prepare_step([gradient], [variable])
        self._update_variable(variable, gradient, learning_rate, context)

    def _update_variable(self, variable, gradient, learning_rate, context):
        slots = self._get_slots(variable)
        dtype = self._slot_dtype(variable)
        gradient = ops.cast(gradient, dtype)
        new_slots, direction, _ = self._compute(gradient, slots, context)
        lr = ops.cast(learning_rate, dtype)
        step = ops.multiply(direction, lr)
        variable_dtype = keras.backend.standardize_dtype(variable.dtype)
        current = ops.cast(variable, dtype) if variable_dtype != dtype else variable
        if self._use_weight_decay(variable):
            wd = ops.cast(self.weight_decay, dtype)
            step = ops.add(step, ops.multiply(current, ops.multiply(lr, wd)))
        if "finite" in context:
            finite = context["finite"]
            step = ops.where(finite, step, ops.zeros_like(step))
            new_slots = [
                ops.where(finite, new, slot) for new, slot in zip(new_slots, slots)
            ]
        for slot, value in zip(slots, new_slots):
            self.assign(slot, value)
        if variable_dtype == dtype:
            self.assign_sub(variable, step)
        else:
            self.assign(variable, ops.cast(ops.subtract(current, step), variable_dtype))

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

    def _serialize_threshold(self, value):
        if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
            return keras.saving.serialize_keras_object(value)
        return value

    # Constructor arguments that may hold a serialized schedule.
    _schedule_arguments = ()

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)  # the caller's dict stays as it was
        for key in cls._schedule_arguments:
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
                )
        return super().from_config(config, custom_objects=custom_objects)

    def _current_threshold(self, value):
        """The threshold at this step, as a float32 scalar tensor."""
        if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
            value = value(self._iterations)
        return ops.cast(value, "float32")
