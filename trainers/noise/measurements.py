"""The pieces of `python -m trainers.gradient_noise` (see that program's docstring):
the settings of a measured run, its minibatch streams and models, the
measurement itself and the written figures and JSON."""

import json
import os

from trainers.bert import model as bert_model
from trainers.common import checkpoints as checkpoints_lib
from trainers.common.errors import TrainerError

MODELS = ("bert", "attention_ablation", "resnet")
GAUSSIAN_TARGETS = ("teacher", "text")
EMBEDDING_STDDEV = 0.02  # BERT's initialiser; the Gaussian input's RMS too.

def read_flags_file(path):
    """{name: value string} of a flagfile (``--name=value``; ``--flag``/``--noflag`` bools)."""
    if not os.path.exists(path):
        raise TrainerError(f"{path} does not exist (is --pretrain_dir a bert_pretrain model_dir?)")
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("--"):
                continue
            name, sep, value = line[2:].partition("=")
            if sep:
                values[name] = value
            elif name.startswith("no"):
                values[name[2:]] = "false"
            else:
                values[name] = "true"
    return values


def run_settings(pretrain_dir):
    """The data and model settings of a bert_pretrain run, from its flags.txt."""
    if not os.path.isdir(pretrain_dir):
        raise TrainerError(f"--pretrain_dir={pretrain_dir} does not exist")
    raw = read_flags_file(os.path.join(pretrain_dir, "flags.txt"))

    def get(name, kind, default=None):
        if name not in raw or raw[name] == "":
            return default
        try:
            return kind(raw[name])
        except ValueError:
            raise TrainerError(f"{pretrain_dir}/flags.txt: --{name}={raw[name]!r} is not a {kind.__name__}")

    return dict(
        model_size=get("model_size", str, "tiny"), num_layers=get("num_layers", int),
        hidden_dim=get("hidden_dim", int), num_heads=get("num_heads", int),
        intermediate_dim=get("intermediate_dim", int), corpus=get("corpus", str, "wiki"),
        max_documents=get("max_documents", int, 0), eval_fraction=get("eval_fraction", float, 0.1),
        seq_length=get("seq_length", int, 128),
        max_predictions_per_seq=get("max_predictions_per_seq", int, 20),
        mask_rate=get("mask_rate", float, 0.15), seed=get("seed", int, 0))


def flag_settings(f):
    """The same settings from this program's own flags (no --pretrain_dir)."""
    return dict(model_size=f.model_size, num_layers=f.num_layers, hidden_dim=f.hidden_dim,
                num_heads=f.num_heads, intermediate_dim=f.intermediate_dim, corpus=f.corpus,
                max_documents=f.max_documents, eval_fraction=f.eval_fraction,
                seq_length=f.seq_length, max_predictions_per_seq=f.max_predictions_per_seq,
                mask_rate=f.mask_rate, seed=f.seed)


def backbone_config(settings):
    return bert_model.model_config(settings["model_size"], settings["num_layers"],
                                   settings["hidden_dim"], settings["num_heads"],
                                   settings["intermediate_dim"])


# ---------------------------------------------------------------- checkpoints
def checkpoint_paths(pretrain_dir):
    """{step: path} of the checkpoints a bert_pretrain run kept (``ckpt-<step>``)."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(os.path.join(pretrain_dir, "checkpoints"))
    paths = list(state.all_model_checkpoint_paths) if state else []
    out = {}
    for path in paths:
        suffix = path.rsplit("-", 1)[-1]
        if suffix.isdigit():
            out[int(suffix)] = path
    return dict(sorted(out.items()))


def select_checkpoints(available, spec, pretrain_dir):
    """[(step, path)] that ``--checkpoints`` names (``all``/empty: every one kept)."""
    listed = ", ".join(map(str, available)) or "none"
    if spec in (None, "", "all"):
        return list(available.items())
    steps = []
    for item in spec.split(","):
        item = item.strip()
        if not item.isdigit():
            raise TrainerError(f"--checkpoints={spec!r}: {item!r} is not a step number "
                               "(use comma-separated steps or 'all')")
        step = int(item)
        if step not in available:
            raise TrainerError(f"checkpoint step {step} not found in {pretrain_dir}/checkpoints "
                               f"(available steps: {listed})")
        steps.append(step)
    return [(s, available[s]) for s in sorted(set(steps))]


# ---------------------------------------------------------------- data
def load_vocabulary(f, settings, train_documents, pretrain_dir):
    """The run's vocab.txt, else --vocab_file, else a WordPiece vocabulary learned (cached)."""
    from trainers.common.text import vocab as vocab_lib

    if pretrain_dir:
        return vocab_lib.load_vocabulary(os.path.join(pretrain_dir, "vocab.txt"))
    if f.vocab_file:
        return vocab_lib.load_vocabulary(f.vocab_file)
    return vocab_lib.corpus_vocabulary(train_documents, f.vocab_size)


