"""Weight decay: Keras' decoupled formula, with exclusions matched against `variable.path`."""

import numpy as np
import keras

import acclip_tf


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name="dense")(inputs)
    h = keras.layers.LayerNormalization(name="attention_layer_norm")(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(h))


def _value(model, path):
    return next(v.numpy() for v in model.trainable_variables if v.path == path)


def _decayed(optimizer, model):
    """Paths of the weights that a step with zero gradients changes."""
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer.apply([np.zeros(v.shape, "float32") for v in model.trainable_variables],
                    model.trainable_variables)
    return {p for p, x in before.items() if not np.array_equal(x, _value(model, p))}


def test_exclusion_patterns_match_variable_paths():
    model = _model()
    opt = acclip_tf.ACClip(learning_rate=0.5, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=list(acclip_tf.BERT_WEIGHT_DECAY_EXCLUDE))
    assert _decayed(opt, model) == {"dense/kernel", "head/kernel"}
    # x <- x - lr * wd * x exactly (Keras' decoupled weight decay).
    np.testing.assert_allclose(_value(model, "head/kernel"),
                               _value(_model(), "head/kernel") * (1 - 0.5 * 0.1), rtol=1e-6)


def test_path_is_used_whichever_handle_the_backend_passes():
    # Keras' base class searches `variable.name`: "gamma" for a keras.Variable
    # (JAX backend) but the scoped "attention_layer_norm/gamma:0" for the
    # tf.Variable the TF backend passes. Ours searches the path in both cases.
    model = _model()
    opt = acclip_tf.CClip(weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["attention_layer_norm"])
    opt.build(model.trainable_variables)
    gamma = next(v for v in model.trainable_variables if v.name == "gamma")
    assert not opt._use_weight_decay(gamma)
    assert not opt._use_weight_decay(gamma.value)
    kernel = model.get_layer("dense").kernel
    assert opt._use_weight_decay(kernel) and opt._use_weight_decay(kernel.value)


def test_exclusion_by_variable_list_and_no_decay_by_default():
    model = _model()
    opt = acclip_tf.GClip(learning_rate=0.5, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_list=[model.get_layer("dense").kernel])
    assert "dense/kernel" not in _decayed(opt, model)
    model = _model()
    assert _decayed(acclip_tf.CClip(learning_rate=0.5), model) == set()
