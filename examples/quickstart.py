"""ACClip in model.fit in 30 lines: sklearn's digits (bundled, no download).

    pip install acclip-tf scikit-learn && python examples/quickstart.py

Algorithm 1's step is on the gradient's scale (like SGD's), so ACClip needs an
SGD-like learning rate: 0.1-1 here, where the default 1e-4 barely moves
(docs/benchmarks.md); ACClip(normalize=True) takes Adam-like rates (1e-3-1e-2).
"""

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import acclip_tf
from acclip_tf.callbacks import OptimizerDiagnostics

x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25,
                                                    random_state=0)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(10)])
model.compile(optimizer=acclip_tf.ACClip(learning_rate=0.1, track_clip_fraction=True),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=32, epochs=5, verbose=0,
                    # Diagnostics first, so that loggers after it see them.
                    callbacks=[OptimizerDiagnostics(), keras.callbacks.CSVLogger("quickstart.csv")])
for epoch, (fraction, tau) in enumerate(zip(history.history["clip_fraction"],
                                            history.history["tau_median"])):
    print(f"epoch {epoch + 1}: clipped {100 * fraction:.1f} % of coordinates, median tau {tau:.4f}")
print(f"test accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")
