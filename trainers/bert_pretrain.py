"""BERT masked-LM pretraining with ACClip or a baseline optimizer.

    python -m trainers.bert_pretrain --model_dir=runs/bert --optimizer=acclip \
        --model_size=tiny --train_steps=1000

See docs/trainers.md for the flags; the common ones are in
trainers/common/flags.py.
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

FLAGS = flags.FLAGS


def main(argv):
    del argv
    with shards_lib.corrupt_data_in_one_line(FLAGS.data_dir):
        runner.run(BertPretrainTask, FLAGS)


if __name__ == "__main__":
    cli.run(main)
