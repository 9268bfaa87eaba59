"""The causal LM trainer's own flags: generated from `trainers.lm.config.LMConfig`'s
fields (the shared ones: the fields of trainers/common/config.py). A name another
program in this process defined first keeps that definition."""

from trainers.common import config
from trainers.lm.config import LMConfig


def define_lm_flags():
    config.define_flags(LMConfig)
