"""BERT sizes, the masked-LM model, the export a later trainer loads, and
`--init_checkpoint`: a bert_pretrain run (or its export), a KerasHub preset
directory, or a preset handle (``bert_base_en_uncased``, ``kaggle://...``,
``hf://...``; downloaded by KerasHub, or taken from its cache).

Export layout (``<model_dir>/export``), written with KerasHub's own preset
format so `load_pretrained` needs no network:

    export/config.json, model.weights.h5, metadata.json   (the BertBackbone)
    export/tokenizer.json, assets/tokenizer/vocabulary.txt (the BertTokenizer)
    export/pretrain_config.json                            (sizes, seq_length, ...)
"""

import contextlib
import json
import os
import socket

from trainers.common import files
from trainers.common.errors import TrainerError, first_line

PRETRAIN_CONFIG = "pretrain_config.json"
# --init_checkpoint values that name a KerasHub preset to download (or take from its cache).
HANDLE_SCHEMES = ("kaggle://", "hf://", "modelscope://")
HANDLE_HOSTS = {"kaggle://": "www.kaggle.com", "hf://": "huggingface.co",
                "modelscope://": "www.modelscope.cn"}
NETWORK_TIMEOUT = 5.0

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


def pretrained_masked_lm(init, seq_length):
    """(BertMaskedLM with a fresh masked-LM head, BertBackbone of `init`)."""
    import keras_hub

    backbone = load_backbone(init)
    if seq_length > backbone.max_sequence_length:
        raise TrainerError(f"--seq_length={seq_length} exceeds the {backbone.max_sequence_length} "
                           f"positions of --init_checkpoint={init}")
    return keras_hub.models.BertMaskedLM(backbone, preprocessor=None), backbone


def export(backbone, vocab, export_dir, extra_config, lowercase=True):
    """Write the backbone and its tokenizer as a KerasHub preset directory (on any
    `tf.io.gfile` filesystem), plus ``pretrain_config.json``."""
    from trainers.common.text.vocab import make_tokenizer

    with files.LocalCopy(export_dir, write=True) as local:
        backbone.save_to_preset(local)
        make_tokenizer(vocab, lowercase=lowercase).save_to_preset(local)
    files.write_text_atomically(files.join(export_dir, PRETRAIN_CONFIG),
                                json.dumps(extra_config, indent=2, sort_keys=True))


def is_handle(init):
    """Whether `init` is a KerasHub preset handle (a built-in name such as
    ``bert_base_en_uncased``, ``kaggle://...``, ``hf://...``) rather than a directory."""
    if init.startswith(HANDLE_SCHEMES):
        return True
    return not files.is_remote(init) and os.sep not in init and "/" not in init \
        and not init.startswith(".") and not files.exists(init)


def find_export(init):
    """The preset directory of `--init_checkpoint=init`: a bert_pretrain run's
    ``export/``, `init` itself if it is an export or a KerasHub preset directory; a
    preset handle is returned as it is."""
    if is_handle(init):
        return init
    if not files.exists(init):
        raise TrainerError(f"--init_checkpoint={init} does not exist (give a bert_pretrain "
                           "model_dir, a KerasHub preset directory, or a preset handle such "
                           "as bert_base_en_uncased)")
    export_dir = files.join(init, "export")
    if not files.isdir(export_dir):
        export_dir = init
    if not files.exists(files.join(export_dir, "config.json")):
        raise TrainerError(f"--init_checkpoint={init} holds no BERT export or KerasHub "
                           "preset (no config.json; run trainers.bert_pretrain to the end "
                           "first)")
    return export_dir


def _network_note(handle):
    host = next((h for scheme, h in HANDLE_HOSTS.items() if handle.startswith(scheme)),
                HANDLE_HOSTS["kaggle://"])
    try:
        socket.create_connection((host, 443), timeout=NETWORK_TIMEOUT).close()
        return None
    except OSError as e:
        return f"{host} is unreachable ({e})"


def _from_preset(cls, location, what):
    """`cls.from_preset(location)` with one-line errors; a handle offline fails fast."""
    if files.is_remote(location) and not location.startswith(HANDLE_SCHEMES):
        with files.LocalCopy(location) as local:  # e.g. ram://: Keras reads local paths
            return _from_preset(cls, local, what)
    if is_handle(location) and not location.startswith(HANDLE_SCHEMES) \
            and location not in cls.presets:
        raise TrainerError(f"--init_checkpoint={location} is neither a directory nor a "
                           f"KerasHub BERT preset (built in: {', '.join(sorted(cls.presets))}; "
                           "or kaggle://..., hf://...)")
    offline = _network_note(location) if is_handle(location) else None
    with _hub_offline(offline and location.startswith("hf://")):
        try:
            return cls.from_preset(location)
        except Exception as e:  # noqa: BLE001 - any loader's failure, in one line
            why = f"{offline}, and it is not in the local cache" if offline else first_line(e)
            raise TrainerError(
                f"cannot load the {what} of --init_checkpoint={location}: {why}") from e


@contextlib.contextmanager
def _hub_offline(on):
    """Hugging Face Hub offline mode while `on`: its cache, if any, instead of ~25 s of
    retries (the hub reads HF_HUB_OFFLINE once, at import; this sets its constant)."""
    constants = None
    if on:
        try:
            from huggingface_hub import constants
        except ImportError:
            pass
    saved = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved


def load_backbone(init):
    """The pretrained `BertBackbone` of `--init_checkpoint=init` (see `find_export`)."""
    import keras_hub

    return _from_preset(keras_hub.models.BertBackbone, find_export(init), "BERT backbone")


def load_tokenizer(init):
    """The `BertTokenizer` of `--init_checkpoint=init`: its vocabulary and lowercasing."""
    import keras_hub

    return _from_preset(keras_hub.models.BertTokenizer, find_export(init), "BERT tokenizer")


def pretrain_config(init):
    """``pretrain_config.json`` of a bert_pretrain export ({} for another preset)."""
    location = find_export(init)
    path = files.join(location, PRETRAIN_CONFIG)
    if is_handle(location) or not files.exists(path):
        return {}
    return json.loads(files.read_text(path))


def load_pretrained(init):
    """(backbone, tokenizer, pretrain_config) of `--init_checkpoint=init`: a bert_pretrain
    model_dir or export, a KerasHub preset directory, or a preset handle."""
    return load_backbone(init), load_tokenizer(init), pretrain_config(init)
