"""The decoder-only Transformer LM: KerasHub's `GPT2Backbone` built from a config,
with the output projection tied to the token embedding (its reverse), as
`keras_hub.models.GPT2CausalLM` does (pre-LayerNorm decoder blocks, causal
self-attention, learned positions, GELU feed-forward).

Export layout (``<model_dir>/export``), KerasHub's preset format (no network
needed to load it back):

    export/config.json, model.weights.h5, metadata.json   (the GPT2Backbone)
    export/vocab.txt                                        (the run's vocabulary)
    export/lm_config.json                                   (tokenizer, seq_length, sizes, ...)
"""

import json

from trainers.common import files
from trainers.common.cli import TrainerError

# name -> (num_layers, hidden_dim, num_heads, intermediate_dim)
MODEL_SIZES = {
    "tiny": (2, 128, 2, 512),     # minutes on 2 CPU cores
    "small": (4, 256, 4, 1024),
    "paper": (6, 512, 8, 2048),   # the paper's 6 layers (its Transformer-XL on PTB), GPU/TPU
}


def model_config(size, num_layers=None, hidden_dim=None, num_heads=None,
                 intermediate_dim=None):
    """The decoder's shape from `--model_size` and the overrides."""
    if size not in MODEL_SIZES:
        raise TrainerError(f"unknown --model_size={size!r}; choose one of "
                           f"{', '.join(MODEL_SIZES)}")
    layers, hidden, heads, ffn = MODEL_SIZES[size]
    layers = num_layers or layers
    hidden = hidden_dim or hidden
    heads = num_heads or heads
    ffn = intermediate_dim or ffn
    if hidden % heads:
        raise TrainerError(f"hidden_dim {hidden} is not divisible by num_heads {heads}")
    return dict(num_layers=layers, hidden_dim=hidden, num_heads=heads, intermediate_dim=ffn)


def build_causal_lm(config, vocabulary_size, seq_length, dropout):
    """(GPT2CausalLM, GPT2Backbone), randomly initialised (no preset, no network).

    The model maps ``{"token_ids", "padding_mask"}`` [batch, seq_length] to
    next-token logits [batch, seq_length, vocabulary_size].
    """
    import keras_hub

    if not 0 <= dropout < 1:
        raise TrainerError(f"--dropout must lie in [0, 1), got {dropout}")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size, dropout=dropout, max_sequence_length=seq_length,
        **config)
    return keras_hub.models.GPT2CausalLM(backbone, preprocessor=None), backbone


def export(backbone, vocab, export_dir, extra_config):
    """The backbone as a KerasHub preset, vocab.txt and lm_config.json (any gfile path)."""
    from trainers.common.text.vocab import save_vocabulary

    with files.LocalCopy(export_dir, write=True) as local:
        backbone.save_to_preset(local)
    save_vocabulary(vocab, files.join(export_dir, "vocab.txt"))
    files.write_text_atomically(files.join(export_dir, "lm_config.json"),
                                json.dumps(extra_config, indent=2, sort_keys=True))


def load_exported(model_dir):
    """(GPT2CausalLM, vocabulary, lm_config) from a causal_lm `model_dir` or its export."""
    import keras_hub

    from trainers.common.text.vocab import load_vocabulary

    export_dir = files.join(model_dir, "export")
    if not files.isdir(export_dir):
        export_dir = model_dir
    if not files.exists(files.join(export_dir, "lm_config.json")):
        raise TrainerError(f"{model_dir} holds no causal LM export "
                           "(run trainers.causal_lm to the end first)")
    with files.LocalCopy(export_dir) as local:
        backbone = keras_hub.models.GPT2Backbone.from_preset(local)
    config = json.loads(files.read_text(files.join(export_dir, "lm_config.json")))
    vocab = load_vocabulary(files.join(export_dir, "vocab.txt"))
    return keras_hub.models.GPT2CausalLM(backbone, preprocessor=None), vocab, config


