# The two commands the README promises: `make demo` and `make test`.
# Both build .venv from scratch when it is missing (Python 3.11 is all a fresh
# machine needs) and reinstall when setup.cfg changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum setup.cfg | cut -d' ' -f1)

.PHONY: install test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) -m trainers.compare --model_dir=demo_runs/compare

bench: install
	$(PY) bench/optimizer_step.py

clean:
	rm -rf $(VENV) demo_runs