def masked_lm_stream(f, settings, pretrain_dir):
    """(vocab, dataset of (x, y, weights) minibatches, facts) on the training split.

    The stream is ``MaskedLMData.train_dataset`` from batch 0: the minibatches
    a bert_pretrain run with this seed and batch size trains on first. It is
    cached after ``--num_batches`` so both passes of the measurement see the
    same masks and order.
    """
    import tensorflow as tf  # noqa: F401 - TF must be up before keras_hub's tokenizer

    from trainers.common.text import corpus as corpus_lib
    from trainers.bert import mlm
    from trainers.common.text import vocab as vocab_lib

    documents = corpus_lib.load_corpus(settings["corpus"], settings["max_documents"] or None)
    train_docs, _ = corpus_lib.split_documents(documents, settings["eval_fraction"], seed=0)
    vocab = load_vocabulary(f, settings, train_docs, pretrain_dir)
    segments = mlm.segment_documents(train_docs, vocab_lib.make_tokenizer(vocab),
                                     settings["seq_length"])
    if len(segments) < f.batch_size:
        raise TrainerError(f"the training split has {len(segments)} sequences, fewer than one "
                           f"batch (--batch_size={f.batch_size})")
    # No held-out pipeline is used here, so its segments are left empty.
    data = mlm.MaskedLMData(segments, segments[:0], vocab, settings["seed"],
                            settings["max_predictions_per_seq"], settings["mask_rate"])
    dataset = (data.train_dataset(None, f.batch_size)
               .take(f.num_batches)
               .map(as_triple)
               .cache())
    facts = dict(documents=len(documents), train_documents=len(train_docs),
                 train_sequences=len(segments), vocab_size=len(vocab),
                 epochs_covered=round(f.num_batches * f.batch_size / len(segments), 3))
    return vocab, dataset, facts


def as_triple(batch):
    """A MaskedLMData batch -> (model inputs, masked ids, mask weights)."""
    x = {k: batch[k] for k in ("token_ids", "padding_mask", "segment_ids", "mask_positions")}
    return x, batch["mask_ids"], batch["mask_weights"]


def masked_lm_loss(y_true, logits, weights):
    """Mean cross-entropy over the predicted positions: bert_pretrain's training loss."""
    import tensorflow as tf

    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y_true, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


# ---------------------------------------------------------------- measurement
def measure(triples, num_batches, strategy=None, training=False):
    """{label: GradientNoiseSample} for an iterable of (label, model_fn, loss_fn, dataset).

    ``training`` is passed to the model: False for BERT (dropout off), True
    for ResNet (batch normalisation on batch statistics, as in training).

    ``model_fn()`` builds the model (called under the strategy's scope), so
    only one model is alive at a time.
    """
    import keras

    from acclip_tf import noise

    samples = {}
    for label, model_fn, loss_fn, dataset in triples:
        print(f"measuring {label}: {num_batches} minibatches, two passes ...", flush=True)
        if strategy is None:
            model = model_fn()
        else:
            with strategy.scope():
                model = model_fn()
        samples[label] = noise.gradient_noise_norms(
            model, loss_fn, dataset, num_batches=num_batches, strategy=strategy,
            training=training)
        s = samples[label].statistics()
        print(f"  {label}: stable alpha {s['stable_alpha']:.3f}, Hill alpha "
              f"{s['hill_alpha']:.3f}, max/median {s['max_median_ratio']:.3f}, "
              f"kurtosis {s['kurtosis']:.3f}", flush=True)
        del model
        keras.backend.clear_session()
    return samples


