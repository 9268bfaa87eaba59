"""trainers.common.steps (epoch-based lengths) and the step / scaled learning-rate schedule."""

import numpy as np
import pytest

from resnet_support import configs, parse_flags, restore_flag_defaults
from trainers.common import optimizers as common_optimizers
from trainers.common import run_plan as steps
from trainers.common.errors import TrainerError


restore_defaults = pytest.fixture(autouse=True)(restore_flag_defaults)


def resolve(f, steps_per_epoch):
    return steps.resolve(*configs(f), steps_per_epoch)


def test_epochs_become_steps_with_the_recipe_defaults():
    f = parse_flags("--model_dir=/tmp/unused")
    plan = resolve(f, steps_per_epoch=100)
    assert plan.train_steps == 9000 and plan.warmup_steps == 500
    assert plan.lr_boundaries == (3000, 6000, 8000)


def test_explicit_steps_beat_default_epochs_and_both_is_an_error():
    f = parse_flags("--model_dir=/tmp/unused", "--train_steps=7", "--warmup_steps=2",
                    "--lr_decay_steps=3,5")
    plan = resolve(f, steps_per_epoch=100)
    assert (plan.train_steps, plan.warmup_steps, plan.lr_boundaries) == (7, 2, (3, 5))
    f = parse_flags("--model_dir=/tmp/unused", "--train_steps=7", "--train_epochs=2")
    with pytest.raises(TrainerError, match="--train_steps or --train_epochs, not both"):
        resolve(f, 100)


def test_epochs_need_a_task_with_epochs_and_boundaries_must_increase():
    f = parse_flags("--model_dir=/tmp/unused")
    with pytest.raises(TrainerError, match="known epoch size"):
        resolve(f, None)
    f = parse_flags("--model_dir=/tmp/unused", "--lr_decay_epochs=3,2")
    with pytest.raises(TrainerError, match="increasing"):
        resolve(f, 10)
    f = parse_flags("--model_dir=/tmp/unused", "--train_steps=9", "--warmup_steps=0",
                    "--lr_decay_epochs=", "--lr_decay_steps=")
    with pytest.raises(TrainerError, match="needs --lr_decay_steps"):
        resolve(f, 10)


def test_step_schedule_values():
    schedule = common_optimizers.WarmupSchedule(0.4, 100, warmup_steps=4, kind="step",
                                                boundaries=(10, 20), decay_rate=0.1)
    got = [float(schedule(s)) for s in (0, 3, 4, 9, 10, 19, 20, 99)]
    np.testing.assert_allclose(got, [0.1, 0.4, 0.4, 0.4, 0.04, 0.04, 0.004, 0.004], rtol=1e-6)
    restored = common_optimizers.WarmupSchedule(**schedule.get_config())
    assert float(restored(15)) == pytest.approx(0.04)


def test_linear_scaling_of_the_peak_learning_rate():
    f = parse_flags("--model_dir=/tmp/unused", "--global_batch_size=64", "--train_steps=10")
    plan = resolve(f, 5)
    run, opt = configs(f)
    _, schedule, settings = common_optimizers.build(opt, plan, run.global_batch_size)
    assert settings["learning_rate"] == pytest.approx(0.1 * 64 / 256)  # sgd's 0.1 x B / 256
    assert float(schedule(plan.warmup_steps)) == pytest.approx(0.025)
    f = parse_flags("--model_dir=/tmp/unused", "--lr_scaling_batch=0", "--optimizer=adam",
                    "--train_steps=10")
    run, opt = configs(f)
    _, _, settings = common_optimizers.build(opt, resolve(f, 5), run.global_batch_size)
    assert settings["learning_rate"] == pytest.approx(1e-4)
