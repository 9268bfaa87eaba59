"""The import rules of docs/architecture.md, checked on the source (no imports run)."""

import ast
import os
import re

from conftest import REPO

TRAINERS = os.path.join(REPO, "trainers")
TASKS = ("bert", "squad", "vision", "noise", "synthetic", "lm")
PROGRAMS = ("bert_pretrain", "squad_finetune", "resnet_imagenet", "gradient_noise",
            "heavy_tail_rates", "causal_lm", "sweep")
# Public contracts a task may use from another: what bert_pretrain exports, and its flags.
CONTRACTS = ("trainers.bert.model", "trainers.bert.flags")


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
