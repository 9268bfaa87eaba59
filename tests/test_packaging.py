"""Packaging: the light install, the extras, the version, the scripts, the licence.

Fast checks on the files (no venv is created here; `make check-light-install`
does the real install in a fresh venv, by hand, because installing TensorFlow
takes minutes):

* every module `acclip_tf/` imports (AST scan) is in the standard library, is
  `acclip_tf` itself or is a distribution in ``install_requires``; anything
  else (matplotlib for `acclip_tf.plotting`) must be imported inside a
  ``try`` that turns ImportError into a message naming the extra;
* ``[test]`` holds everything ``[trainers]`` and ``[plots]`` hold;
* the version lives only in `acclip_tf.__version__`, as a literal that
  setuptools reads without importing the package;
* each ``console_scripts`` entry runs an existing `trainers.<program>`.
"""

import ast
import configparser
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# install_requires distribution -> the import name it provides.
IMPORT_NAMES = {"tensorflow": "tensorflow", "keras": "keras", "numpy": "numpy", "scipy": "scipy"}


def _config():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return cfg


def _requirements(text):
    names = []
    for line in text.strip().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(re.match(r"[A-Za-z0-9_.\-]+(\[[^\]]*\])?", line).group(0))
    return names


def _name(requirement):
    return re.sub(r"\[.*\]", "", requirement).lower()


def _imports(path):
    """[(top-level module, guarded by try/except ImportError, line)] of one file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []

    def catches_import_error(node):
        for handler in node.handlers:
            names = []
            if handler.type is None:
                return True
            for t in (handler.type.elts if isinstance(handler.type, ast.Tuple)
                      else [handler.type]):
                names.append(getattr(t, "id", getattr(t, "attr", "")))
            if {"ImportError", "ModuleNotFoundError"} & set(names):
                return True
        return False

    def visit(node, guarded):
        if isinstance(node, ast.Try):
            for child in node.body:
                visit(child, guarded or catches_import_error(node))
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, guarded)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name.split(".")[0], guarded, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module.split(".")[0], guarded, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    # After a guarded `import matplotlib`, `import matplotlib.pyplot` needs no guard.
    guarded_modules = {module for module, guarded, _ in found if guarded}
    return [(m, g or m in guarded_modules, line) for m, g, line in found]


def test_acclip_tf_imports_only_what_install_requires_brings():
    required = {_name(r) for r in _requirements(_config()["options"]["install_requires"])}
    assert required == set(IMPORT_NAMES), required  # a new requirement: map it above
    allowed = set(sys.stdlib_module_names) | {"acclip_tf"} | set(IMPORT_NAMES.values())
    used, bad = set(), []
    for folder, _, files in os.walk(os.path.join(ROOT, "acclip_tf")):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            for module, guarded, line in _imports(path):
                used.add(module)
                if module not in allowed and not guarded:
                    bad.append(f"{os.path.relpath(path, ROOT)}:{line} imports {module}")
    assert not bad, "not in install_requires (add it there or guard it): " + "; ".join(bad)
    assert "trainers" not in used
    assert set(IMPORT_NAMES.values()) <= used  # no requirement that nothing needs


def test_plotting_names_its_extra_when_matplotlib_is_missing():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "try:\n    import acclip_tf.plotting\n"
            "except ModuleNotFoundError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "pip install 'acclip-tf[plots]'" in proc.stdout, proc.stdout + proc.stderr


def test_the_test_extra_holds_the_trainers_and_plots_extras():
    extras = _config()["options.extras_require"]
    test = set(_requirements(extras["test"]))
    assert set(_requirements(extras["trainers"])) <= test
    assert set(_requirements(extras["plots"])) <= test
    assert {"pytest", "jax"} <= {_name(r) for r in test}


def test_a_script_can_name_every_library_of_the_trainers_extra():
    """`_console.TRAINER_LIBRARIES` (import name -> distribution) covers the [trainers]
    extra, so a light install's script names whichever of them is missing."""
    from acclip_tf import _console

    extras = _config()["options.extras_require"]
    trainers = set(_requirements(extras["trainers"]))
    assert trainers <= set(_console.TRAINER_LIBRARIES.values()), trainers


