VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help run test check format bench dist install-check clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -qq -e '.[dev]'
	touch $@

run: $(VENV)/.installed ## Install if needed, then evaluate the shipped weights on the test set
	$(BIN)/mnist-infer evaluate --batch-size 100

test: $(VENV)/.installed ## Install with test extras if needed, then run the whole test suite
	$(BIN)/pytest

check: $(VENV)/.installed ## ruff format --check, ruff check, mypy
	$(BIN)/ruff format --check mnist_infer tests bench
	$(BIN)/ruff check mnist_infer tests bench
	$(BIN)/mypy

format: $(VENV)/.installed ## Reformat and autofix with ruff
	$(BIN)/ruff format mnist_infer tests bench
	$(BIN)/ruff check --fix mnist_infer tests bench

bench: $(VENV)/.installed ## Run the benchmarks and write bench/results.json
	$(PY) bench/run.py

dist: $(VENV)/.installed ## Build the wheel and the sdist into dist/
	$(PY) -m build --outdir dist .

install-check: $(VENV)/.installed ## Build, install the wheel in a fresh venv and use it; run the sdist's tests
	.ci/install-check $(PY) $${MNIST_INFER_TEST_DATA:-../shared}/mnist

clean: ## Remove the virtual environment, caches and built packages
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
