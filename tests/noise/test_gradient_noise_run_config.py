"""gradient_noise measures a run with exactly the settings the run was made with.

The settings come from the run's config.json (every flag of the trainer, defaults
included) and the task is the trainer's own, so no default is copied and a changed
trainer default cannot desynchronise the measurement. A run without config.json
is refused in one line.
"""

import json
import os

import pytest

from conftest import run_trainer
from trainers.common.errors import TrainerError
from trainers.noise import run_config

MODULE = "trainers.gradient_noise"
MEASURE = ["--num_batches=16", "--batch_size=8", "--reference_dim=10"]
# Every model and data flag away from both bert_pretrain's and gradient_noise's defaults.
RUN_FLAGS = ["--num_layers=1", "--hidden_dim=24", "--num_heads=3", "--intermediate_dim=40",
             "--seq_length=24", "--max_predictions_per_seq=4", "--mask_rate=0.2",
             "--eval_fraction=0.2", "--seed=7", "--dropout=0"]


def write_config(run_dir, program="trainers.bert_pretrain", **values):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as fh:
        json.dump({"program": program, "flags": values}, fh)


# ---------------------------------------------------------------- the reader, in-process
def test_an_older_flags_record_is_read_with_the_measurement_overrides(tmp_path):
    """A config.json written before the typed configs ({"program", "flags"}): the task
    config is its values, the fields it lacks their defaults, then the overrides."""
    from trainers.bert.config import BertConfig
    from trainers.noise import tasks

    write_config(tmp_path, hidden_dim=24, seq_length=24, num_layers=None, dropout=0.1,
                 seed=7, global_batch_size=8, model_dir=str(tmp_path))
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    experiment = tasks.text_run_experiment(str(tmp_path), ("trainers.bert_pretrain",),
                                           BertConfig)
    task = experiment.task
    assert (task.hidden_dim, task.seq_length, task.num_layers, task.dropout) == (24, 24, None,
                                                                               0.0)
    assert task.vocab_file == str(tmp_path / "vocab.txt")
    assert task.eval_split == BertConfig().eval_split  # not recorded: the default
    assert (experiment.run.seed, experiment.run.global_batch_size) == (7, 8)


def test_a_typed_record_round_trips(tmp_path):
    from trainers.common import config
    from trainers.noise import tasks
    from trainers.vision.config import ImageConfig

    experiment = config.ExperimentConfig(
        "trainers.resnet_imagenet", config.RunConfig(model_dir=str(tmp_path), seed=3),
        config.OptimizerConfig(optimizer="adam", learning_rate=0.01),
        ImageConfig(model="resnet8", dataset="digits", label_smoothing=0.2))
    (tmp_path / "config.json").write_text(json.dumps(experiment.to_dict()))
    assert tasks.run_experiment(str(tmp_path), tasks.IMAGE_PROGRAMS,
                                ImageConfig) == experiment


def test_a_run_without_config_json_is_one_clear_error(tmp_path):
    with pytest.raises(TrainerError) as e:
        run_config.read_run_record(str(tmp_path))
    message = str(e.value)
    assert message == (f"run {tmp_path} has no config.json; rerun its trainer with this version")
    assert "\n" not in message


def test_a_run_of_another_program_is_refused(tmp_path):
    from trainers.bert.config import BertConfig
    from trainers.noise import tasks

    write_config(tmp_path, program="trainers.resnet_imagenet", model="resnet8")
    with pytest.raises(TrainerError, match="is a run of trainers.resnet_imagenet; this "
                                           "measurement needs a run of trainers.bert_pretrain"):
        tasks.run_experiment(str(tmp_path), ("trainers.bert_pretrain",), BertConfig)


@pytest.mark.parametrize("text", ["{not json", '{"program": "x"}', '{"program": "x", "run": 3}'])
def test_a_broken_record_is_one_line(tmp_path, text):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(TrainerError, match="is not a run record|no settings"):
        run_config.read_run_record(str(tmp_path))


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, small_corpus, small_vocab):
    """A bert_pretrain run whose model and data flags are all non-default."""
    model_dir = tmp_path_factory.mktemp("odd_run")
    run_trainer([f"--model_dir={model_dir}", f"--corpus={small_corpus}",
                 f"--vocab_file={small_vocab}", *RUN_FLAGS, "--global_batch_size=8",
                 "--steps_per_loop=5", "--eval_batches=2", "--train_steps=5",
                 "--checkpoint_every=5", "--eval_every=0", "--optimizer=adam",
                 "--learning_rate=1e-3", "--strategy=one_device", "--nojit_compile"])
    return model_dir


