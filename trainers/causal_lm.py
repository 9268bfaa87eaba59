r"""Causal (next-token) language-model training with ACClip or a baseline optimizer:
the paper's section 5.1 (a 6-layer Transformer-XL on PTB, target length 128),
scaled to the host, with a GPT-2-style KerasHub decoder.

    python -m trainers.causal_lm --model_dir=runs/lm --optimizer=adam \
        --learning_rate=1e-3 --model_size=tiny --seq_length=64 --train_steps=1000

Reports held-out loss (nats per token), perplexity and next-token accuracy per
evaluation. See docs/trainers.md ("Causal LM") for the flags; the common ones
are the fields of trainers/common/config.py.
"""

from absl import flags

from trainers.common import cli
from trainers.common import config
from trainers.common import flags as common_flags
from trainers.common import runner
from trainers.common.text import shards as shards_lib
from trainers.lm.config import LMConfig
from trainers.lm.task import CausalLMTask

common_flags.define_common_flags()
config.define_flags(LMConfig)

FLAGS = flags.FLAGS


def main(argv):
    del argv
    with shards_lib.corrupt_data_in_one_line(FLAGS.data_dir):
        runner.run(CausalLMTask, FLAGS)


if __name__ == "__main__":
    cli.run(main)
