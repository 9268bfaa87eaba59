"""BERT masked-LM pretraining as a `trainers.common.task.Task`."""

import acclip_tf
from trainers.bert import mlm
from trainers.bert import model as bert_model
from trainers.bert.config import BertConfig
from trainers.common import cli
from trainers.common.task import DataObjectTask
from trainers.common.text import corpus as corpus_lib
from trainers.common.text import shards as shards_lib
from trainers.common.text import vocab as vocab_lib


class BertPretrainTask(DataObjectTask):
    weight_decay_exclude = acclip_tf.BERT_WEIGHT_DECAY_EXCLUDE
    example_name = "sequences"
    # The BERT family's settings without --learning_rate/--tau (trainers.sweep
    # --family_settings runs them): the Table 2 sweep's choices for the tiny model at batch 32 (docs/evidence.md,
    # "Table 2 on BERT"). GClip and CClip were not swept on BERT: the EMA-momentum
    # equivalent of SGD's 0.3 (steps of lr, not lr / (1 - 0.9)), the rate Algorithm 1
    # chose too, with the optimizers' default tau.
    optimizer_settings = {
        "sgd": {"learning_rate": 0.3},
        "gclip": {"learning_rate": 3.0},
        "cclip": {"learning_rate": 3.0},
        "acclip": {"learning_rate": 3.0},
        "acclip_norm": {"learning_rate": 1e-3},
        "adam": {"learning_rate": 1e-3},
    }

    config_class = BertConfig

    def __init__(self, experiment, model_dir, is_chief):
        """`experiment`: a `trainers.common.config.ExperimentConfig` whose task is a
        `BertConfig` (the task reads its own settings, the run's seed and batch size)."""
        bert = self.settings = experiment.task
        run = experiment.run
        self.seed = run.seed
        self.config = bert_model.model_config(
            bert.model_size, bert.num_layers, bert.hidden_dim, bert.num_heads,
            bert.intermediate_dim)
        self.init_checkpoint = bert.init_checkpoint
        if bert.data_dir:
            if self.init_checkpoint:
                raise cli.TrainerError(
                    "--init_checkpoint with --data_dir is not supported: prepared data carries "
                    "its own vocabulary; continue pretraining from the corpus (--corpus)")
            if run.fixed_train_examples:
                raise cli.TrainerError("--fixed_train_examples needs the in-memory corpus "
                                       "(--corpus), not prepared shards (--data_dir)")
            return self._prepared_input(bert, run, model_dir, is_chief)
        documents = corpus_lib.load_corpus(bert.corpus, bert.max_documents or None)
        train_docs, validation_docs, test_docs = corpus_lib.split_documents(
            documents, bert.eval_fraction, seed=0, with_test=True)
        eval_split = bert.eval_split
        eval_docs = test_docs if eval_split == "test" else validation_docs
        if not eval_docs:
            raise cli.TrainerError(
                f"--eval_split={eval_split}: the {len(validation_docs) + len(test_docs)} "
                "held-out document(s) leave none for it; raise --eval_fraction or use more "
                "documents")
        if self.init_checkpoint:  # continued pretraining: the preset's vocabulary and casing
            tokenizer = bert_model.load_tokenizer(self.init_checkpoint)
            self.vocab = vocab_lib.check_special_tokens(
                tokenizer.get_vocabulary(), f"the tokenizer of {self.init_checkpoint}")
            self.lowercase = tokenizer.lowercase
            self.config = {}
        else:
            self.vocab = vocab_lib.run_vocabulary(
                bert.vocab_file, model_dir, is_chief,
                lambda: vocab_lib.corpus_vocabulary(train_docs, bert.vocab_size))
            self.lowercase = True
            tokenizer = vocab_lib.make_tokenizer(self.vocab)
        train = mlm.segment_documents(train_docs, tokenizer, bert.seq_length)
        held = mlm.segment_documents(eval_docs, tokenizer, bert.seq_length)
        self.data = mlm.MaskedLMData(train, held, self.vocab, self.seed,
                                     bert.max_predictions_per_seq, bert.mask_rate)
        self.data.check_sizes(run.global_batch_size)
        self.facts = dict(corpus=bert.corpus, documents=len(documents),
                          train_documents=len(train_docs), eval_split=eval_split,
                          eval_documents=len(eval_docs),
                          train_sequences=len(train), eval_sequences=len(held),
                          vocab_size=len(self.vocab), seq_length=bert.seq_length,
                          max_predictions_per_seq=bert.max_predictions_per_seq,
                          model_size=None if self.init_checkpoint else bert.model_size,
                          dropout=bert.dropout, init_checkpoint=self.init_checkpoint,
                          **self.config)
        print("data: " + ", ".join(f"{k} {v}" for k, v in self.facts.items()), flush=True)

    def _prepared_input(self, bert, run, model_dir, is_chief):
        """Stream the segments of `bert.data_dir` (trainers.prepare_pretraining_data)."""
        eval_split = bert.eval_split
        self.lowercase = True  # the preparation's tokenizer lowercases, as the trainer's does
        manifest, self.vocab = shards_lib.open_prepared(
            bert.data_dir, layout="mlm", seq_length=bert.seq_length, program="bert_pretrain",
            vocab_file=bert.vocab_file, model_dir=model_dir, is_chief=is_chief)
        self.data = mlm.ShardedMaskedLMData(
            bert.data_dir, manifest, eval_split, self.vocab, self.seed, bert.max_predictions_per_seq,
            bert.mask_rate, bert.shuffle_buffer)
        self.data.check_sizes(run.global_batch_size)
        self.facts = dict(shards_lib.facts(manifest, bert.data_dir, eval_split),
                          max_predictions_per_seq=bert.max_predictions_per_seq,
                          model_size=bert.model_size, dropout=bert.dropout, **self.config)
        print("data: " + ", ".join(f"{k} {v}" for k, v in self.facts.items()), flush=True)

    def build_model(self):
        if self.init_checkpoint:
            self.model, self.backbone = bert_model.pretrained_masked_lm(
                self.init_checkpoint, self.settings.seq_length)
        else:
            self.model, self.backbone = bert_model.build_masked_lm(
                self.config, len(self.vocab), self.settings.seq_length, self.settings.dropout)
        return self.model

    def forward(self, model, batch, training):
        import tensorflow as tf

        inputs = {k: batch[k] for k in ("token_ids", "padding_mask", "segment_ids",
                                         "mask_positions")}
        logits = tf.cast(model(inputs, training=training), tf.float32)
        labels = batch["mask_ids"]
        weights = batch["mask_weights"]
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                          tf.float32)
        total = tf.reduce_sum(weights)
        return {"loss": (tf.reduce_sum(ce * weights), total),
                "accuracy": (tf.reduce_sum(correct * weights), total)}

    def export(self, model, export_dir):
        bert_model.export(self.backbone, self.vocab, export_dir,
                          dict(self.facts, task="bert_pretrain"), lowercase=self.lowercase)

    def summary(self):
        return self.facts