def test_a_run_is_measured_with_exactly_its_settings(tmp_path, odd_run):
    out = tmp_path / "noise"
    # None of the run's size or data flags on this command line: all from config.json.
    run_trainer(["--model=bert", f"--output_dir={out}", f"--pretrain_dir={odd_run}",
                 "--checkpoints=5", *MEASURE], module=MODULE)
    result = json.load(open(out / "bert_noise.json"))
    run = json.load(open(odd_run / "summary.json"))["task"]
    config = json.load(open(odd_run / "config.json"))["flags"]
    facts, settings = result["facts"], result["settings"]
    for key in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", "seq_length",
                "max_predictions_per_seq", "vocab_size", "train_sequences", "train_documents"):
        assert facts[key] == run[key], key
    for key in ("hidden_dim", "seq_length", "mask_rate", "eval_fraction", "seed"):
        assert settings[key] == config[key], key
    assert settings["program"] == "trainers.bert_pretrain"
    # The measured model is the run's: same parameter count as its checkpointed weights.
    from conftest import model_weights

    checkpoint_params = sum(v.size for v in model_weights(odd_run).values())
    assert facts["parameters"] == checkpoint_params
    assert list(result["measurements"]) == ["init", "step 5"]


def test_a_run_without_config_json_fails_in_one_line(tmp_path, odd_run):
    import shutil

    old_run = tmp_path / "old_run"
    shutil.copytree(odd_run, old_run)
    os.remove(old_run / "config.json")
    proc = run_trainer(["--model=bert", f"--output_dir={tmp_path}/out",
                        f"--pretrain_dir={old_run}", *MEASURE], module=MODULE, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (f"error: run {old_run} has no config.json; rerun its trainer with "
                         "this version"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_a_resnet_run_is_measured_with_its_model_and_loss(tmp_path):
    """A resnet_imagenet run's model (resnet8, not this program's --image_model default),
    seed and loss settings come from its config.json."""
    run = tmp_path / "resnet_run"
    run_trainer([f"--model_dir={run}", "--dataset=digits", "--model=resnet8", "--seed=3",
                 "--label_smoothing=0.05", "--global_batch_size=16", "--train_steps=2",
                 "--steps_per_loop=2", "--eval_batches=1", "--checkpoint_every=2",
                 "--eval_every=0", "--strategy=one_device", "--nojit_compile"],
                module="trainers.resnet_imagenet")
    out = tmp_path / "noise"
    run_trainer(["--model=resnet", f"--output_dir={out}", f"--pretrain_dir={run}",
                 "--checkpoints=2", *MEASURE], module=MODULE)
    result = json.load(open(out / "resnet_noise.json"))
    summary = json.load(open(run / "summary.json"))["task"]
    settings, facts = result["settings"], result["facts"]
    assert settings["program"] == "trainers.resnet_imagenet"
    assert settings["model"] == "resnet8" and settings["seed"] == 3
    assert settings["label_smoothing"] == 0.05
    assert facts["parameters"] == summary["parameters"]
    assert facts["image_size"] == summary["image_size"] == 8
    assert list(result["measurements"]) == ["init", "step 2"]


def test_the_task_loss_gives_the_global_batch_gradient_on_two_replicas(
        two_replicas, small_corpus, small_vocab, tmp_path):
    """`TaskObjective` divides by the global batch's predicted positions (as the
    training loop does), so two replicas measure the gradients one device does,
    although the replicas' halves hold different numbers of masked tokens."""
    import keras
    import numpy as np
    import tensorflow as tf

    from acclip_tf import noise
    from trainers.bert.task import BertPretrainTask
    from trainers.noise import objective

    from trainers.bert.config import BertConfig
    from trainers.common import config

    experiment = config.ExperimentConfig(
        "test", config.RunConfig(model_dir=str(tmp_path), global_batch_size=1),
        config.OptimizerConfig(),
        BertConfig(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                   corpus=small_corpus, vocab_file=small_vocab, seq_length=32,
                   max_predictions_per_seq=5, dropout=0.0))
    task = BertPretrainTask(experiment, str(tmp_path), is_chief=False)

    def uneven(batch):  # the first replica's half predicts one position per sequence
        keep = tf.concat([tf.tile([[1.0, 0, 0, 0, 0]], [4, 1]), tf.ones([4, 5])], 0)
        return dict(batch, mask_weights=batch["mask_weights"] * keep)

    batches = objective.task_batches(task.train_dataset(None, 8, 0).take(4).map(uneven).cache())
    samples = []
    for strategy in (None, two_replicas):
        keras.utils.set_random_seed(0)
        if strategy is None:
            model = task.build_model()
        else:
            with strategy.scope():
                model = task.build_model()
        samples.append(noise.gradient_noise_norms(
            objective.TaskObjective(task, model), objective.passthrough, batches,
            strategy=strategy, cross_replica=objective.CROSS_REPLICA))
    one, two = samples
    np.testing.assert_allclose(two.gradient_norms, one.gradient_norms, rtol=1e-5)
    np.testing.assert_allclose(two.noise_norms, one.noise_norms, rtol=1e-5)
    weights = [b[0]["mask_weights"].numpy() for b in batches]
    assert all(w[:4].sum() < w[4:].sum() for w in weights)  # the halves differ


def test_a_causal_lm_run_is_measured_with_its_model_vocabulary_and_windows(tmp_path,
                                                                           small_corpus):
    """--model=causal_lm: the run's model, vocabulary, windows and seed come from its
    config.json and vocab.txt; the first minibatch's gradient norm at init equals the
    norm of the gradient of the mean next-token cross-entropy of the run's first
    windows, computed here with a tape and Keras' own cross-entropy."""
    run = tmp_path / "lm_run"
    run_trainer([f"--model_dir={run}", f"--corpus={small_corpus}", "--tokenizer=word",
                 "--vocab_size=300", "--num_layers=1", "--hidden_dim=32", "--num_heads=2",
                 "--intermediate_dim=48", "--seq_length=16", "--seed=5", "--dropout=0.1",
                 "--global_batch_size=8", "--train_steps=2", "--steps_per_loop=2",
                 "--eval_batches=1", "--checkpoint_every=2", "--eval_every=0",
                 "--optimizer=gclip", "--strategy=one_device",
                 "--nojit_compile"], module="trainers.causal_lm")
    # No --learning_rate / --tau: the causal LM family's measured settings, not the table's.
    from trainers.common import optimizers as opt_lib
    from trainers.lm.task import CausalLMTask

    used = json.load(open(run / "summary.json"))["optimizer_settings"]
    family = CausalLMTask.optimizer_settings["gclip"]
    assert (used["learning_rate"], used["tau"]) == (family["learning_rate"], family["tau"])
    assert (used["learning_rate"], used["tau"]) != (
        opt_lib.DEFAULTS["gclip"]["learning_rate"], opt_lib.DEFAULTS["gclip"]["tau"])
    out = tmp_path / "noise"
    run_trainer(["--model=causal_lm", f"--output_dir={out}", f"--pretrain_dir={run}",
                 "--checkpoints=2", *MEASURE], module=MODULE)
    result = json.load(open(out / "causal_lm_noise.json"))
    settings, facts = result["settings"], result["facts"]
    assert settings["program"] == "trainers.causal_lm"
    assert (settings["hidden_dim"], settings["seq_length"], settings["seed"]) == (32, 16, 5)
    assert facts["vocab_size"] == len(open(run / "vocab.txt").read().splitlines())
    assert list(result["measurements"]) == ["init", "step 2"]

    import keras
    import tensorflow as tf

    from trainers.noise import tasks

    class F:
        pretrain_dir = str(run)

    flags, task = tasks.lm_task(F)
    keras.utils.set_random_seed(5)
    model = task.build_model()
    assert facts["parameters"] == model.count_params()
    tokens = next(iter(task.train_dataset(None, 8, 0)))["tokens"]
    with tf.GradientTape() as tape:
        logits = model({"token_ids": tokens[:, :-1], "padding_mask": tf.ones_like(tokens[:, :-1])},
                       training=False)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            tokens[:, 1:], logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    expected = float(tf.linalg.global_norm([g for g in grads if g is not None]))
    measured = result["measurements"]["init"]["gradient_norms"][0]
    assert measured == pytest.approx(expected, rel=1e-4)
