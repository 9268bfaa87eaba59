"""The import rules of docs/architecture.md, checked on the source (no imports run), and
that every program imports with every other in one (sub)process."""

import ast
import os
import re

import pytest

from conftest import REPO

TRAINERS = os.path.join(REPO, "trainers")
TASKS = ("bert", "squad", "vision", "noise", "synthetic", "lm")
PROGRAMS = ("bert_pretrain", "squad_finetune", "resnet_imagenet", "gradient_noise",
            "heavy_tail_rates", "causal_lm", "sweep")
# Public contracts a task may use from another: what bert_pretrain exports, and its flags.
CONTRACTS = ("trainers.bert.model",)


def imports(path):
    """Every module name `path` imports (top level and function-local)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def sources(folder):
    """The .py files under trainers/<folder>; a folder with none fails the test (a check
    that scans nothing cannot fail)."""
    found = [os.path.join(root, name)
             for root, _, files in os.walk(os.path.join(TRAINERS, folder))
             for name in files if name.endswith(".py")]
    assert found, f"no Python file under trainers/{folder}: the layout check scanned nothing"
    return found


def test_common_imports_no_task_and_no_program():
    bad = []
    for path in sources("common"):
        for name in imports(path):
            parts = name.split(".")
            if parts[0] == "trainers" and len(parts) > 1 and parts[1] in TASKS + PROGRAMS:
                bad.append((os.path.relpath(path, REPO), name))
    assert not bad


def test_a_task_imports_no_other_tasks_internals():
    """noise/ is exempt: the measurement program's pieces are built on the task packages."""
    bad = []
    for task in TASKS:
        if task == "noise":
            continue
        for path in sources(task):
            for name in imports(path):
                parts = name.split(".")
                if parts[0] != "trainers" or len(parts) < 2:
                    continue
                if parts[1] in PROGRAMS:
                    bad.append((os.path.relpath(path, REPO), name))
                elif (parts[1] in TASKS and parts[1] != task
                      and not name.startswith(CONTRACTS)):
                    bad.append((os.path.relpath(path, REPO), name))
    assert not bad


# Direct filesystem calls: a trainer reads and writes through trainers/common/files.py
# (tf.io.gfile), so gs://, ram://, ... work like a local path.
DIRECT_FILE_CALLS = re.compile(
    r"(?<![\w.])open\(|\bos\.path\.|\bos\.(makedirs|listdir|remove|rename|replace|unlink|walk|"
    r"stat|mkdir|rmdir)\(|\bshutil\.|\bglob\.glob\(|\bgzip\.open\(")
# (file, what): the places that must touch the local disk as such.
LOCAL_ON_PURPOSE = {
    # files:GLOB with ** (recursive): gfile's glob has no **; a remote pattern uses gfile.
    ("trainers/common/text/corpus.py", "glob.glob("),
}


def test_trainers_touch_files_only_through_common_files():
    scanned, bad = 0, []
    for path in sources(""):
        rel = os.path.relpath(path, REPO)
        if rel == os.path.join("trainers", "common", "files.py"):
            continue
        scanned += 1
        for number, line in enumerate(open(path, encoding="utf-8"), 1):
            code = line.split("#", 1)[0]
            for m in DIRECT_FILE_CALLS.finditer(code):
                if not any(rel == f and what in code for f, what in LOCAL_ON_PURPOSE):
                    bad.append(f"{rel}:{number}: {line.strip()}")
    assert scanned > 50, scanned
    assert not bad, "\n".join(bad)


def test_the_file_scan_catches_each_kind_of_call():
    for line in ("with open(p) as f:", "os.path.exists(p)", "os.makedirs(d)", "shutil.rmtree(d)",
                 "os.remove(p)", "glob.glob(p)", "gzip.open(p)"):
        assert DIRECT_FILE_CALLS.search(line), line
    for line in ("files.open_file(p)", "tf.io.gfile.GFile(p)", "files.join(a, b)"):
        assert not DIRECT_FILE_CALLS.search(line), line


def optimizer_name_literals(path, names):
    """(line, name) of every string constant in `path` that is an optimizer's name, left
    out: docstrings and the values assigned to `optimizer_settings` (a task's measured
    settings) or `RECIPE` / `run_defaults` (a program's published recipe)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body and \
                isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            skip.add(id(node.body[0].value))
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("optimizer_settings", "RECIPE", "run_defaults")
                for t in node.targets):
            skip.update(id(n) for n in ast.walk(node.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in skip]


def test_optimizer_names_live_in_the_registry():
    from trainers.common import optimizer_registry as registry

    names = set(registry.NAMES)
    scanned, bad = 0, []
    for path in sources(""):
        rel = os.path.relpath(path, REPO)
        # The registry itself; the synthetic simulation's own methods ("sgd", "gclip_...")
        # are not the trainers' optimizers.
        if rel.endswith("optimizer_registry.py") or "synthetic" in rel:
            continue
        scanned += 1
        bad += [f"{rel}:{line}: {name!r}" for line, name in optimizer_name_literals(path, names)]
    assert scanned > 50
    assert not bad, "\n".join(bad)


def test_the_name_scan_finds_a_literal_outside_the_measured_settings(tmp_path):
    path = tmp_path / "x.py"
    path.write_text('"""adam in a docstring."""\nDEFAULT = "adam"\n'
                    'class T:\n    optimizer_settings = {"sgd": {"learning_rate": 0.1}}\n')
    assert optimizer_name_literals(str(path), {"adam", "sgd"}) == [(2, "adam")]


@pytest.mark.parametrize("order", [1, -1])
def test_every_program_imports_with_every_other_in_one_process(order):
    """Programs define their flags at import (generated from the configs, or their own);
    all of them in one process (a sweep driver, a notebook, this suite), in either order,
    must define each name once and parse an empty command line."""
    import subprocess
    import sys

    programs = list(PROGRAMS + ("prepare_pretraining_data",))[::order]
    code = ("import importlib\nfrom absl import flags\n"
            f"for p in {programs!r}:\n    importlib.import_module('trainers.' + p)\n"
            "flags.FLAGS(['x'])\nprint('parsed', len(list(flags.FLAGS)))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("parsed ")


def test_the_files_conftest_schedules_first_exist():
    """A renamed or removed file would silently lose its place at the front."""
    from conftest import LONGEST_FILES

    missing = [name for name in LONGEST_FILES
               if not os.path.isfile(os.path.join(REPO, "tests", name))]
    assert not missing and len(LONGEST_FILES) == len(set(LONGEST_FILES))
