"""Which parameters carry the noise: noise norms per parameter group (issue 11, measurement 3).

For minibatch gradients ``g_i`` and their mean ``gbar`` (the same two passes as
`acclip_tf.noise.gradient_noise_norms`), the noise norm of a group ``G`` of
variables is ``||(g_i - gbar)_G||``; the groups' squares add up to the total
squared noise norm. Variables are grouped by their Keras path (`group_of`), so
the rule is visible in the JSON (every variable path with its group).
"""

import numpy as np
import tensorflow as tf

#: (group, substrings of the lower-cased variable path), first match wins.
GROUP_RULES = (
    ("LayerNorm", ("layer_norm", "layernorm")),
    ("BatchNorm", ("batch_norm", "batchnorm", "batch_normalization")),
    ("token embedding", ("token_embedding",)),
    ("position/segment embedding", ("position_embedding", "segment_embedding")),
    ("attention", ("attention",)),
    ("feed-forward", ("feedforward", "feed_forward", "intermediate", "ffn")),
    ("convolution", ("conv",)),
)
OUTPUT_BIAS = "output bias"
HEAD = "output head (dense)"
OTHER = "other"


def group_of(path, shape=None):
    """The group of a variable from its path (and shape, for the output bias).

    The MLM/LM head's vocabulary-sized bias (a 1-D variable of a ``*_head`` layer
    that is not a LayerNorm's) is ``"output bias"``; the head's other dense
    weights are ``"output head (dense)"``.
    """
    lower = path.lower()
    for group, keys in GROUP_RULES:
        if group in ("feed-forward",) and "head" in lower:
            continue
        if any(key in lower for key in keys):
            return group
    if "head" in lower:
        if shape is not None and len(shape) == 1 and "bias" in lower.rsplit("/", 1)[-1]:
            return OUTPUT_BIAS if "dense" not in lower else HEAD
        return HEAD
    return OTHER


def variable_groups(variables):
    """[(path, group, size)] of a model's trainable variables."""
    return [(v.path, group_of(v.path, tuple(v.shape)), int(np.prod(v.shape)))
            for v in variables]


def group_noise_norms(model, loss_fn, dataset, training=False):
    """({group: noise norms}, {group: gradient norms}, variable table) at fixed weights.

    ``dataset`` yields ``(x, y)`` minibatches, the same ones when iterated twice (as
    for `acclip_tf.noise.gradient_noise_norms`; no strategy). ``loss_fn(y, model(x))``.
    The ``"total"`` entry is the norm over all variables.
    """
    variables = list(model.trainable_variables)
    table = variable_groups(variables)
    names = sorted({group for _, group, _ in table})
    members = [[i for i, (_, group, _) in enumerate(table) if group == name] for name in names]

    def gradients(batch):
        x, y = batch[0], batch[1]
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=training))
        grads = tape.gradient(loss, variables)
        return [tf.zeros(v.shape, tf.float64) if g is None else tf.cast(g, tf.float64)
                for g, v in zip(grads, variables)]

    total = [tf.Variable(tf.zeros(v.shape, tf.float64), trainable=False) for v in variables]

    @tf.function
    def accumulate(batch):
        for t, g in zip(total, gradients(batch)):
            t.assign_add(g)

    count = 0
    for batch in dataset:
        accumulate(batch)
        count += 1
    if count == 0:
        raise ValueError("`dataset` yielded no minibatches.")
    gbar = [tf.constant(t.numpy() / count) for t in total]

    @tf.function
    def squares(batch):
        grads = gradients(batch)
        noise = [tf.reduce_sum(tf.square(g - m)) for g, m in zip(grads, gbar)]
        raw = [tf.reduce_sum(tf.square(g)) for g in grads]
        return (tf.stack([tf.add_n([noise[i] for i in idx]) for idx in members]),
                tf.stack([tf.add_n([raw[i] for i in idx]) for idx in members]))

    noise_sq, grad_sq = [], []
    for batch in dataset:
        n, g = squares(batch)
        noise_sq.append(n.numpy())
        grad_sq.append(g.numpy())
    noise_sq, grad_sq = np.array(noise_sq), np.array(grad_sq)
    noise = {name: np.sqrt(noise_sq[:, j]) for j, name in enumerate(names)}
    grads = {name: np.sqrt(grad_sq[:, j]) for j, name in enumerate(names)}
    noise["total"] = np.sqrt(noise_sq.sum(axis=1))
    grads["total"] = np.sqrt(grad_sq.sum(axis=1))
    return noise, grads, table
