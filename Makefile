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
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

# `pip install .` (no extras) into a fresh venv, then a model.fit with ACClip
# and the diagnostics callback, and a check that none of the extras' libraries
# came along. Takes minutes (it installs TensorFlow); not part of `make test`.
check-light-install:
	rm -rf $(LIGHT_VENV)
	$(PYTHON) -m venv $(LIGHT_VENV)
	$(LIGHT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LIGHT_VENV)/bin/python -m pip install --quiet .
	cd $(LIGHT_VENV) && $(LIGHT_VENV)/bin/python $(CURDIR)/tests/light_install_check.py

# The tuned ladder's causal LM at one seed (docs/evidence.md, section 0): SGD, ACClip(normalize) and
# Adam at the rates the ladder chose on validation (--family_settings: the causal LM trainer's
# own defaults, CausalLMTask.optimizer_settings), 400 steps each on the Wikipedia excerpt,
# ~8 min on a 2-core CPU; results.md ends with who won and by how much. Finished runs are
# skipped on a rerun.
DEMO_LM_FLAGS := --model_size=tiny --tokenizer=word --vocab_size=8192 --seq_length=64 \
	--global_batch_size=32 --warmup_steps=50 --steps_per_loop=50 --eval_every=100 \
	--checkpoint_every=500 --eval_batches=0 --dropout=0.1 --train_steps=400

demo: install-trainers
	$(PY) -m trainers.sweep --program=causal_lm --model_dir=demo_runs/lm \
		--optimizers=sgd,acclip_norm,adam --trainer_flags="$(DEMO_LM_FLAGS)" --seeds=1 \
		--family_settings
	@cat demo_runs/lm/results.md
	@echo "One seed: the tuned ladder's 3-seed table is docs/evidence.md, section 0 (make evidence)."

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
