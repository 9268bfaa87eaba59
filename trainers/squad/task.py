"""SQuAD v1.1 fine-tuning of a (pretrained) BERT as a `trainers.common.task.Task`."""

import numpy as np

import acclip_tf
from trainers.bert import model as bert_model
from trainers.common import cli
from trainers.common import files
from trainers.common.inputs import per_replica
from trainers.common.task import PredictionEvaluation, Task
from trainers.common.text import vocab as vocab_lib
from trainers.squad import cloze
from trainers.squad import data as squad_lib
from trainers.squad import features as squad_features
from trainers.squad import metrics as squad_metrics
from trainers.squad import model as squad_model
from trainers.squad import postprocess as squad_postprocess
from trainers.squad.config import SquadConfig


def load_sets(f, seed, model_dir, is_chief):
    """(train SquadSet, predict SquadSet, data description) of a `SquadConfig` `f`."""
    if f.tfds:
        if f.train_file or f.predict_file:
            raise cli.TrainerError("pass either --tfds or --train_file/--predict_file")
        train = squad_lib.parse_squad(squad_lib.tfds_as_squad_json(f.tfds, "train"),
                                      f"tfds:{f.tfds}/train", strict=False)
        dev = squad_lib.parse_squad(squad_lib.tfds_as_squad_json(f.tfds, "validation"),
                                    f"tfds:{f.tfds}/validation", strict=True)
        return train, dev, f"tfds:{f.tfds}"
    if bool(f.train_file) != bool(f.predict_file):
        raise cli.TrainerError("pass both --train_file and --predict_file (or neither, for the "
                               "generated demo task)")
    if f.train_file:
        return (squad_lib.load_squad_file(f.train_file, strict=False),
                squad_lib.load_squad_file(f.predict_file, strict=True), "squad-format files")
    description = f"generated cloze task on held-out {f.corpus} articles (NOT SQuAD)"
    paths = [files.join(model_dir, "generated_cloze", n) for n in ("train.json", "dev.json")]
    if all(files.exists(p) for p in paths):  # made by an earlier run in this model_dir
        return (squad_lib.load_squad_file(paths[0], strict=False),
                squad_lib.load_squad_file(paths[1], strict=True), description)
    print("data: GENERATING a cloze QA task from the held-out Wikipedia articles of "
          f"--corpus={f.corpus} (a generated task on real text, NOT SQuAD)", flush=True)
    sets = cloze.generated_sets(f.corpus, f.eval_fraction, seed=seed,
                                max_train=f.generated_train_max, max_dev=f.generated_dev_max,
                                per_paragraph=f.generated_per_paragraph,
                                max_context_chars=f.generated_context_chars,
                                kinds=f.generated_answers,
                                max_documents=f.max_documents or None)
    if is_chief:  # every worker generates the same sets; the chief keeps them
        files.makedirs(files.dirname(paths[0]), what="the generated task's folder")
        for obj, path in zip(sets, paths):
            squad_lib.write_json(obj, path)
    return (squad_lib.parse_squad(sets[0], paths[0], strict=False),
            squad_lib.parse_squad(sets[1], paths[1], strict=True), description)


def fresh_vocabulary(f, model_dir, is_chief, train_set):
    """--vocab_file, else the run's vocab.txt, else WordPiece from the training set's text."""
    def learn():
        contexts = list(dict.fromkeys(e.context for e in train_set.examples))
        return vocab_lib.build_vocabulary(contexts + [e.question for e in train_set.examples],
                                          f.vocab_size)

    return vocab_lib.run_vocabulary(f.vocab_file, model_dir, is_chief, learn)


