"""The causal LM `Task`: next-token cross-entropy over fixed windows.

Reported per evaluation (eval_ prefix in metrics.jsonl): ``loss`` (nats per
token over the held-out split), ``accuracy`` (next-token top-1) and
``perplexity`` (exp of that loss, `Task.derived_metrics`).
"""

import math

import numpy as np
import tensorflow as tf

import acclip_tf
from trainers.common.errors import TrainerError
from trainers.common.task import DataObjectTask
from trainers.common.text import corpus as corpus_lib
from trainers.common.text import shards as shards_lib
from trainers.common.text import vocab as vocab_lib
from trainers.lm import data as lm_data
from trainers.lm.config import LMConfig
from trainers.lm import model as lm_model


def learn_vocabulary(train_documents, tokenizer, vocab_size):
    if tokenizer == "word":
        print(f"word vocabulary of {vocab_size} tokens from the training split ...", flush=True)
        return lm_data.word_vocabulary(train_documents, vocab_size)
    return vocab_lib.corpus_vocabulary(train_documents, vocab_size)


def bucket_losses(ce, weights, targets, buckets, k):
    """{"loss_bucket<i>": (sum of ce over the targets in bucket i, their weight)} for
    i < k (`buckets`: int [vocab] -> 0..k-1, `lm_data.frequency_buckets`)."""
    of_target = tf.gather(tf.constant(buckets, tf.int32), targets)
    flat = tf.reshape(of_target, [-1])
    sums = tf.math.unsorted_segment_sum(tf.reshape(ce * weights, [-1]), flat, k)
    counts = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), flat, k)
    return {f"loss_bucket{i}": (sums[i], counts[i]) for i in range(k)}


