r"""BERT masked-LM pretraining with ACClip or a baseline optimizer.

    python -m trainers.bert_pretrain --model_dir=runs/bert --optimizer=acclip \
        --model_size=tiny --train_steps=1000

See docs/trainers.md for the flags; the common ones are the
fields of trainers/common/config.py.
"""


from absl import flags

from trainers.bert import flags as bert_flags
from trainers.bert.task import BertPretrainTask
from trainers.common import cli
from trainers.common import flags as common_flags
from trainers.common import runner
from trainers.common.text import shards as shards_lib

common_flags.define_common_flags()
bert_flags.define_bert_model_flags()
bert_flags.define_mlm_data_flags()
common_flags.define_eval_split_flag()
shards_lib.define_flags()
common_flags.define_once(
    flags.DEFINE_string, "init_checkpoint", None,
    "Continue pretraining from this BERT (weights only; the step starts at 0): a "
    "bert_pretrain model_dir or export, a KerasHub preset directory, or a preset handle "
    "(bert_base_en_uncased, kaggle://..., hf://...). Its vocabulary and lowercasing replace "
    "--vocab_file/--vocab_size and its shape the size flags; the masked-LM head is new.")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    with shards_lib.corrupt_data_in_one_line(FLAGS.data_dir):
        runner.run(BertPretrainTask, FLAGS)


if __name__ == "__main__":
    cli.run(main)