def bert_measurements(f, strategy):
    """(triples, settings, facts) for --model=bert (init and/or checkpoints)."""
    import keras

    pretrain_dir = f.pretrain_dir
    settings = run_settings(pretrain_dir) if pretrain_dir else flag_settings(f)
    config = backbone_config(settings)
    selected = []
    if pretrain_dir:
        available = checkpoint_paths(pretrain_dir)
        selected = select_checkpoints(available, f.checkpoints, pretrain_dir)
        if not selected and not f.include_init:
            raise TrainerError(f"{pretrain_dir}/checkpoints holds no checkpoint and "
                               "--noinclude_init leaves nothing to measure")
    elif not f.include_init:
        raise TrainerError("--noinclude_init needs --pretrain_dir (nothing else to measure)")
    vocab, dataset, facts = masked_lm_stream(f, settings, pretrain_dir)
    if not pretrain_dir:
        from trainers.common.text import vocab as vocab_lib

        os.makedirs(f.output_dir, exist_ok=True)
        vocab_lib.save_vocabulary(vocab, os.path.join(f.output_dir, "vocab.txt"))

    def build(path=None):
        def model_fn():
            keras.utils.set_random_seed(settings["seed"])
            model, _ = bert_model.build_masked_lm(config, len(vocab), settings["seq_length"], 0.0)
            if path is not None:
                checkpoints_lib.restore_weights(model, path)
            return model
        return model_fn

    triples = []
    if f.include_init:
        triples.append(("init", build(), masked_lm_loss, dataset))
    triples += [(f"step {step}", build(path), masked_lm_loss, dataset) for step, path in selected]
    facts = dict(facts, pretrain_dir=pretrain_dir, **config)
    return triples, settings, facts


def image_stream(f, data, image_size, seed):
    """The first ``num_batches`` training minibatches of (images, labels), fixed.

    A seeded shuffle of the training split (repeated if it is smaller than
    ``num_batches * batch_size``), eval-style preprocessing (resize/centre,
    normalise; no augmentation, so the only noise is the choice of examples),
    cached so that both passes see identical batches.
    """
    from trainers.vision import pipelines as images

    pipelines = images.ImagePipelines(data, image_size, augment="none", seed=seed)
    split = data.train
    examples = split.ordered().shuffle(min(split.num_examples, 10_000), seed=seed).repeat()
    return (examples.take(f.num_batches * f.batch_size)
            .map(lambda raw, label: (pipelines.eval_image(split.decode(raw)), label))
            .batch(f.batch_size).cache())


def classification_loss(labels, logits):
    """Mean cross-entropy of the batch (the ResNet trainer's loss without smoothing)."""
    import tensorflow as tf

    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)))


def resnet_measurements(f, strategy):
    """(triples, settings, facts) for --model=resnet (init and/or checkpoints).

    With --pretrain_dir (a trainers.resnet_imagenet model_dir) the model,
    data (dataset, image size, classes, seed, TFDS location and split) come
    from its flags.txt and the weights from its checkpoints; otherwise from
    --image_model, --dataset, --image_size and --seed.
    """
    import keras

    from trainers.vision import models as resnet_models
    from trainers.vision import sources as image_sources

    settings = {"model": f.image_model, "dataset": f.dataset, "image_size": f.image_size,
                "num_classes": 0, "seed": f.seed}
    source = {}
    selected = []
    if f.pretrain_dir:
        run = read_flags_file(os.path.join(f.pretrain_dir, "flags.txt"))
        settings.update({k: run[k] for k in ("model", "dataset") if k in run})
        settings.update({k: int(run[k]) for k in ("image_size", "num_classes", "seed")
                         if run.get(k, "") != ""})
        source = {k: run[k] for k in ("tfds_data_dir", "tfds_manual_dir", "train_split")
                  if run.get(k, "") != ""}
        selected = select_checkpoints(checkpoint_paths(f.pretrain_dir), f.checkpoints,
                                      f.pretrain_dir)
    if not selected and not f.include_init:
        raise TrainerError("--noinclude_init leaves nothing to measure")
    data, size = image_sources.load_for_model(
        settings["model"], settings["dataset"], settings["image_size"],
        settings["num_classes"], settings["seed"], **source)
    num_classes = settings["num_classes"] or data.num_classes
    dataset = image_stream(f, data, size, settings["seed"])

    def build(path=None):
        def model_fn():
            keras.utils.set_random_seed(settings["seed"])
            model = resnet_models.build(settings["model"], size, data.channels, num_classes)
            if path is not None:
                checkpoints_lib.restore_weights(model, path)
            return model
        return model_fn

    triples = [("init", build(), classification_loss, dataset)] if f.include_init else []
    triples += [(f"step {step}", build(path), classification_loss, dataset)
                for step, path in selected]
    facts = dict(data.facts(), image_size=size, pretrain_dir=f.pretrain_dir)
    return triples, settings, facts


