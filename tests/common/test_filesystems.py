"""Every file a trainer reads or writes goes through tf.io.gfile: a whole run on
TensorFlow's in-memory filesystem (ram://, one per process, so in-process) --
train, resume, evaluate, export, and fine-tune from that export; and a model_dir
that cannot be a directory is one line."""

import json

import pytest
import tensorflow as tf

from squad_helpers import HANDWRITTEN
from trainers import bert_pretrain  # noqa: F401 - defines the flags
from trainers import squad_finetune  # noqa: F401 - defines the flags
from trainers.bert import model as bert_model
from trainers.bert.task import BertPretrainTask
from trainers.common import files, runner
from trainers.common.errors import TrainerError
from trainers.common.reporting import read_metrics
from trainers.squad.task import SquadTask
from conftest import parse_flags as parse, reset_absl_flags

SHARED = ["--global_batch_size=4", "--steps_per_loop=2", "--eval_every=2",
          "--checkpoint_every=2", "--optimizer=adam", "--learning_rate=1e-3",
          "--warmup_steps=0", "--lr_schedule=constant", "--strategy=one_device",
          "--nojit_compile", "--seed=0"]
BERT = ["--num_layers=1", "--hidden_dim=16", "--num_heads=2", "--intermediate_dim=32",
        "--seq_length=32", "--max_predictions_per_seq=4", "--dropout=0", "--eval_batches=2"]


@pytest.fixture(autouse=True)
def reset_flags():
    yield
    reset_absl_flags()


def read_json(path):
    return json.loads(files.read_text(path))


def test_a_run_on_ram_trains_resumes_evaluates_exports_and_finetunes(small_corpus, small_vocab,
                                                                     tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory must stay empty
    model_dir = "ram://runs/bert"
    pretrain = ["bert_pretrain", f"--model_dir={model_dir}", f"--corpus={small_corpus}",
                f"--vocab_file={small_vocab}", *SHARED, *BERT]
    first = runner.run(BertPretrainTask, parse(*pretrain, "--train_steps=2"))
    assert first["final_step"] == 2
    assert tf.train.latest_checkpoint(f"{model_dir}/checkpoints").endswith("ckpt-2")
    # Resume to step 4 from the ram:// checkpoint.
    second = runner.run(BertPretrainTask, parse(*pretrain, "--train_steps=4"))
    assert second["final_step"] == 4
    assert [r["step"] for r in read_metrics(model_dir)] == [0, 2, 4]
    # Evaluate the latest checkpoint again: the training facts stay in summary.json.
    evaluated = runner.run(BertPretrainTask, parse(*pretrain, "--train_steps=4"), mode="eval")
    assert evaluated["evaluated_checkpoint"].endswith("ckpt-4")
    summary = read_json(f"{model_dir}/summary.json")
    assert summary["final_step"] == 4 and summary["evaluated_checkpoint"].endswith("ckpt-4")
    config = read_json(f"{model_dir}/config.json")
    assert config["flags"]["model_dir"] == model_dir
    assert "--train_steps=4" in files.read_text(f"{model_dir}/flags.txt")
    assert files.glob(f"{model_dir}/tensorboard/events.*")
    assert files.exists(f"{model_dir}/vocab.txt")
    assert not [p for p in files.glob(f"{model_dir}/*") if ".tmp" in p]
    # The export is a KerasHub preset on ram:// that loads back...
    backbone, tokenizer, pre = bert_model.load_pretrained(model_dir)
    assert backbone.hidden_dim == 16 and pre["task"] == "bert_pretrain"
    # ... and SQuAD fine-tunes from it into another ram:// model_dir.
    squad_dir = "ram://runs/squad"
    f = parse("squad_finetune", f"--model_dir={squad_dir}", f"--init_checkpoint={model_dir}",
              "--train_steps=2", "--max_seq_length=32", "--doc_stride=16",
              "--max_query_length=8", f"--train_file={HANDWRITTEN}",
              f"--predict_file={HANDWRITTEN}", *SHARED, "--eval_batches=0")
    squad = runner.run(SquadTask, f)
    assert squad["final_step"] == 2 and "f1" in squad["eval"]
    assert files.exists(f"{squad_dir}/predictions.json")
    assert read_json(f"{squad_dir}/summary.json")["task"]["vocab_size"] == len(
        tokenizer.get_vocabulary())
    assert not list(tmp_path.iterdir())  # nothing local: no "ram:" folder, no "runs"


def test_save_keras_model_to_ram():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    files.save_keras_model(model, "ram://saved/export/model.keras")
    with files.LocalCopy("ram://saved/export") as local:
        import os

        loaded = keras.saving.load_model(os.path.join(local, "model.keras"))
    assert loaded.output_shape == (None, 2)


def test_model_dir_that_is_a_file_is_one_line(tmp_path, small_corpus, small_vocab):
    path = tmp_path / "taken"
    path.write_text("a file")
    f = parse("bert_pretrain", f"--model_dir={path}", f"--corpus={small_corpus}",
              f"--vocab_file={small_vocab}", "--train_steps=2", *SHARED, *BERT)
    with pytest.raises(TrainerError, match="exists and is a file, not a directory"):
        runner.run(BertPretrainTask, f)


def test_model_dir_under_a_file_is_one_line(tmp_path):
    path = tmp_path / "taken"
    path.write_text("a file")
    with pytest.raises(TrainerError, match="cannot create --model_dir"):
        files.makedirs(str(path / "run"))


def test_a_files_corpus_and_a_vocabulary_on_ram():
    from trainers.common.text import corpus as corpus_lib
    from trainers.common.text import vocab as vocab_lib

    docs = [["first paragraph of one", "second"], ["another document"]]
    corpus_lib.write_documents("ram://corpus/a.txt", docs)
    corpus_lib.write_documents("ram://corpus/b.txt", docs[:1])
    assert corpus_lib.load_corpus("files:ram://corpus/*.txt") == docs + docs[:1]
    vocab = list(vocab_lib.SPECIAL_TOKENS) + ["a", "##b"]
    vocab_lib.save_vocabulary(vocab, "ram://corpus/vocab.txt")
    assert vocab_lib.load_vocabulary("ram://corpus/vocab.txt") == vocab
    assert vocab_lib.run_vocabulary(None, "ram://corpus", True, None) == vocab