def test_keras_and_tensorflow_are_not_capped_below_the_next_major():
    requires = _config()["options"]["install_requires"]
    assert re.search(r"^\s*keras>=3\.15,<4\s*$", requires, re.M), requires
    assert re.search(r"^\s*tensorflow>=2\.21,<3\s*$", requires, re.M), requires


def test_the_version_is_in_one_place():
    cfg = _config()
    assert cfg["metadata"]["version"] == "attr: acclip_tf.__version__"
    tree = ast.parse(open(os.path.join(ROOT, "acclip_tf", "__init__.py")).read())
    literal = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
               and [t.id for t in n.targets] == ["__version__"]
               and isinstance(n.value, ast.Constant)]
    assert len(literal) == 1 and re.fullmatch(r"\d+\.\d+\.\d+", literal[0]), literal
    # setuptools reads the literal statically: with keras and tensorflow made
    # unimportable, the configuration still resolves to the same version.
    code = ("import sys; sys.modules['keras'] = sys.modules['tensorflow'] = None\n"
            "from setuptools.config.setupcfg import read_configuration\n"
            "print(read_configuration('setup.cfg')['metadata']['version'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == literal[0], proc.stderr[-2000:]


def test_license_file_is_the_apache_license_setup_cfg_names():
    cfg = _config()
    assert cfg["metadata"]["license"] == "Apache-2.0"
    assert cfg["metadata"]["license_files"].strip() == "LICENSE"
    text = open(os.path.join(ROOT, "LICENSE")).read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def _scripts():
    entries = {}
    for line in _config()["options.entry_points"]["console_scripts"].strip().splitlines():
        name, target = (p.strip() for p in line.split("="))
        entries[name] = target
    return entries


def test_every_program_has_a_script_that_runs_it():
    from acclip_tf import _console

    programs = sorted(
        f[:-3] for f in os.listdir(os.path.join(ROOT, "trainers"))
        if f.endswith(".py") and "__name__ == \"__main__\""
        in open(os.path.join(ROOT, "trainers", f)).read()
    )
    entries = _scripts()
    assert sorted(_console.PROGRAMS) == programs, (programs, _console.PROGRAMS)
    assert entries == {f"acclip-{p.replace('_', '-')}": f"acclip_tf._console:{p}"
                       for p in programs}
    for program in programs:
        assert callable(getattr(_console, program))


def test_a_script_runs_the_program_as_python_m_does():
    code = ("import sys\nfrom acclip_tf._console import heavy_tail_rates\n"
            "sys.argv = ['acclip-heavy-tail-rates', '--helpshort']\nheavy_tail_rates()\n")
    script = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    module = subprocess.run([sys.executable, "-m", "trainers.heavy_tail_rates", "--helpshort"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "(default:" in module.stdout, module.stdout[-2000:]  # the program's flags
    # absl's help exits with status 1; the script's output and status are the module's.
    assert script.returncode == module.returncode, script.stderr[-3000:]
    assert script.stdout == module.stdout


def test_a_script_without_the_trainers_extra_says_what_to_install(monkeypatch, capsys):
    from acclip_tf import _console

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'keras_hub'", name="keras_hub")

    monkeypatch.setattr(_console.runpy, "run_module", missing)
    with pytest.raises(SystemExit) as excinfo:
        _console.bert_pretrain()
    assert excinfo.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: acclip-bert-pretrain needs keras-hub")
    assert "pip install 'acclip-tf[trainers]'" in err

    def other(*args, **kwargs):  # a missing module that is not ours to explain
        raise ModuleNotFoundError("No module named 'foo'", name="foo")

    monkeypatch.setattr(_console.runpy, "run_module", other)
    with pytest.raises(ModuleNotFoundError):
        _console.bert_pretrain()
