r"""SQuAD v1.1 fine-tuning of a pretrained BERT with ACClip or a baseline optimizer.

    python -m trainers.squad_finetune --model_dir=runs/squad \
        --init_checkpoint=bert_base_en_uncased --train_file=train-v1.1.json \
        --predict_file=dev-v1.1.json --optimizer=acclip

--init_checkpoint: a KerasHub preset (handle or directory) or a trainers.bert_pretrain run.

Without --train_file/--predict_file/--tfds it fine-tunes on a GENERATED
cloze task built from the pretraining corpus' held-out Wikipedia articles
(trainers/squad/cloze.py) -- a demo on real text, not SQuAD. See docs/squad.md.
"""

from absl import flags

from trainers.bert import flags as bert_flags
from trainers.common import cli
from trainers.common import flags as common_flags
from trainers.common import runner
from trainers.squad import cloze
from trainers.squad.task import SquadTask

common_flags.define_common_flags(global_batch_size=32, train_steps=2000, eval_every=0,
                                 checkpoint_every=500)
flags.DEFINE_enum("mode", "train_and_eval", runner.MODES,
                  "train_and_eval, train (no evaluation) or eval (the latest checkpoint).")
flags.DEFINE_string("train_file", None, "SQuAD v1.1 JSON for training (default: generated task).")
flags.DEFINE_string("predict_file", None,
                    "SQuAD v1.1 JSON to evaluate on (default: generated task).")
flags.DEFINE_string("tfds", None, "A prepared TFDS SQuAD dataset, e.g. squad/v1.1 "
                    "(train and validation splits), instead of the files.")
common_flags.define_once(
    flags.DEFINE_string, "init_checkpoint", None,
    "The pretrained BERT to fine-tune (weights only; the step starts at 0): a KerasHub preset "
    "handle (bert_base_en_uncased, kaggle://..., hf://...), a KerasHub preset directory, or "
    "a trainers.bert_pretrain model_dir or export. Its tokenizer gives the vocabulary and "
    "lowercasing. Without it: a fresh --model_size model.")
bert_flags.define_bert_model_flags(note="Fresh model (no --init_checkpoint): ")
common_flags.define_once(flags.DEFINE_string, "vocab_file", None,
                         "Fresh model: vocabulary file (else learned and saved to "
                         "model_dir/vocab.txt).")
common_flags.define_once(flags.DEFINE_integer, "vocab_size", 8192,
                         "Fresh model: WordPiece vocabulary size to learn.")
flags.DEFINE_integer("max_seq_length", 384, "Tokens per window.")
flags.DEFINE_integer("doc_stride", 128, "Tokens between the starts of a context's windows.")
flags.DEFINE_integer("max_query_length", 64, "Question tokens kept.")
flags.DEFINE_integer("n_best_size", 20, "Start/end candidates per window, answers in nbest.")
flags.DEFINE_integer("max_answer_length", 30, "Longest answer in tokens.")
common_flags.define_once(flags.DEFINE_string, "corpus", "wiki",
                         "Generated task: the pretraining --corpus.")
common_flags.define_once(flags.DEFINE_integer, "max_documents", 0,
                         "Generated task: the pretraining --max_documents (0: all).")
common_flags.define_once(flags.DEFINE_float, "eval_fraction", 0.1,
                         "Generated task: the pretraining --eval_fraction (questions come "
                         "only from its held-out articles).")
flags.DEFINE_integer("generated_train_max", 0, "Generated task: at most this many training "
                     "questions (0: all).")
flags.DEFINE_integer("generated_dev_max", 0, "Generated task: at most this many dev "
                     "questions (0: all).")
flags.DEFINE_integer("generated_per_paragraph", 2, "Generated task: questions per paragraph.")
flags.DEFINE_enum("generated_answers", "both", cloze.ANSWER_KINDS,
                  "Generated task: blank out numbers, capitalised names, or both.")
flags.DEFINE_integer("generated_context_chars", 0, "Generated task: contexts of the sentences "
                     "around the question that fit in this many characters (0: the paragraph).")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    runner.run(SquadTask, FLAGS, mode=FLAGS.mode)


if __name__ == "__main__":
    cli.run(main)
