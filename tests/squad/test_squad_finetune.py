"""End to end: tiny BERT pretraining -> SQuAD-format fine-tuning on the generated
cloze task (real Wikipedia text, NOT SQuAD) -> EM/F1 reports; CLI errors."""

import glob
import json
import os

import pytest

from conftest import REPO, run_trainer

FINETUNE_FLAGS = [
    "--max_seq_length=128", "--doc_stride=64", "--max_query_length=32",
    "--global_batch_size=8", "--optimizer=adam", "--learning_rate=1e-3", "--warmup_steps=20",
    "--generated_answers=numbers", "--generated_per_paragraph=6",
    "--generated_context_chars=300", "--generated_dev_max=100",
    "--nojit_compile",  # XLA is tested on BERT's one-device run; here it cost 17 % more CPU
]


def run_module(module, *args, check=True):
    return run_trainer(list(args), module=module, check=check)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny BERT from trainers.bert_pretrain (a few dozen steps on a corpus subset)."""
    from squad_helpers import corpus_vocabulary
    from trainers.common.text import corpus as corpus_lib
    from trainers.common.text import vocab as vocab_lib

    model_dir = str(tmp_path_factory.mktemp("bert"))
    # Learning a WordPiece vocabulary takes half a minute here; a frequent-word one does not.
    texts = [p for d in corpus_lib.load_corpus("wiki", 20) for p in d]
    vocab_file = os.path.join(model_dir, "given_vocab.txt")
    vocab_lib.save_vocabulary(corpus_vocabulary(texts, 3000), vocab_file)
    run_module("trainers.bert_pretrain", f"--model_dir={model_dir}", "--model_size=tiny",
               "--max_documents=20", f"--vocab_file={vocab_file}", "--seq_length=128",
               "--train_steps=30", "--steps_per_loop=30", "--eval_every=0",
               "--eval_batches=1", "--global_batch_size=16", "--optimizer=adam",
               "--learning_rate=1e-3", "--nojit_compile")
    return model_dir


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_finetuning_raises_held_out_f1_and_reports_it(pretrained, tmp_path):
    model_dir = str(tmp_path / "squad")
    run_module("trainers.squad_finetune", f"--model_dir={model_dir}",
               f"--init_checkpoint={pretrained}", "--train_steps=200", "--steps_per_loop=100",
               *FINETUNE_FLAGS)
    records = read_jsonl(os.path.join(model_dir, "metrics.jsonl"))
    assert [r["step"] for r in records] == [0, 200]
    before, after = records[0], records[-1]
    # Untrained span head on the pretrained backbone vs. after 200 steps.
    assert after["eval_f1"] >= before["eval_f1"] + 10.0, (before, after)
    assert after["eval_exact_match"] > before["eval_exact_match"]

    with open(os.path.join(model_dir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["final_step"] == 200
    assert summary["eval"]["f1"] == pytest.approx(after["eval_f1"])
    assert "NOT SQuAD" in summary["task"]["data"]
    assert summary["task"]["init_checkpoint"] == pretrained
    with open(os.path.join(model_dir, "predictions.json")) as f:
        predictions = json.load(f)
    with open(os.path.join(model_dir, "nbest_predictions.json")) as f:
        nbest = json.load(f)
    with open(os.path.join(model_dir, "generated_cloze", "dev.json")) as f:
        dev = json.load(f)
    ids = [q["id"] for a in dev["data"] for p in a["paragraphs"] for q in p["qas"]]
    assert sorted(predictions) == sorted(ids) and len(ids) > 50
    assert all(isinstance(v, str) for v in predictions.values())
    assert all(nbest[i][0]["text"] == predictions[i] for i in ids if nbest[i])

    import tensorflow as tf

    tags = set()
    for path in glob.glob(os.path.join(model_dir, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert {"eval/f1", "eval/exact_match"} <= tags

    # --mode=eval: the latest checkpoint, evaluated again, gives the same numbers.
    run_module("trainers.squad_finetune", f"--model_dir={model_dir}",
               f"--init_checkpoint={pretrained}", "--mode=eval", *FINETUNE_FLAGS)
    again = read_jsonl(os.path.join(model_dir, "metrics.jsonl"))[-1]
    assert again["step"] == 200
    assert again["eval_f1"] == pytest.approx(after["eval_f1"], abs=1e-6)
    assert again["eval_exact_match"] == pytest.approx(after["eval_exact_match"], abs=1e-6)
    with open(os.path.join(model_dir, "summary.json")) as f:
        evaluated = json.load(f)
    # The training facts stay; the evaluation and the checkpoint it read are recorded.
    assert evaluated["windows_per_second"] == summary["windows_per_second"] > 0
    assert evaluated["eval"]["f1"] == pytest.approx(after["eval_f1"], abs=1e-6)
    assert evaluated["evaluated_checkpoint"].endswith("ckpt-200")


def test_cli_bad_prediction_file_is_one_line_naming_the_id(tmp_path):
    data = json.load(open(os.path.join(REPO, "tests", "data", "squad_handwritten.json")))
    good = tmp_path / "train.json"
    good.write_text(json.dumps(data))
    data["data"][1]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 3
    bad = tmp_path / "dev.json"
    bad.write_text(json.dumps(data))
    proc = run_module("trainers.squad_finetune", f"--model_dir={tmp_path / 'run'}",
                      f"--train_file={good}", f"--predict_file={bad}", "--model_size=tiny",
                      "--vocab_size=200", check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "question 'b-author'" in last
    assert "does not match its text 'Anna K. Varga'" in last
    assert "Traceback" not in proc.stderr
