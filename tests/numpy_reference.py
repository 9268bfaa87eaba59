"""Independent float64 numpy implementations of the paper's update rules.

Written straight from the equations (Algorithm 1, eq. (CClip), eq. (GClip)),
without `acclip_tf.clipping`, so that the optimizers are checked against a
second, separate derivation. Weight decay is Keras' decoupled form
``x <- x - lr * wd * x`` applied before the update.
"""

import numpy as np


class ACClipRef:
    """Algorithm 1; with ``normalize`` the step of rivercold/ACClip-Pytorch's
    optimizers/ACClip.py with ``mod=1``: ``v = b2 v + (1-b2) g^2`` first, then
    the clipping factor divided by ``sqrt(b2 * v) + eps``, times ``m``."""

    def __init__(self, shapes, lr, beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0,
                 initial_tau=1.0, weight_decay=0.0, normalize=False):
        self.lr, self.b1, self.b2, self.eps, self.alpha = lr, beta_1, beta_2, epsilon, alpha
        self.wd, self.normalize = weight_decay, normalize
        self.m = [np.zeros(s) for s in shapes]
        self.t = [np.full(s, initial_tau ** alpha) for s in shapes]
        self.v = [np.zeros(s) for s in shapes]

    def step(self, xs, gs):
        out = []
        for i, (x, g) in enumerate(zip(xs, gs)):
            x = x - self.lr * self.wd * x
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.t[i] = self.b2 * self.t[i] + (1 - self.b2) * np.abs(g) ** self.alpha
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            tau = self.t[i] ** (1.0 / self.alpha)
            factor = np.minimum(tau / (np.abs(self.m[i]) + self.eps), 1.0)
            if self.normalize:
                factor = factor / (np.sqrt(self.b2 * self.v[i]) + self.eps)
            update = factor * self.m[i]
            out.append(x - self.lr * update)
        return out


class CClipRef:
    def __init__(self, shapes, lr, tau=1.0, momentum=0.0, epsilon=0.0, weight_decay=0.0):
        self.lr, self.tau, self.mu, self.eps, self.wd = lr, tau, momentum, epsilon, weight_decay
        self.m = [np.zeros(s) for s in shapes]
        self.k = 0

    def _tau(self):
        return self.tau(self.k) if callable(self.tau) else self.tau

    def direction(self, i, g):
        if self.mu > 0:
            self.m[i] = self.mu * self.m[i] + (1 - self.mu) * g
            return self.m[i]
        return g

    def step(self, xs, gs):
        tau = self._tau()
        out = []
        for i, (x, g) in enumerate(zip(xs, gs)):
            x = x - self.lr * self.wd * x
            d = self.direction(i, g)
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(np.abs(d) + self.eps > 0,
                                  np.minimum(tau / (np.abs(d) + self.eps), 1.0), 1.0)
            out.append(x - self.lr * factor * d)
        self.k += 1
        return out


class GClipRef(CClipRef):
    def step(self, xs, gs):
        tau = self._tau()
        ds = [self.direction(i, g) for i, g in enumerate(gs)]
        norm = np.sqrt(sum(np.sum(d ** 2) for d in ds))
        factor = min(tau / (norm + self.eps), 1.0) if norm + self.eps > 0 else 1.0
        self.k += 1
        self.last_norm = norm
        return [x - self.lr * self.wd * x - self.lr * factor * d for x, d in zip(xs, ds)]
