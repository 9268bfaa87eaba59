"""BERT sizes, the masked-LM model, and the export a later trainer loads.

Export layout (``<model_dir>/export``), written with KerasHub's own preset
format so `load_pretrained` needs no network:

    export/config.json, model.weights.h5, metadata.json   (the BertBackbone)
    export/tokenizer.json, assets/tokenizer/vocabulary.txt (the BertTokenizer)
    export/pretrain_config.json                            (sizes, seq_length, ...)
"""

import json
import os

from trainers.common.errors import TrainerError

# name -> (num_layers, hidden_dim, num_heads); intermediate_dim = 4 * hidden.
MODEL_SIZES = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base6": (6, 768, 12),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}


def model_config(size, num_layers=None, hidden_dim=None, num_heads=None,
                 intermediate_dim=None):
    """The backbone's shape from `--model_size` and the overrides."""
    if size not in MODEL_SIZES:
        raise TrainerError(f"unknown --model_size={size!r}; choose one of "
                           f"{', '.join(MODEL_SIZES)}")
    layers, hidden, heads = MODEL_SIZES[size]
    layers = num_layers or layers
    hidden = hidden_dim or hidden
    heads = num_heads or heads
    if hidden % heads:
        raise TrainerError(f"hidden_dim {hidden} is not divisible by num_heads {heads}")
    return dict(num_layers=layers, hidden_dim=hidden, num_heads=heads,
                intermediate_dim=intermediate_dim or 4 * hidden)


def build_masked_lm(config, vocabulary_size, seq_length, dropout):
    """(BertMaskedLM, BertBackbone), randomly initialised (no preset, no network)."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, dropout=dropout, max_sequence_length=seq_length,
        **config)
    return keras_hub.models.BertMaskedLM(backbone, preprocessor=None), backbone


def export(backbone, vocab, export_dir, extra_config):
    os.makedirs(export_dir, exist_ok=True)
    backbone.save_to_preset(export_dir)
    from trainers.common.text.vocab import make_tokenizer

    make_tokenizer(vocab).save_to_preset(export_dir)
    with open(os.path.join(export_dir, "pretrain_config.json"), "w") as f:
        json.dump(extra_config, f, indent=2, sort_keys=True)


def find_export(model_dir):
    """The export directory of a bert_pretrain `model_dir` (or `model_dir` itself if it is one)."""
    export_dir = os.path.join(model_dir, "export")
    if not os.path.isdir(export_dir):
        export_dir = model_dir
    if not os.path.exists(os.path.join(export_dir, "config.json")):
        raise TrainerError(f"--init_checkpoint={model_dir} holds no BERT export "
                           "(run trainers.bert_pretrain to the end first)")
    return export_dir


def load_pretrained(model_dir):
    """(backbone, tokenizer, pretrain_config) from a bert_pretrain `model_dir` (or its export)."""
    import keras_hub

    export_dir = find_export(model_dir)
    backbone = keras_hub.models.BertBackbone.from_preset(export_dir)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(export_dir)
    with open(os.path.join(export_dir, "pretrain_config.json")) as f:
        config = json.load(f)
    return backbone, tokenizer, config