class CausalLMTask(DataObjectTask):
    weight_decay_exclude = acclip_tf.BERT_WEIGHT_DECAY_EXCLUDE
    example_name = "sequences"
    # The tuned ladder's choices (docs/evidence.md, section 0, 2026-11-30: the tiny
    # decoder, word vocabulary 8192, 64-token windows, batch 32, warm-up 50; chosen on
    # the validation split by 200-step screens for a 400-step budget), used where
    # --learning_rate / --tau are not given. Other sizes, batches or budgets may want
    # others: `python -m trainers.sweep --program=causal_lm` finds them.
    optimizer_settings = {
        "sgd": {"learning_rate": 0.1},
        "gclip": {"learning_rate": 3.0, "tau": 0.1},
        "adam": {"learning_rate": 0.009},
        "acclip_norm": {"learning_rate": 1e-3},
        "acclip": {"learning_rate": 1.0},
        "cclip": {"learning_rate": 3.0, "tau": 3e-4},
    }

    config_class = LMConfig

    def __init__(self, experiment, model_dir, is_chief):
        """`experiment`: a `trainers.common.config.ExperimentConfig` whose task is an
        `LMConfig` (the task reads its own settings and the run's seed)."""
        lm = self.settings = experiment.task
        self.seed = experiment.run.seed
        self.config = lm_model.model_config(
            lm.model_size, lm.num_layers, lm.hidden_dim, lm.num_heads, lm.intermediate_dim)
        if lm.data_dir:
            return self._prepared_input(lm, experiment.run, model_dir, is_chief)
        documents = corpus_lib.load_corpus(lm.corpus, lm.max_documents or None)
        splits = lm_data.split_documents(documents, lm.eval_fraction, seed=0)
        train_docs, eval_docs = splits["train"], splits[lm.eval_split]
        self.vocab = vocab_lib.run_vocabulary(
            lm.vocab_file, model_dir, is_chief,
            lambda: learn_vocabulary(train_docs, lm.tokenizer, lm.vocab_size))
        lm_data.check_vocabulary(self.vocab, lm.tokenizer)
        sep = self.vocab.index(lm_data.SEPARATOR)
        train_stream = lm_data.token_stream(lm_data.encode(train_docs, self.vocab, lm.tokenizer), sep)
        eval_stream = lm_data.token_stream(lm_data.encode(eval_docs, self.vocab, lm.tokenizer), sep)
        self.data = lm_data.CausalLMData(lm_data.windows(train_stream, lm.seq_length),
                                         lm_data.windows(eval_stream, lm.seq_length), self.seed,
                                         train_subset=lm.train_windows)
        self.data.check_sizes(lm.eval_split)
        self.num_buckets = lm.frequency_buckets
        self.buckets = (self.data.target_buckets(len(self.vocab), self.num_buckets)
                        if self.num_buckets else None)
        unk = self.vocab.index(lm_data.UNKNOWN)
        self.facts = dict(
            corpus=lm.corpus, documents=len(documents), train_documents=len(train_docs),
            eval_split=lm.eval_split, eval_documents=len(eval_docs), tokenizer=lm.tokenizer,
            vocab_size=len(self.vocab), train_tokens=int(len(train_stream)),
            eval_tokens=int(len(eval_stream)),
            train_unk_rate=round(float(np.mean(train_stream == unk)), 5),
            eval_unk_rate=round(float(np.mean(eval_stream == unk)), 5),
            train_sequences=len(self.data.train_windows),
            frequency_buckets=self.num_buckets,
            eval_sequences=len(self.data.eval_windows), seq_length=lm.seq_length,
            model_size=lm.model_size, dropout=lm.dropout, **self.config)
        print("data: " + ", ".join(f"{k} {v}" for k, v in self.facts.items()), flush=True)

    def _prepared_input(self, lm, run, model_dir, is_chief):
        """Stream the windows of `lm.data_dir` (trainers.prepare_pretraining_data)."""
        for name, value in (("train_windows", lm.train_windows),
                            ("frequency_buckets", lm.frequency_buckets),
                            ("fixed_train_examples", run.fixed_train_examples)):
            if value:
                raise TrainerError(f"--{name} needs the in-memory corpus (--corpus), not "
                                   "prepared shards (--data_dir)")
        self.buckets, self.num_buckets = None, 0
        manifest, self.vocab = shards_lib.open_prepared(
            lm.data_dir, layout="causal_lm", seq_length=lm.seq_length, program="causal_lm",
            vocab_file=lm.vocab_file, model_dir=model_dir, is_chief=is_chief,
            tokenizer=lm.tokenizer)
        self.data = lm_data.ShardedCausalLMData(lm.data_dir, manifest, lm.eval_split, self.seed,
                                                lm.shuffle_buffer)
        self.data.check_sizes(lm.eval_split)
        self.facts = dict(shards_lib.facts(manifest, lm.data_dir, lm.eval_split),
                          model_size=lm.model_size, dropout=lm.dropout, **self.config)
        print("data: " + ", ".join(f"{k} {v}" for k, v in self.facts.items()), flush=True)

    def build_model(self):
        self.model, self.backbone = lm_model.build_causal_lm(
            self.config, len(self.vocab), self.settings.seq_length, self.settings.dropout)
        return self.model

    def steps_per_epoch(self, global_batch_size):
        if isinstance(self.data, lm_data.ShardedCausalLMData):
            return self.data.steps_per_epoch(global_batch_size)
        return max(1, len(self.data.train_windows) // global_batch_size)

    def _token_losses(self, model, batch, training):
        """(cross-entropy [B, L], correct [B, L], weights [B, L]) of next-token prediction."""
        tokens = batch["tokens"]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        logits = model({"token_ids": inputs, "padding_mask": tf.ones_like(inputs)},
                       training=training)
        logits = tf.cast(logits, tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), targets),
                          tf.float32)
        weights = tf.broadcast_to(tf.cast(batch["weights"], tf.float32)[:, None], tf.shape(ce))
        return ce, correct, weights

    def forward(self, model, batch, training):
        ce, correct, weights = self._token_losses(model, batch, training)
        total = tf.reduce_sum(weights)
        out = {"loss": (tf.reduce_sum(ce * weights), total),
               "accuracy": (tf.reduce_sum(correct * weights), total)}
        if self.buckets is not None and not training:
            out.update(bucket_losses(ce, weights, batch["tokens"][:, 1:], self.buckets,
                                     self.num_buckets))
        return out

    def derived_metrics(self, results):
        loss = results.get("loss", float("nan"))
        return {"perplexity": math.exp(loss) if math.isfinite(loss) and loss < 700
                else float("inf")}

    def export(self, model, export_dir):
        lm_model.export(self.backbone, self.vocab, export_dir,
                        dict(self.facts, task="causal_lm"))

    def summary(self):
        return self.facts
