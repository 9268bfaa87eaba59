"""`causal_lm --data_dir` on windows prepared here (no download): a short run trains
from the shards and reports perplexity; a tokenizer mismatch fails in one line."""

import json
import os
import subprocess
import sys

import preloaded
from shards_helpers import lm_settings, write_corpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--num_layers=1", "--hidden_dim=32", "--num_heads=2", "--intermediate_dim=64",
        "--seq_length=16", "--global_batch_size=8", "--steps_per_loop=4", "--nojit_compile",
        "--train_steps=8", "--eval_every=0", "--optimizer=adam", "--learning_rate=1e-2",
        "--shuffle_buffer=64"]


def start(model_dir, data_dir, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return preloaded.Popen(
        [sys.executable, "-m", "trainers.causal_lm", f"--model_dir={model_dir}",
         f"--data_dir={data_dir}", *TINY, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_causal_lm_trains_from_shards_and_refuses_another_tokenizer(tmp_path):
    from trainers import prepare_pretraining_data as prep

    corpus = write_corpus(str(tmp_path / "corpus"), documents=40)
    data = str(tmp_path / "data")
    manifest = prep.prepare(data, lm_settings(corpus))["manifest"]
    good = start(tmp_path / "run", data, "--tokenizer=word")
    bad = start(tmp_path / "bad", data, "--tokenizer=wordpiece")
    out, err = good.communicate(timeout=600)
    assert good.returncode == 0, err[-3000:]
    records = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in records] == [0, 8]
    assert records[-1]["eval_loss"] < records[0]["eval_loss"]
    assert "eval_perplexity" in records[-1]
    summary = json.load(open(tmp_path / "run" / "summary.json"))
    m = json.load(open(manifest))
    assert summary["task"]["train_sequences"] == m["splits"]["train"]["examples"]
    assert summary["steps_per_epoch"] == max(1, m["splits"]["train"]["examples"] // 8)
    _, err = bad.communicate(timeout=600)
    assert bad.returncode == 1
    assert err.strip().splitlines()[-1].startswith(
        "error: --data_dir="), err[-2000:]
    assert "--tokenizer=word, not --tokenizer=wordpiece" in err
