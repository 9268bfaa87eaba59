"""--init_checkpoint from a KerasHub preset (a directory the test writes itself with
`save_to_preset`, so no network), for squad_finetune and bert_pretrain, in-process;
and a preset handle that needs the network, without one, fails fast in one line."""

import time

import pytest

from squad_helpers import HANDWRITTEN, handwritten, small_vocabulary
from trainers import bert_pretrain  # noqa: F401 - defines the flags
from trainers import squad_finetune  # noqa: F401 - defines the flags
from trainers.bert import model as bert_model
from trainers.bert.task import BertPretrainTask
from trainers.common import runner
from trainers.common.errors import TrainerError
from trainers.squad.task import SquadTask
from conftest import parse_flags as parse, reset_absl_flags

SHARED = ["--global_batch_size=4", "--steps_per_loop=2", "--eval_every=0",
          "--checkpoint_every=0", "--optimizer=adam", "--learning_rate=1e-3",
          "--warmup_steps=0", "--lr_schedule=constant",
          "--eval_batches=0", "--strategy=one_device", "--nojit_compile", "--seed=0"]
SQUAD = ["--max_seq_length=64", "--doc_stride=32", "--max_query_length=16",
         f"--train_file={HANDWRITTEN}", f"--predict_file={HANDWRITTEN}"]


@pytest.fixture(autouse=True)
def reset_flags():
    yield
    reset_absl_flags()


@pytest.fixture(scope="module")
def preset_dir(tmp_path_factory):
    """A tiny BertBackbone + an UNCASED BertTokenizer saved as a KerasHub preset."""
    import keras_hub

    texts = [t for e in handwritten().examples for t in (e.context, e.question)]
    vocab = small_vocabulary(texts)
    directory = str(tmp_path_factory.mktemp("preset"))
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64, dropout=0.0)
    backbone.save_to_preset(directory)
    keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True).save_to_preset(directory)
    return directory


def test_load_pretrained_reads_a_preset_directory(preset_dir):
    backbone, tokenizer, config = bert_model.load_pretrained(preset_dir)
    assert backbone.hidden_dim == 16 and backbone.num_layers == 1
    assert tokenizer.lowercase and tokenizer.vocabulary_size() == backbone.vocabulary_size
    assert config == {}  # not a bert_pretrain export


def test_squad_finetunes_from_a_preset_directory(preset_dir, tmp_path):
    import keras_hub

    f = parse("squad_finetune", f"--model_dir={tmp_path}", f"--init_checkpoint={preset_dir}",
              "--train_steps=2", *SHARED, *SQUAD)
    summary = runner.run(SquadTask, f)
    assert summary["final_step"] == 2
    assert summary["task"]["init_checkpoint"] == preset_dir
    assert summary["task"]["vocab_size"] == keras_hub.models.BertTokenizer.from_preset(
        preset_dir).vocabulary_size()
    assert "f1" in summary["eval"]


def test_bert_pretrain_continues_from_a_preset(preset_dir, tmp_path, small_corpus):
    f = parse("bert_pretrain", f"--model_dir={tmp_path}", f"--init_checkpoint={preset_dir}",
              f"--corpus={small_corpus}", "--seq_length=32", "--max_predictions_per_seq=4",
              "--train_steps=2", *SHARED)
    summary = runner.run(BertPretrainTask, f)
    assert summary["final_step"] == 2
    assert summary["task"]["init_checkpoint"] == preset_dir
    # The export is the preset's shape and vocabulary, and loads back as a preset.
    backbone, tokenizer, config = bert_model.load_pretrained(str(tmp_path))
    _, preset_tokenizer, _ = bert_model.load_pretrained(preset_dir)
    assert backbone.hidden_dim == 16
    assert tokenizer.get_vocabulary() == preset_tokenizer.get_vocabulary()
    assert config["init_checkpoint"] == preset_dir


def test_seq_length_beyond_the_preset_is_one_line(preset_dir, tmp_path, small_corpus):
    f = parse("bert_pretrain", f"--model_dir={tmp_path}", f"--init_checkpoint={preset_dir}",
              f"--corpus={small_corpus}", "--seq_length=128", "--train_steps=2", *SHARED)
    with pytest.raises(TrainerError, match="exceeds the 64 positions"):
        runner.run(BertPretrainTask, f)


@pytest.mark.parametrize("init, message", [
    ("no_such_preset", "neither a directory nor a KerasHub BERT preset"),
    ("./no/such/dir", "does not exist"),
])
def test_bad_init_checkpoint_is_one_line(init, message):
    with pytest.raises(TrainerError, match=message):
        bert_model.load_tokenizer(init)


def test_a_directory_without_a_model_is_one_line(tmp_path):
    with pytest.raises(TrainerError, match="holds no BERT export or KerasHub preset"):
        bert_model.load_tokenizer(str(tmp_path))


@pytest.mark.parametrize("handle", ["kaggle://nobody/no-such-model/keras/tiny",
                                    "hf://nobody/no-such-model"])
def test_a_handle_without_network_fails_fast_in_one_line(handle, monkeypatch):
    """No network here (or a simulated one): one clear line within seconds, not after
    the hub clients' retries (hf:// alone retried for ~25 s)."""
    import socket

    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable (simulated)")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.time()
    with pytest.raises(TrainerError) as info:
        bert_model.load_tokenizer(handle)
    assert time.time() - start < 15
    message = str(info.value)
    assert "\n" not in message and handle in message and "unreachable" in message
