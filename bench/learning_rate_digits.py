"""Which learning rate trains: ACClip vs Adam on sklearn's digits (no download).

A small dense classifier (64 -> 64 relu -> 10), batch 32, 5 epochs, held-out
accuracy (25 % of the 1797 images, fixed split), 3 seeds per setting:

    python bench/learning_rate_digits.py [--epochs=5] [--seeds=3]

Results: docs/benchmarks.md, "Choosing ACClip's learning rate".
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import acclip_tf  # noqa: E402

SETTINGS = [
    ("Adam", "1e-3", lambda: keras.optimizers.Adam(1e-3)),
    ("SGD", "1e-1", lambda: keras.optimizers.SGD(1e-1)),
    ("ACClip", "1e-4 (default)", lambda: acclip_tf.ACClip()),
    ("ACClip", "1e-3", lambda: acclip_tf.ACClip(1e-3)),
    ("ACClip", "1e-2", lambda: acclip_tf.ACClip(1e-2)),
    ("ACClip", "1e-1", lambda: acclip_tf.ACClip(1e-1)),
    ("ACClip", "3e-1", lambda: acclip_tf.ACClip(3e-1)),
    ("ACClip", "1", lambda: acclip_tf.ACClip(1.0)),
    ("ACClip", "3", lambda: acclip_tf.ACClip(3.0)),
    ("ACClip(normalize=True)", "1e-4", lambda: acclip_tf.ACClip(1e-4, normalize=True)),
    ("ACClip(normalize=True)", "1e-3", lambda: acclip_tf.ACClip(1e-3, normalize=True)),
    ("ACClip(normalize=True)", "1e-2", lambda: acclip_tf.ACClip(1e-2, normalize=True)),
    ("ACClip(normalize=True)", "1e-1", lambda: acclip_tf.ACClip(1e-1, normalize=True)),
]


def accuracy(make_optimizer, seed, epochs, data):
    x_train, x_test, y_train, y_test = data
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=make_optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    return model.evaluate(x_test, y_test, verbose=0)[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    data = train_test_split((x / 16.0).astype("float32"), y, test_size=0.25, random_state=0)
    print(f"| optimizer | learning rate | test accuracy after {args.epochs} epochs "
          f"(mean, min-max over {args.seeds} seeds) | seconds per run |")
    print("|---|---|---|---|")
    for name, lr, make in SETTINGS:
        start = time.time()
        accs = [accuracy(make, seed, args.epochs, data) for seed in range(args.seeds)]
        seconds = (time.time() - start) / args.seeds
        print(f"| {name} | {lr} | {100 * np.mean(accs):.1f} % "
              f"({100 * min(accs):.1f}-{100 * max(accs):.1f}) | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