class SquadTask(Task, PredictionEvaluation):
    weight_decay_exclude = acclip_tf.BERT_WEIGHT_DECAY_EXCLUDE
    example_name = "windows"

    config_class = SquadConfig
    run_defaults = dict(global_batch_size=32, train_steps=2000, eval_every=0,
                        checkpoint_every=500)  # the shared settings' defaults for SQuAD

    def __init__(self, experiment, model_dir, is_chief):
        """`experiment`: a `trainers.common.config.ExperimentConfig` whose task is a
        `SquadConfig` (the task reads its own settings, the run's seed and batch)."""
        f = self.settings = experiment.task
        self.seed = experiment.run.seed
        self.model_dir, self.is_chief = model_dir, is_chief
        self.train_set, self.dev_set, description = load_sets(f, self.seed, model_dir,
                                                              is_chief)
        if self.train_set.skipped:
            print("warning: " + self.train_set.skipped_line(), flush=True)
        if f.init_checkpoint:  # a bert_pretrain run, a preset directory or a preset handle
            keras_tokenizer = bert_model.load_tokenizer(f.init_checkpoint)
            self.config = None
        else:
            self.config = bert_model.model_config(
                f.model_size, f.num_layers, f.hidden_dim, f.num_heads, f.intermediate_dim)
            keras_tokenizer = vocab_lib.make_tokenizer(
                fresh_vocabulary(f, model_dir, is_chief, self.train_set))
        self.vocab_size = keras_tokenizer.vocabulary_size()
        tokenizer = squad_features.OffsetTokenizer.like(keras_tokenizer)
        shape = dict(max_seq_length=f.max_seq_length, doc_stride=f.doc_stride,
                     max_query_length=f.max_query_length)
        self.train = squad_features.build_features(self.train_set.examples, tokenizer,
                                                   training=True, **shape)
        self.dev = squad_features.build_features(self.dev_set.examples, tokenizer, **shape)
        if self.train.skipped:
            print(f"warning: skipped {len(self.train.skipped)} training question(s) whose "
                  f"answer covers no token: {self.train.skipped[:5]}", flush=True)
        batch = experiment.run.global_batch_size
        if len(self.train) < batch:
            raise cli.TrainerError(f"the training set makes {len(self.train)} windows, fewer "
                                   f"than --global_batch_size={batch}")
        self.gold = self.dev_set.gold_answers()
        self.facts = dict(
            data=description, train_questions=len(self.train_set.examples),
            train_skipped=len(self.train_set.skipped) + len(self.train.skipped),
            train_windows=len(self.train), eval_questions=len(self.dev_set.examples),
            eval_windows=len(self.dev), vocab_size=self.vocab_size,
            init_checkpoint=f.init_checkpoint, model_size=None if f.init_checkpoint
            else f.model_size, **shape)
        print("data: " + ", ".join(f"{k} {v}" for k, v in self.facts.items()), flush=True)

    # ------------------------------------------------------------ model
    def build_model(self):
        import keras_hub

        f = self.settings
        if f.init_checkpoint:
            backbone = bert_model.load_backbone(f.init_checkpoint)
        else:
            backbone = keras_hub.models.BertBackbone(
                vocabulary_size=self.vocab_size, dropout=f.dropout,
                max_sequence_length=f.max_seq_length, **self.config)
        if f.max_seq_length > backbone.max_sequence_length:
            raise cli.TrainerError(
                f"--max_seq_length={f.max_seq_length} exceeds the pretrained backbone's "
                f"{backbone.max_sequence_length} positions (pretrain with a longer "
                "--seq_length or lower --max_seq_length)")
        return squad_model.build_span_model(backbone, f.max_seq_length)

    # ------------------------------------------------------------ data
    def _arrays(self, features, pad_to=0):
        arrays = dict(features.model_arrays())
        n = len(features)
        arrays["weight"] = np.ones([n], np.float32)
        arrays["feature_index"] = np.arange(n, dtype=np.int32)
        extra = (-n) % pad_to if pad_to else 0
        if extra:
            arrays = {k: np.concatenate([v, np.zeros((extra,) + v.shape[1:], v.dtype)])
                      for k, v in arrays.items()}
            arrays["feature_index"][n:] = -1
        return arrays

    def train_dataset(self, input_context, global_batch_size, start_batch):
        import tensorflow as tf

        arrays = {k: tf.constant(v) for k, v in self._arrays(self.train).items()}
        n = len(self.train)
        ds = (tf.data.Dataset.range(n)
              .shuffle(n, seed=self.seed, reshuffle_each_iteration=True)
              .repeat()
              .skip(start_batch * global_batch_size)
              .map(lambda i: {k: tf.gather(v, i) for k, v in arrays.items()}))
        return per_replica(ds, input_context, global_batch_size).prefetch(tf.data.AUTOTUNE)

    def eval_dataset(self, input_context, global_batch_size):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(
            self._arrays(self.dev, pad_to=global_batch_size)).repeat()
        return per_replica(ds, input_context, global_batch_size).prefetch(tf.data.AUTOTUNE)

    def eval_steps(self, global_batch_size):
        return -(-len(self.dev) // global_batch_size)

    # ------------------------------------------------------------ loss, predictions
    def forward(self, model, batch, training):
        import tensorflow as tf

        out = model({k: batch[k] for k in squad_model.INPUTS}, training=training)
        weight = batch["weight"]
        losses = []
        correct = 1.0
        for name, key in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
            logits = tf.cast(out[name], tf.float32)
            losses.append(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=batch[key], logits=logits))
            correct *= tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                        batch[key]), tf.float32)
        total = tf.reduce_sum(weight)
        return {"loss": (tf.reduce_sum(0.5 * (losses[0] + losses[1]) * weight), total),
                "span_accuracy": (tf.reduce_sum(correct * weight), total)}

    def predict(self, model, batch):
        out = model({k: batch[k] for k in squad_model.INPUTS}, training=False)
        return {"feature_index": batch["feature_index"], "start_logits": out["start_logits"],
                "end_logits": out["end_logits"]}

    def evaluate_predictions(self, outputs, step):
        n = len(self.dev)
        index = outputs["feature_index"]
        keep = index >= 0
        start = np.zeros([n, self.settings.max_seq_length], np.float32)
        end = np.zeros_like(start)
        start[index[keep]] = outputs["start_logits"][keep]
        end[index[keep]] = outputs["end_logits"][keep]
        if len(set(index[keep].tolist())) != n:
            raise RuntimeError(f"the prediction pass covered {keep.sum()} of {n} windows")
        predictions, nbest = squad_postprocess.postprocess(
            self.dev_set.examples, self.dev, start, end, self.settings.n_best_size,
            self.settings.max_answer_length)
        if self.is_chief:
            squad_lib.write_json(predictions, files.join(self.model_dir, "predictions.json"))
            squad_lib.write_json(nbest, files.join(self.model_dir, "nbest_predictions.json"))
        return squad_metrics.evaluate(self.gold, predictions)

    def summary(self):
        return self.facts
