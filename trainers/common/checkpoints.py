"""Resume-or-initialize with `tf.train.CheckpointManager`.

A checkpoint holds the model (every weight under ``weights/<its path>``), the optimizer (its `iterations` is the step),
the number of global batches the input pipeline has consumed (the data
position: the pipeline is deterministic and skips that many on resume) and
the dropout layers' seed-generator states, so a resumed run continues the
exact random stream of an uninterrupted one.

Only the chief writes `model_dir`; other workers save into a temporary
directory (the save is collective, so all must call it) that is removed at
the end, and every worker restores from the chief's `model_dir`.
"""

import tempfile

import tensorflow as tf

from trainers.common import files
from trainers.common.errors import TrainerError, first_line


def named_weights(model):
    """{variable path: variable} of all model weights, as checkpoint keys.

    Keras 3 models do not expose their layers to `tf.train.Checkpoint`, whose
    saved keys would then depend on who else references a variable (e.g.
    ``optimizer/_trainable_variables/7``); naming them by path keeps the
    checkpoint readable and independent of the optimizer.
    """
    named = {}
    for i, w in enumerate(model.weights):
        key = getattr(w, "path", w.name).replace("/", ".")
        named[key if key not in named else f"{key}.{i}"] = w
    return named


def restore_weights(model, path):
    """Load only the model's weights from the checkpoint at `path` (a weights-only init).

    Raises TrainerError when a weight of `model` is missing from the checkpoint
    or has another shape (e.g. a model built with other size flags).
    """
    status = tf.train.Checkpoint(weights=named_weights(model)).read(path)
    try:
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        first = first_line(e)
        raise TrainerError(f"cannot restore {path} into this model: {first}")
    status.expect_partial()


def seed_generator_states(model):
    """The state variables of every `keras.random.SeedGenerator` in `model` (dropout)."""
    states = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", []) or []:
            states.append(generator.state)
    return states


class Checkpoints:
    def __init__(self, model_dir, model, optimizer, is_chief=True, max_to_keep=3):
        self.model_dir = model_dir
        self.is_chief = is_chief
        self.data_position = tf.Variable(0, dtype=tf.int64, trainable=False,
                                         name="data_position")
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            weights=named_weights(model),
            optimizer=optimizer,
            data_position=self.data_position,
            seed_states={str(i): v for i, v in enumerate(seed_generator_states(model))},
        )
        if is_chief:
            self._write_dir = files.join(model_dir, "checkpoints")
        else:
            self._write_dir = tempfile.mkdtemp(prefix="acclip_tf_worker_ckpt_")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._write_dir, max_to_keep=max_to_keep)

    def latest(self):
        return tf.train.latest_checkpoint(files.join(self.model_dir, "checkpoints"))

    def restore_latest(self):
        """Restore the latest checkpoint of `model_dir`; returns its path, or None (and
        changes nothing) when there is none."""
        path = self.latest()
        if path is None:
            return None
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            first = first_line(e)
            raise TrainerError(
                f"cannot resume from {path} (was it written with other model flags?): {first}")
        return path

    def save(self, step):
        return self.manager.save(checkpoint_number=step)

    def close(self):
        if not self.is_chief:
            files.remove_tree(self._write_dir)
