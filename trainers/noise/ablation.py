"""Figure 4: attention vs no attention, text vs Gaussian input (``--model=attention_ablation``).

The encoders here are not the trainer's model (the cells differ by exactly the
self-attention sublayers, see `build_ablation_model`); their text, vocabulary,
masking and seed come from `BertPretrainTask` built from this program's flags,
and their loss is the masked-LM cross-entropy of the trainer's task
(`trainers.noise.objective.masked_lm_loss`). See trainers.gradient_noise for the
Gaussian input and its targets.
"""

import keras
import numpy as np
import tensorflow as tf

from trainers.noise import objective
from trainers.noise import tasks

GAUSSIAN_TARGETS = ("teacher", "text")
EMBEDDING_STDDEV = 0.02  # BERT's initialiser; the Gaussian input's RMS too.
TEXT_INPUTS = ("token_ids", "padding_mask", "mask_positions")


def feed_forward_block(x, hidden_dim, intermediate_dim, epsilon=1e-5):
    """TransformerEncoder's feed-forward sublayer alone: post-LN(x + W2 gelu(W1 x))."""
    h = keras.layers.Dense(intermediate_dim, activation="gelu")(x)
    h = keras.layers.Dense(hidden_dim)(h)
    return keras.layers.LayerNormalization(epsilon=epsilon)(keras.layers.Add()([x, h]))


def build_ablation_model(vocab_size, seq_length, config, attention, gaussian_input,
                         max_predictions):
    """A masked-LM encoder; `attention=False` drops each block's self-attention sublayer.

    Inputs: ``padding_mask``, ``mask_positions`` and ``token_ids`` (int) or,
    with `gaussian_input`, ``embeddings`` (float, [seq, hidden]) in place of
    the token-embedding lookup. Output: logits at ``mask_positions``.
    """
    import keras_hub  # heavy (seconds); only this path needs it

    hidden = config["hidden_dim"]
    init = keras.initializers.TruncatedNormal(stddev=EMBEDDING_STDDEV)
    padding_mask = keras.Input((seq_length,), dtype="bool", name="padding_mask")
    positions = keras.Input((max_predictions,), dtype="int32", name="mask_positions")
    if gaussian_input:
        first = keras.Input((seq_length, hidden), dtype="float32", name="embeddings")
        x = first
    else:
        first = keras.Input((seq_length,), dtype="int32", name="token_ids")
        x = keras.layers.Embedding(vocab_size, hidden, embeddings_initializer=init)(first)
    x = keras.layers.Add()([x, keras_hub.layers.PositionEmbedding(
        seq_length, initializer=init)(x)])
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    for _ in range(config["num_layers"]):
        if attention:
            x = keras_hub.layers.TransformerEncoder(
                config["intermediate_dim"], config["num_heads"], activation="gelu")(
                    x, padding_mask=padding_mask)
        else:
            x = feed_forward_block(x, hidden, config["intermediate_dim"])
    logits = keras_hub.layers.MaskedLMHead(vocabulary_size=vocab_size)(
        x, mask_positions=positions)
    inputs = {"padding_mask": padding_mask, "mask_positions": positions,
              ("embeddings" if gaussian_input else "token_ids"): first}
    return keras.Model(inputs, logits)


def gaussian_stream(text_dataset, hidden_dim, vocab_size, seed, targets):
    """The text minibatches with the tokens replaced by Gaussian vectors (see the docstring).

    Batch i's vectors are ``stateless_normal(seed=[seed, i])``, each scaled to
    RMS ``EMBEDDING_STDDEV``; targets ``teacher``: ``argmax(z W)`` at each
    predicted position, ``W`` a fixed N(0, 1) matrix; ``text``: unchanged.
    """
    teacher = tf.constant(np.random.default_rng(seed).standard_normal((hidden_dim, vocab_size)),
                          tf.float32)

    def replace(i, batch):
        x, y, w = batch
        shape = tf.concat([tf.shape(x["token_ids"]), [hidden_dim]], 0)
        z = tf.random.stateless_normal(shape, seed=tf.stack([tf.cast(seed, tf.int64), i]))
        z = z / tf.norm(z, axis=-1, keepdims=True) * (EMBEDDING_STDDEV * hidden_dim ** 0.5)
        if targets == "teacher":
            at_positions = tf.gather(z, x["mask_positions"], batch_dims=1)
            y = tf.argmax(tf.einsum("bph,hv->bpv", at_positions, teacher), -1,
                          output_type=tf.int32)
        inputs = {"embeddings": z, "padding_mask": x["padding_mask"],
                  "mask_positions": x["mask_positions"]}
        return inputs, y, w

    return text_dataset.enumerate().map(lambda i, b: replace(i, b)).cache()


def text_triples(task_batches):
    """MaskedLMData batches -> (encoder inputs, masked ids, mask weights)."""
    return task_batches.map(lambda b: ({k: b[k] for k in TEXT_INPUTS}, b["mask_ids"],
                                       b["mask_weights"]))


def ablation_measurements(f, strategy):
    """(cells, settings, facts) for Figure 4's four cells."""
    del strategy
    experiment = tasks.bert_experiment(f)
    task = tasks.bert_task(f, experiment)
    seed, bert = experiment.run.seed, experiment.task
    config, vocab_size = task.config, len(task.vocab)
    text = text_triples(task.train_dataset(None, f.batch_size, 0).take(f.num_batches)).cache()
    gaussian = gaussian_stream(text, config["hidden_dim"], vocab_size, seed,
                               f.gaussian_targets)

    def build(attention, gaussian_input):
        def model_fn():
            keras.utils.set_random_seed(seed)
            return build_ablation_model(vocab_size, bert.seq_length, config, attention,
                                        gaussian_input, bert.max_predictions_per_seq)
        return model_fn

    cells = []
    for attention, arch in ((True, "attention"), (False, "no attention")):
        cells.append((f"{arch} / text", build(attention, False), objective.masked_lm_loss, text))
        cells.append((f"{arch} / gaussian", build(attention, True), objective.masked_lm_loss,
                      gaussian))
    epochs = f.num_batches * f.batch_size / len(task.data.train_segments)
    facts = dict(task.facts, gaussian_targets=f.gaussian_targets, epochs_covered=round(epochs, 3))
    return cells, tasks.settings_of(tasks.settings(experiment), tasks.BERT_SETTINGS,
                                    "trainers.gradient_noise"), facts
