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

from trainers.common import cli
from trainers.common import config
from trainers.common import flags as common_flags
from trainers.common import runner
from trainers.squad.config import SquadConfig
from trainers.squad.task import SquadTask

common_flags.define_common_flags(**SquadTask.run_defaults)
flags.DEFINE_enum("mode", "train_and_eval", runner.MODES,
                  "train_and_eval, train (no evaluation) or eval (the latest checkpoint).")
config.define_flags(SquadConfig)

FLAGS = flags.FLAGS


def main(argv):
    del argv
    runner.run(SquadTask, FLAGS, mode=FLAGS.mode)


if __name__ == "__main__":
    cli.run(main)
