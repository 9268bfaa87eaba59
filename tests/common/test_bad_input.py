"""Bad input ends in one `error: ...` line and exit 1, never a traceback: in-process
(each case must raise TrainerError, which `cli.run` prints as one line), plus one
subprocess that checks the line, the exit code, and that TensorFlow's C++ log lines
(`cuInit` on a host without a GPU) are quiet by default."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, reset_absl_flags
from conftest import parse_flags as parse
from trainers import bert_pretrain  # noqa: F401 - defines the flags
from trainers import causal_lm  # noqa: F401 - defines the flags
from trainers import squad_finetune  # noqa: F401 - defines the flags
from trainers.bert.task import BertPretrainTask
from trainers.common import cli, runner
from trainers.common.errors import TrainerError
from trainers.lm.task import CausalLMTask
from trainers.squad.task import SquadTask
from squad_helpers import HANDWRITTEN

FAST = ["--train_steps=2", "--global_batch_size=4", "--steps_per_loop=2",
        "--strategy=one_device", "--nojit_compile"]
TASKS = {"bert_pretrain": BertPretrainTask, "squad_finetune": SquadTask,
         "causal_lm": CausalLMTask}


@pytest.fixture(autouse=True)
def reset_flags():
    yield
    reset_absl_flags()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "a_file").write_text("not a directory")
    (d / "empty").mkdir()
    (d / "empty" / "corpus.txt").write_text("\n\n\n")
    (d / "binary.txt").write_bytes(b"\xff\xfe\x00\x81 not text")
    (d / "not_json.json").write_text("{ this is not json")
    return d


def cases(d, small_corpus, small_vocab):
    data = [f"--corpus={small_corpus}", f"--vocab_file={small_vocab}"]
    squad = [f"--train_file={HANDWRITTEN}", f"--predict_file={HANDWRITTEN}",
             "--max_seq_length=64", "--doc_stride=32", "--max_query_length=16",
             f"--vocab_file={small_vocab}"]
    return {
        "model_dir is a file": ("bert_pretrain", [f"--model_dir={d / 'a_file'}", *data],
                                "exists and is a file"),
        "model_dir under a file": ("bert_pretrain",
                                   [f"--model_dir={d / 'a_file' / 'run'}", *data],
                                   "cannot create --model_dir"),
        "empty corpus": ("bert_pretrain", [f"--model_dir={d / 'r1'}",
                                           f"--corpus=files:{d / 'empty'}/*.txt",
                                           f"--vocab_file={small_vocab}"], "contains no text"),
        "vocab is a directory": ("bert_pretrain", [f"--model_dir={d / 'r2'}",
                                                   f"--corpus={small_corpus}",
                                                   f"--vocab_file={d / 'empty'}"],
                                 "is a directory"),
        "vocab not text": ("bert_pretrain", [f"--model_dir={d / 'r3'}",
                                             f"--corpus={small_corpus}",
                                             f"--vocab_file={d / 'binary.txt'}"],
                           "vocabulary"),
        "bad init_checkpoint": ("bert_pretrain", [f"--model_dir={d / 'r4'}", *data,
                                                  f"--init_checkpoint={d / 'empty'}"],
                                "holds no BERT export or KerasHub preset"),
        "unknown preset": ("squad_finetune", [f"--model_dir={d / 'r5'}", *squad,
                                              "--init_checkpoint=no_such_bert"],
                           "neither a directory nor a KerasHub BERT preset"),
        "negative seq_length": ("bert_pretrain", [f"--model_dir={d / 'r6'}", *data,
                                                  "--seq_length=-4"], "--seq_length"),
        "negative vocab_size": ("causal_lm", [f"--model_dir={d / 'r7'}",
                                              f"--corpus={small_corpus}",
                                              "--eval_fraction=0.3", "--vocab_size=-5"],
                               "--vocab_size"),
        "eval_fraction out of range": ("bert_pretrain", [f"--model_dir={d / 'r8'}", *data,
                                                         "--eval_fraction=1.5"],
                                       "--eval_fraction"),
        "squad file not json": ("squad_finetune", [
            f"--model_dir={d / 'r9'}", f"--train_file={d / 'not_json.json'}",
            f"--predict_file={HANDWRITTEN}", f"--vocab_file={small_vocab}"], "not valid JSON"),
        "negative max_seq_length": ("squad_finetune", [f"--model_dir={d / 'r10'}", *squad,
                                                       "--max_seq_length=-1"],
                                    "--max_seq_length"),
        "negative doc_stride": ("squad_finetune", [f"--model_dir={d / 'r11'}", *squad,
                                                   "--doc_stride=0"], "--doc_stride"),
        "negative max_documents": ("bert_pretrain", [f"--model_dir={d / 'r12'}", *data,
                                                     "--max_documents=-3"],
                                   "--max_documents"),
    }


CASES = ["model_dir is a file", "model_dir under a file", "empty corpus",
         "vocab is a directory", "vocab not text", "bad init_checkpoint", "unknown preset",
         "negative seq_length", "negative vocab_size", "eval_fraction out of range",
         "squad file not json", "negative max_seq_length", "negative doc_stride",
         "negative max_documents"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_trainer_error(case, bad_files, small_corpus, small_vocab):
    from absl import flags

    program, args, message = cases(bad_files, small_corpus, small_vocab)[case]
    try:
        f = parse(program, *FAST, *args)
    except flags.IllegalFlagValueError as e:  # a typed config's range, checked while parsing
        assert message in str(e)              # (the CLI prints it as one `error:` line)
        return
    with pytest.raises(TrainerError) as info:
        runner.run(TASKS[program], f)
    assert message in str(info.value)


@pytest.mark.parametrize("args, message", [
    (["--num_devices=-1"], "flag --num_devices=-1: must be >= 1"),
    (["--train_steps=0"], "flag --train_steps=0: must be >= 1"),
    (["--strategy=cluster"], "flag --strategy=cluster: value should be one of"),
])
def test_a_shared_flag_out_of_range_fails_while_parsing(args, message, capsys):
    """The shared flags' ranges are absl validators (from the configs' fields): the CLI
    prints one line before anything is built."""
    from absl import flags

    def main(argv):
        raise AssertionError("main ran although a flag is out of range")

    with pytest.raises(SystemExit):
        cli.run(main, argv=["trainers.causal_lm", "--model_dir=x", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    flags.FLAGS.unparse_flags()


def test_help_lists_the_programs_flags_and_the_shared_ones_it_uses():
    from absl import flags

    text = flags.FLAGS.module_help("trainers.squad_finetune")
    for name in ("doc_stride", "init_checkpoint", "model_dir", "optimizer", "learning_rate",
                 "global_batch_size", "vocab_file"):
        assert f"--{name}:" in text, name
    for name in ("test_srcdir", "test_tmpdir", "xml_output_file", "logtostderr",
                 "only_check_args"):
        assert f"--{name}" not in text, name


def test_one_line_exit_1_and_quiet_tensorflow_in_a_real_process(bad_files):
    """The subprocess a user sees: `error: ...`, exit 1, no traceback, no cuInit lines
    (TF_CPP_MIN_LOG_LEVEL is left unset, as a user's shell has it)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.squad_finetune",
         f"--model_dir={bad_files / 'a_file'}", f"--train_file={HANDWRITTEN}",
         f"--predict_file={HANDWRITTEN}", "--strategy=one_device"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --model_dir=") and "is a file" in last, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "cuInit" not in proc.stderr and "cuInit" not in proc.stdout
