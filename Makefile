# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv, install torch==2.13.0 first (the CPU build pip finds on this disk), then the
# project, and the Debian packages they need when running as root. Idempotent. The demo installs
# only what it runs; the tests and linters add the dev extras (pytest, mypy, ...), which took a
# further ~30 s of the demo's 5-minute budget on a 2-core EPYC.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
SUM     := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
RUNTIME := $(VENV)/.runtime-$(SUM)
STAMP   := $(VENV)/.installed-$(SUM)
FMNIST  := /usr/share/datasets/fashion-mnist
export OMP_NUM_THREADS ?= 2

.PHONY: install runtime data-deps system-deps demo test lint clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	rm -f $(VENV)/.runtime-*; touch $@

$(STAMP): $(RUNTIME)
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $@

runtime: $(RUNTIME)
install: $(STAMP)

# Fashion-MNIST (real data, offline) from Debian: all the demo needs.
data-deps:
	@if [ ! -d $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      dataset-fashion-mnist >/dev/null; \
	  else echo "not root: run 'apt-get install dataset-fashion-mnist' (or pass --download)"; fi; \
	fi

# The tests also render the HTML report in headless Chromium.
system-deps: data-deps
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver >/dev/null; \
	  else echo "not root: run 'apt-get install chromium chromium-driver' (browser tests will skip)"; fi; \
	fi

demo: runtime data-deps
	$(BIN)/contrastlab demo

test: install system-deps
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -p no:cacheprovider tests

lint: install
	$(BIN)/ruff check contrastlab tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
