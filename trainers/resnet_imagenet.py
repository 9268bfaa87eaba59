"""ResNet image classification (the paper's SGD-friendly counterpart to BERT).

    python -m trainers.resnet_imagenet --model_dir=runs/r50 --dataset=tfds:imagenet2012
    python -m trainers.resnet_imagenet --model_dir=runs/digits --dataset=digits \
        --model=resnet20 --train_epochs=20 --global_batch_size=64

The flag defaults are Model Garden's ImageNet ResNet-50 recipe: SGD with
momentum 0.9, learning rate 0.1 x batch / 256, 5 warm-up epochs then x0.1 at
epochs 30, 60 and 80 of 90, L2 weight decay 1e-4 (not on batch norm or
biases), label smoothing 0.1, random-resized crop + flip, centre-crop eval,
top-1 and top-5 accuracy. See docs/resnet.md; the flags are the fields of
trainers/common/config.py and trainers/vision/config.py.
"""

from absl import flags

from trainers.common import cli
from trainers.common import config
from trainers.common import flags as common_flags
from trainers.common import runner
from trainers.vision.config import ImageConfig
from trainers.vision.task import ImageClassificationTask

RECIPE = ImageClassificationTask.run_defaults
common_flags.define_common_flags(**RECIPE)
config.define_flags(ImageConfig)

FLAGS = flags.FLAGS

def main(argv):
    del argv
    runner.run(ImageClassificationTask, FLAGS)


if __name__ == "__main__":
    cli.run(main)
