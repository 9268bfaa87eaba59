r"""BERT masked-LM pretraining with ACClip or a baseline optimizer.

    python -m trainers.bert_pretrain --model_dir=runs/bert --optimizer=acclip \
        --model_size=tiny --train_steps=1000

See docs/trainers.md for the flags; the common ones are the
fields of trainers/common/config.py.
"""


from absl import flags

from trainers.bert.config import BertConfig
from trainers.bert.task import BertPretrainTask
from trainers.common import cli
from trainers.common import config
from trainers.common import flags as common_flags
from trainers.common import runner
from trainers.common.text import shards as shards_lib

common_flags.define_common_flags()
config.define_flags(BertConfig)

FLAGS = flags.FLAGS


def main(argv):
    del argv
    with shards_lib.corrupt_data_in_one_line(FLAGS.data_dir):
        runner.run(BertPretrainTask, FLAGS)


if __name__ == "__main__":
    cli.run(main)
