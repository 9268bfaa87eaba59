"""Remark 1 in miniature: under alpha-stable noise SGD fails, clipping does not.

f(x) = ||x||^2 / 2 with symmetric alpha-stable gradient noise (alpha = 1.3,
infinite variance). Runs are independent coordinates of one variable, which is
exact for the coordinate-wise CClip and ACClip and for SGD.

ACClip runs with beta_2 = 0.999 here. With the paper's BERT value 0.99 a
single noise spike S raises the threshold to about 0.01 S, the clipped
momentum then carries the iterate far away, and the clipped restoring
gradient brings it back only linearly: over 8 seeds of this very setting
ACClip(beta_2=0.99) beat SGD by as little as 2.8x (once it lost, at lr=0.1).
The slower estimate (0.999) keeps the spike's share to about 0.001 S
(measured: 23x to 400x better than SGD over 8 seeds). See docs/evidence.md.
"""

import numpy as np
import pytest
import keras
from scipy.stats import levy_stable

import acclip_tf

RUNS, DIM, STEPS, LR = 1000, 10, 300, 0.03


def _final_loss(optimizer, noise):
    x = keras.Variable(np.full((RUNS, DIM), 3.0, "float32"))
    for k in range(STEPS):
        optimizer.apply([x.numpy() + noise[k]], [x])
    return float(0.5 * np.mean(np.sum(x.numpy().astype("float64") ** 2, axis=1)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sgd_loss_is_10x_that_of_cclip_and_acclip(seed):
    rng = np.random.default_rng(seed)
    noise = levy_stable.rvs(1.3, 0.0, size=(STEPS, RUNS, DIM), random_state=rng)
    noise = noise.astype("float32")
    sgd = _final_loss(keras.optimizers.SGD(learning_rate=LR), noise)
    cclip = _final_loss(acclip_tf.CClip(learning_rate=LR, tau=1.0), noise)
    acclip = _final_loss(acclip_tf.ACClip(learning_rate=LR, beta_2=0.999), noise)
    assert sgd >= 10 * cclip, (sgd, cclip)
    assert sgd >= 10 * acclip, (sgd, acclip)
    # Clipping still optimises: from f(x_0) = 45 to the noise floor.
    assert cclip < 1.0 and acclip < 5.0
