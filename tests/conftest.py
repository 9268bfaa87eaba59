"""Session setup, shared fixtures and the helpers every trainer test uses.

Tests live in folders that mirror the package (tests/common, tests/bert,
tests/squad, tests/vision, tests/noise, tests/synthetic) and are imported in
pytest's importlib mode, so two folders may hold test files of the same name;
setup.cfg puts tests/ on sys.path, so `from conftest import run_trainer` and
the helper modules here (squad_helpers, resnet_support) import from any folder.

* Two logical CPU devices let MirroredStrategy run two replicas on this
  machine; they must be configured before TensorFlow initialises its
  devices, so it happens here, at import, before any test runs TF code.
  `two_replicas` is one MirroredStrategy over them, shared by all tests.
* The excerpt and a small vocabulary are built once per session, the excerpt from
  the dump shipped in tests/data (no network). The corpus cache is
  `$ACCLIP_TF_CACHE` when set (a shared cache), else a directory under pytest's
  own cache, so the suite never writes ~/.cache.
* TensorFlow gets one intra-op thread and two inter-op threads (two replicas'
  collectives need two to meet), in this process and in every trainer it starts:
  `make test` runs two pytest workers on two cores, and the tiny models gain nothing
  from threads that would then compete for them (measured: 4 % less CPU together
  with the file order below, docs/benchmarks.md).
* Trainer processes (`run_trainer`, and the tests that start `python -m trainers...`
  side by side) are forks of a process that imported TensorFlow, Keras and the
  trainers' libraries once per pytest worker (tests/preloaded.py): the command runs as
  the interpreter would run it, without paying ~5 s of CPU for the imports each time.
  `ACCLIP_TF_FRESH_PROCESSES=1` starts fresh interpreters instead.
"""

import json
import os
import socket
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import preloaded  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
_LOGICAL_DEVICES_ERROR = None
try:
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
    )
except RuntimeError as e:  # TF initialised its devices before this module: the
    _LOGICAL_DEVICES_ERROR = e  # two-replica tests fail (below), they are not skipped


# The files that take longest (seconds summed over their tests, `--durations=0`, two
# workers beside a sweep, 2026-12-03), longest first. `make test` runs pytest-xdist with
# `--dist loadfile --no-loadscope-reorder`: a worker takes the next file when it runs
# low, so starting with the long ones leaves short files, not a long trainer run, at
# the end, where the other worker would wait. Every other file keeps its place after them.
LONGEST_FILES = (
    "bert/test_bert_pretrain.py",             # 257
    "noise/test_gradient_noise_run_config.py",  # 173
    "squad/test_squad_finetune.py",           # 160
    "lm/test_causal_lm_trainer.py",           # 132
    "noise/test_gradient_noise_trainer.py",   # 114
    "vision/test_resnet_trainer.py",          # 108
    "common/test_worker_loss.py",             # 106
    "bert/test_bert_shards.py",               # 89
    "vision/test_sync_batch_norm.py",         # 72
    "bench/test_gpu_crossover.py",            # 69
    "common/test_remote_model_dir.py",        # 60
    "lm/test_lm_study.py",                    # 87; one of its two sweeps folded in 2026-12-07
    "acclip_tf/optimizers/test_distribute.py",  # 43
)


def pytest_collection_modifyitems(config, items):
    tests = os.path.dirname(os.path.abspath(__file__))
    rank = {os.path.join(tests, name): i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(str(item.path), len(rank)))


