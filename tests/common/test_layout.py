"""The import rules of docs/architecture.md, checked on the source (no imports run)."""

import ast
import os

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