# ---------------------------------------------------------------- Figure 4
def feed_forward_block(x, hidden_dim, intermediate_dim, epsilon=1e-5):
    """TransformerEncoder's feed-forward sublayer alone: post-LN(x + W2 gelu(W1 x))."""
    import keras

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
    import keras
    import keras_hub

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
    import numpy as np
    import tensorflow as tf

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


def ablation_measurements(f, strategy):
    """(triples, settings, facts) for Figure 4's four cells."""
    import keras

    settings = flag_settings(f)
    config = backbone_config(settings)
    vocab, text, facts = masked_lm_stream(f, settings, None)
    gaussian = gaussian_stream(text, config["hidden_dim"], len(vocab), settings["seed"],
                               f.gaussian_targets)

    def text_only(dataset):
        return dataset.map(lambda x, y, w: ({k: x[k] for k in ("token_ids", "padding_mask",
                                                                "mask_positions")}, y, w))

    def build(attention, gaussian_input):
        def model_fn():
            keras.utils.set_random_seed(settings["seed"])
            return build_ablation_model(len(vocab), settings["seq_length"], config, attention,
                                        gaussian_input, settings["max_predictions_per_seq"])
        return model_fn

    triples = []
    for attention, arch in ((True, "attention"), (False, "no attention")):
        triples.append((f"{arch} / text", build(attention, False), masked_lm_loss,
                        text_only(text)))
        triples.append((f"{arch} / gaussian", build(attention, True), masked_lm_loss, gaussian))
    facts = dict(facts, gaussian_targets=f.gaussian_targets, **config)
    return triples, settings, facts


# ---------------------------------------------------------------- outputs
def references(num_samples, dim, alpha, seed):
    """Figure 1 c/g: norms of Gaussian and of alpha-stable vectors, as many as measured."""
    from acclip_tf import noise

    return {
        f"sum of squared Gaussians (d={dim})": noise.gaussian_reference_norms(
            num_samples, dim, seed=seed),
        f"alpha-stable, alpha={alpha:g} (d={dim})": noise.stable_reference_norms(
            num_samples, dim, alpha, seed=seed),
    }


def relative_variance_curve(norms):
    """(sizes, V_n / V_N): the running variance estimate relative to its final value."""
    from acclip_tf import noise

    sizes, variances = noise.variance_vs_sample_size(norms)
    return sizes, variances / variances[-1]


def write_outputs(output_dir, name, samples, refs, settings, facts, development):
    """The PNG figures and ``<name>_noise.json``; returns the JSON's dict."""
    from acclip_tf import noise
    from acclip_tf import plotting

    os.makedirs(output_dir, exist_ok=True)
    norms = {label: s.noise_norms for label, s in samples.items()}
    figures = [plotting.plot_noise_histograms(
        {**norms, **refs}, os.path.join(output_dir, f"{name}_histograms.png"),
        title=f"{name}: gradient-noise norm ||g_i - grad f|| (right: synthetic references)")]
    curves = {label: relative_variance_curve(x) for label, x in {**norms, **refs}.items()}
    figures.append(plotting.plot_variance_curves(
        curves, os.path.join(output_dir, f"{name}_variance.png"),
        title="running variance / final value"))
    if development and len(samples) > 1:
        figures.append(plotting.plot_noise_development(
            norms, os.path.join(output_dir, f"{name}_development.png")))
    result = {
        "model": name,
        "settings": settings,
        "facts": facts,
        "measurements": {label: {"statistics": s.statistics(),
                                 "noise_norms": s.noise_norms.tolist(),
                                 "gradient_norms": s.gradient_norms.tolist()}
                         for label, s in samples.items()},
        "references": {label: {"statistics": noise.tail_statistics(x)}
                       for label, x in refs.items()},
        "figures": [os.path.basename(p) for p in figures],
    }
    path = os.path.join(output_dir, f"{name}_noise.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"wrote {', '.join(result['figures'])} and {os.path.basename(path)} to {output_dir}",
          flush=True)
    return result


PATHS = {"bert": bert_measurements, "attention_ablation": ablation_measurements,
         "resnet": resnet_measurements}
