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
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests

# `pip install .` (no extras) into a fresh venv, then a model.fit with ACClip
# and the diagnostics callback, and a check that none of the extras' libraries
# came along. Takes minutes (it installs TensorFlow); not part of `make test`.
check-light-install:
	rm -rf $(LIGHT_VENV)
	$(PYTHON) -m venv $(LIGHT_VENV)
	$(LIGHT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LIGHT_VENV)/bin/python -m pip install --quiet .
	cd $(LIGHT_VENV) && $(LIGHT_VENV)/bin/python $(CURDIR)/tests/light_install_check.py

# The cheapest cell of the batch-size crossover where the optimizers separate
# (docs/evidence.md, section 0, lm_crossover_b16): the causal LM at 16 windows x 64 tokens
# = 1k tokens/step, 200 steps, on the Wikipedia excerpt; its metric is optimisation speed,
# the loss on 256 fixed training windows (dropout off), the held-out loss beside it. SGD
# and Adam at that cell's tuned settings (a test keeps them equal to
# docs/figures/evidence/lm_crossover_b16.json), ACClip(normalize) at Adam's rate and
# warm-up with its clipping active from the first step (tau_0 1e-6, epsilon 1e-6): not
# tuned at this batch. --deterministic: a rerun on this CPU prints the same numbers.
# Finished runs are skipped on a rerun (rm -r demo_runs to start over).
DEMO_LM_FLAGS := --model_size=tiny --tokenizer=word --vocab_size=8192 --seq_length=64 \
	--global_batch_size=16 --warmup_steps=20 --steps_per_loop=50 --eval_every=50 \
	--checkpoint_every=200 --eval_batches=8 --dropout=0.1 --fixed_train_examples=256 \
	--train_steps=200 --deterministic
DEMO_RATES := sgd=0.2,adam=0.002,acclip_norm=0.002
DEMO_TUNED := sgd:momentum=0.9,sgd:warmup_steps=50,adam:beta_2=0.95,adam:warmup_steps=50
DEMO_ACCLIP := acclip_norm:acclip_initial_tau=1e-6,acclip_norm:epsilon=1e-6,acclip_norm:warmup_steps=50
DEMO_OPTIONS := $(DEMO_TUNED),$(DEMO_ACCLIP)

demo: install-trainers
	$(PY) -m trainers.sweep --program=causal_lm --model_dir=demo_runs/lm \
		--optimizers=sgd,adam,acclip_norm --trainer_flags="$(DEMO_LM_FLAGS)" --seeds=1 \
		--objective=fixed_train --lr_grid=$(DEMO_RATES) --option_grid=$(DEMO_OPTIONS)
	@cat demo_runs/lm/results.md
	@echo "One seed of the 1k-tokens/step cell; 3 seeds and the larger batches, where Adam leads: docs/evidence.md, section 0 (make evidence)."

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
