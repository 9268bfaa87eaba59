"""get_config/from_config, `.keras` save/load with only `import acclip_tf`, tf.train.Checkpoint."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import acclip_tf

MAKERS = {
    "acclip": lambda: acclip_tf.ACClip(learning_rate=0.01, alpha=1.5, weight_decay=1e-3,
                                       skip_nonfinite=True, track_clip_fraction=True,
                                       state_dtype="float32"),
    "acclip_normalize": lambda: acclip_tf.ACClip(learning_rate=1e-3, normalize=True,
                                                 track_clip_fraction=True),
    "cclip": lambda: acclip_tf.CClip(
        learning_rate=keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5),
        tau=acclip_tf.PolynomialThreshold(0.5, 0.3), momentum=0.9),
    "gclip": lambda: acclip_tf.GClip(tau=0.2, momentum=0.5, epsilon=1e-6, global_clipnorm=5.0),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_config_round_trip(name):
    opt = MAKERS[name]()
    config = opt.get_config()
    clone = type(opt).from_config(config)
    assert clone.get_config() == config
    # Through Keras' generic (de)serialisation, found by its registered name.
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(restored) is type(opt) and restored.get_config() == config


def _model_and_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (np.tanh(x) @ rng.normal(size=(6, 2))).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2)])
    return model, x, y


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_keras_file_restores_optimizer_and_slots(name, tmp_path):
    model, x, y = _model_and_data()
    model.compile(optimizer=MAKERS[name](), loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # One more step after loading equals one more step on the original.
    model.train_on_batch(x[:16], y[:16])
    loaded.train_on_batch(x[:16], y[:16])
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_tf_train_checkpoint_restores_the_same_state(name, tmp_path):
    model, x, y = _model_and_data()
    model.compile(optimizer=MAKERS[name](), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(tmp_path / "ckpt"))
    model.train_on_batch(x[:16], y[:16])
    expected = [w.numpy() for w in model.weights]

    other, _, _ = _model_and_data()
    other.compile(optimizer=MAKERS[name](), loss="mse")
    other.optimizer.build(other.trainable_variables)
    tf.train.Checkpoint(model=other, optimizer=other.optimizer).restore(path).assert_consumed()
    other.train_on_batch(x[:16], y[:16])
    for a, b in zip(expected, other.weights):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-7)


def test_slot_order_is_the_checkpoint_format():
    v1 = keras.Variable(np.zeros(2, "float32"), name="a")
    v2 = keras.Variable(np.zeros(3, "float32"), name="b")
    opt = acclip_tf.ACClip(initial_tau=2.0, alpha=2.0)
    opt.build([v1, v2])
    names = [v.name for v in opt.variables]
    assert names == ["iteration", "learning_rate", "a_momentum", "a_tau_alpha", "b_momentum",
                     "b_tau_alpha", "skipped_steps", "clip_fraction"]
    np.testing.assert_array_equal(opt.variables[3].numpy(), [4.0, 4.0])  # initial_tau**alpha
    assert opt.get_config()["normalize"] is False


def test_normalized_slot_order_adds_second_moment_last():
    v1 = keras.Variable(np.zeros(2, "float32"), name="a")
    v2 = keras.Variable(np.zeros(3, "float32"), name="b")
    opt = acclip_tf.ACClip(normalize=True)
    opt.build([v1, v2])
    names = [v.name for v in opt.variables]
    assert names == ["iteration", "learning_rate", "a_momentum", "a_tau_alpha",
                     "a_second_moment", "b_momentum", "b_tau_alpha", "b_second_moment",
                     "skipped_steps", "clip_fraction"]
    np.testing.assert_array_equal(opt.variables[4].numpy(), [0.0, 0.0])  # v starts at 0
    config = opt.get_config()
    assert config["normalize"] is True
    assert acclip_tf.ACClip.from_config(config).normalize is True


def test_keras_file_loads_in_a_fresh_process_after_importing_the_optimizers(tmp_path):
    import os
    import subprocess
    import sys

    model, x, y = _model_and_data()
    model.compile(optimizer=acclip_tf.ACClip(normalize=True), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    code = ("import acclip_tf.optimizers, keras, sys\n"
            "o = keras.models.load_model(sys.argv[1]).optimizer\n"
            "print(type(o).__name__, o.normalize, *[v.name for v in o.variables][2:5])\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    name, normalize, *slots = result.stdout.split("\n")[-2].split()
    assert (name, normalize) == ("ACClip", "True")
    assert [s.endswith(e) for s, e in zip(slots, ["_momentum", "_tau_alpha", "_second_moment"])
            ] == [True] * 3, slots
