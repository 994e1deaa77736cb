VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Real MNIST for the tests and benchmarks, when it can be had: see .ci/find-test-data
FIND_DATA = $(PY) .ci/find-test-data

.DEFAULT_GOAL := help
.PHONY: help run test check format bench dist install-check pythons clean

help: ## List the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -qq -e '.[dev]'
	touch $@

run: $(VENV)/.installed ## Install if needed, then evaluate the shipped weights on the test set
	@$(BIN)/mnist-infer evaluate --batch-size 100 || { rc=$$?; \
	  if [ $$rc -eq 3 ]; then \
	    dir=DIR; [ -d ../shared/mnist ] && dir=../shared/mnist; \
	    echo "make run: MNIST could not be downloaded (offline?): \`MNIST_INFER_MIRRORS=$$dir make run\` reads it from $$dir, a folder holding the four MNIST .gz files" >&2; \
	  fi; exit $$rc; }

test: $(VENV)/.installed ## Run the whole test suite; the real-MNIST tests whenever the data can be had
	@data="$$($(FIND_DATA) test)" && MNIST_INFER_TEST_DATA="$$data" $(PY) -m pytest

check: $(VENV)/.installed ## ruff format --check, ruff check, mypy
	$(BIN)/ruff format --check mnist_infer tests bench
	$(BIN)/ruff check mnist_infer tests bench
	$(BIN)/mypy

format: $(VENV)/.installed ## Reformat and autofix with ruff
	$(BIN)/ruff format mnist_infer tests bench
	$(BIN)/ruff check --fix mnist_infer tests bench

bench: $(VENV)/.installed ## Run the benchmarks and write bench/results.json (parts without data skip)
	@data="$$($(FIND_DATA) bench)" && MNIST_INFER_TEST_DATA="$$data" $(PY) bench/run.py

dist: $(VENV)/.installed ## Build the wheel and the sdist into dist/
	$(PY) -m build --outdir dist .

install-check: $(VENV)/.installed ## Build, use the wheel in a fresh venv, run the sdist's tests
	@data="$$($(FIND_DATA) install-check)" && .ci/install-check $(PY) "$$data"

pythons: ## Run the restricted unpickler's tests on Python 3.11, 3.12 and 3.13 (venvs in .venvs/)
	.ci/pythons

clean: ## Remove the virtual environments, caches and built packages
	rm -rf $(VENV) .venvs .pytest_cache .mypy_cache .ruff_cache build dist