@pytest.fixture(scope="session")
def two_replicas():
    """One MirroredStrategy over the two logical CPUs, shared by all tests.

    A second MirroredStrategy in the same process restarts the collective
    instance keys of the first and its all-reduces then collide ("Shape
    mismatch in the collective instance"), so tests share this one.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        pytest.fail(f"two logical CPU devices could not be made ({_LOGICAL_DEVICES_ERROR}): "
                    "TensorFlow initialised its devices before tests/conftest.py ran")
    return tf.distribute.MirroredStrategy(devices)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny BERT and short sequences: the trainer tests are about the machinery. No XLA
# (the trainers' default): compiling the step costs more than these runs train; the
# tests about XLA turn it back on (`--jit_compile`, the last flag given wins).
TINY = [
    "--num_layers=1", "--hidden_dim=32", "--num_heads=2", "--intermediate_dim=64",
    "--seq_length=32", "--max_predictions_per_seq=5", "--dropout=0",
    "--global_batch_size=8", "--steps_per_loop=5", "--eval_batches=4", "--nojit_compile",
]


# The gensim wheel's shortened Wikipedia dump, shipped here (CC BY-SA: its attribution is
# tests/data/ATTRIBUTION-enwiki.txt) so that the suite needs no network: the trainers
# convert it instead of fetching the wheel (trainers/common/text/corpus.py, DUMP_ENV).
WIKI_DUMP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                         "enwiki-shortened.xml.bz2")


@pytest.fixture(scope="session", autouse=True)
def corpus_cache(request):
    os.environ.setdefault("ACCLIP_TF_WIKI_DUMP", WIKI_DUMP)
    if not os.environ.get("ACCLIP_TF_CACHE"):
        # Under pytest's cache (kept between runs of this checkout): the excerpt is
        # converted from the shipped dump once (~1 s).
        cache = request.config.cache.mkdir("acclip_tf_cache")
        os.environ["ACCLIP_TF_CACHE"] = str(cache)
    return os.environ["ACCLIP_TF_CACHE"]


@pytest.fixture(scope="session")
def wiki_documents(corpus_cache):
    from trainers.common.text.corpus import load_corpus

    return load_corpus("wiki")


@pytest.fixture(scope="session")
def small_corpus(wiki_documents, tmp_path_factory):
    """The first 12 articles as a files: corpus (plain text, blank-line separated)."""
    from trainers.common.text.corpus import write_documents

    directory = tmp_path_factory.mktemp("corpus")
    write_documents(str(directory / "wiki12.txt"), wiki_documents[:12])
    return f"files:{directory}/*.txt"


@pytest.fixture(scope="session")
def small_vocab(wiki_documents, tmp_path_factory):
    from trainers.common.text.vocab import build_vocabulary, save_vocabulary

    path = str(tmp_path_factory.mktemp("vocab") / "vocab.txt")
    paragraphs = [p for d in wiki_documents[:12] for p in d]
    save_vocabulary(build_vocabulary(paragraphs[:400], 600), path)
    return path


def run_trainer(args, module="trainers.bert_pretrain", env=None, timeout=300, check=True):
    """Run a trainer as `python -m module *args` would (forked from the preloaded process,
    tests/preloaded.py); returns the CompletedProcess. `module=None`: `args` are the
    interpreter's own (e.g. ``-c CODE``)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    program = ["-m", module] if module else []
    proc = preloaded.run([sys.executable, *program, *args], cwd=REPO, env=full_env,
                         capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


# A program's own entry (`cli.run(main)`, what `python -m` runs) once per argument list,
# all in one process: each case pays for the program, not for TensorFlow's start-up.
_ENTRY_PER_CASE = """
import contextlib, importlib, io, json, sys
from absl import flags
from trainers.common import cli
program = importlib.import_module(sys.argv[1])
if sys.argv[2] == "define":
    program.define_flags()
results = []
for args in json.loads(sys.argv[3]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.run(program.main, argv=[sys.argv[1], *args])
            code = 0
        except SystemExit as e:
            code = 0 if e.code is None else e.code
    flags.FLAGS.unparse_flags()
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_program_cases(module, cases, define_flags=False):
    """[(exit status, stdout, stderr)] of `python -m module *args` for each `args` in
    `cases`, run by the program's entry in one process (`define_flags`: the program
    defines its flags in `define_flags()`, not at import)."""
    proc = run_trainer(["-c", _ENTRY_PER_CASE, module, "define" if define_flags else "-",
                        json.dumps([list(a) for a in cases])], module=None)
    return [tuple(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]


PORT_BLOCK = 400  # ports per pytest-xdist worker, below Linux's ephemeral range (32768-)
_next_port = [0]


def free_ports(n):
    """`n` TCP ports on 127.0.0.1, free when drawn (for TF_CONFIG workers), that no other
    test process hands out: each pytest-xdist worker (gw0, gw1, ...) draws from its own
    block of `PORT_BLOCK` ports from 20000 on, in turn, skipping any in use; the kernel
    gives ports of this range to no one who does not ask for them by number."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    first = 20000 + PORT_BLOCK * int(worker[2:] or 0)
    ports = []
    for _ in range(PORT_BLOCK):
        port = first + _next_port[0] % PORT_BLOCK
        _next_port[0] += 1
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (by a test's worker still shutting down, or anyone)
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"no {n} free ports in {first}-{first + PORT_BLOCK - 1}")


def model_weights(model_dir):
    """{checkpoint key: array} of the model's variables in model_dir's latest checkpoint."""
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith("weights/") and "OPTIMIZER_SLOT" not in k}


def assert_same_weights(dir_a, dir_b, exact=False):
    """The two runs' final model weights are bitwise equal (`exact`) or allclose."""
    import numpy as np

    a, b = model_weights(dir_a), model_weights(dir_b)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        if exact:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=2e-5, err_msg=k)


def kill_at_first_checkpoint(victim, model_dir, timeout, not_written="ckpt-15"):
    """SIGKILL the trainer process `victim` once its first checkpoint exists (and
    before the checkpoint `not_written`): the interrupted half of a resume test."""
    import signal
    import time

    state = os.path.join(model_dir, "checkpoints", "checkpoint")
    deadline = time.time() + timeout
    while not os.path.exists(state) and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    with open(state) as f:
        assert not_written not in f.read()


def sigterm_after_line(reader, prefix, target=None):
    """SIGTERM to `target` (default: `reader`, a trainer started with stdout=PIPE, text)
    once `reader` prints a line starting with `prefix` ("step 5/15 "): a preemption at a
    step the test knows it has passed. Fails if `reader`'s output ends first."""
    import signal

    for line in reader.stdout:
        if line.startswith(prefix):
            (target or reader).send_signal(signal.SIGTERM)
            return
    raise AssertionError(f"the run ended without printing {prefix!r}")


def parse_flags(program, *args):
    """absl's FLAGS parsed from a fresh command line (in-process flag tests; the
    program's flags must already be defined, i.e. its module imported)."""
    from absl import flags

    f = flags.FLAGS
    f.unparse_flags()
    f([program, *args])
    return f


def reset_absl_flags():
    from absl import flags

    flags.FLAGS.unparse_flags()
