# The two commands the README promises: `make demo` and `make test`.
# Both build .venv from scratch when it is missing (Python 3.11 is all a fresh
# machine needs) and reinstall when setup.cfg changes: `make test` installs the
# [test] extra (which holds [trainers]), `make demo` only [trainers].
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CKSUM := $(shell cksum setup.cfg | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(CKSUM)
TRAINERS_STAMP := $(VENV)/.installed-trainers-$(CKSUM)
LIGHT_VENV ?= /tmp/acclip-tf-light-venv

.PHONY: install install-trainers test demo bench evidence evidence-quick check-light-install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(TRAINERS_STAMP)

$(TRAINERS_STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[trainers]'
	touch $(TRAINERS_STAMP)

install: $(STAMP)

install-trainers: $(TRAINERS_STAMP)

test: install
	$(PY) -m pytest -q tests

# `pip install .` (no extras) into a fresh venv, then a model.fit with ACClip
# and the diagnostics callback, and a check that none of the extras' libraries
# came along. Takes minutes (it installs TensorFlow); not part of `make test`.
check-light-install:
	rm -rf $(LIGHT_VENV)
	$(PYTHON) -m venv $(LIGHT_VENV)
	$(LIGHT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LIGHT_VENV)/bin/python -m pip install --quiet .
	cd $(LIGHT_VENV) && $(LIGHT_VENV)/bin/python $(CURDIR)/tests/light_install_check.py

# The tiny BERT on the Wikipedia excerpt, SGD vs ACClip vs Adam (docs/trainers.md);
# measured wall time in docs/benchmarks.md. Finished runs are skipped on a rerun.
DEMO_FLAGS := --optimizers=sgd,acclip,adam --model_size=tiny --seq_length=128 \
	--global_batch_size=32 --train_steps=500 --warmup_steps=50 --steps_per_loop=50 \
	--eval_every=100 --eval_batches=8 --checkpoint_every=500

demo: install-trainers
	$(PY) -m trainers.compare --model_dir=demo_runs/compare $(DEMO_FLAGS)
	@echo "note: this demo shows the pipeline, not evidence: at this size (tiny BERT, 500 CPU"
	@echo "steps, one seed, untuned rates) the optimizers stay at the unigram plateau (~6.7 nats)"
	@echo "and do not separate. What was measured: docs/evidence.md, section 0 (make evidence)."

bench: install-trainers
	$(PY) bench/optimizer_step.py

# Every table and figure of docs/evidence.md (bench/evidence.py --list: the stages and
# their commands). Resumable: finished stages and trials are skipped on a rerun.
evidence: install
	$(PY) bench/evidence.py

# The headline ladder (causal LM, six optimizers) at one seed, <= 20 min.
evidence-quick: install
	$(PY) bench/evidence.py --quick

clean:
	rm -rf $(VENV) demo_runs
