# segflow — `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the rule kernel's sources are part of the stamp: editing them rebuilds the extension
KERNEL_SRC := $(wildcard src/segflow/rules/incremental/kernel/*.pyx src/segflow/rules/incremental/kernel/*.hpp)
HASH := $(shell cat pyproject.toml setup.py $(KERNEL_SRC) | cksum | cut -d' ' -f1)
RUNTIME := $(VENV)/.runtime-$(HASH)
STAMP := $(VENV)/.installed-$(HASH)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

# `make demo` needs segflow and its runtime only (~640 MB instead of ~2.2 GB with the extras);
# the first target that needs the dev extras installs them (and stands for the runtime too)
$(RUNTIME): pyproject.toml setup.py $(KERNEL_SRC)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if [ ! -e $(STAMP) ]; then \
	  $(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -e .; fi
	rm -f $(VENV)/.runtime-*; touch $(RUNTIME)

$(STAMP): pyproject.toml setup.py $(KERNEL_SRC)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,postgres,clickhouse,spark,sources]'
	rm -f $(VENV)/.installed-* $(VENV)/.runtime-*; touch $(STAMP) $(RUNTIME)

install: $(STAMP) ## Create .venv and install segflow with the dev extras

demo: $(RUNTIME) ## Run segflow on its embedded defaults with generated live traffic (runtime only)
	$(BIN)/segflow demo $(DEMO_ARGS)

test: $(STAMP) ## Run the test suite
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not spark and not long"

test-spark: $(STAMP) ## Run the Spark SQL engine tests (CI runs them after `test`)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m spark

test-long: $(STAMP) ## Run the long variants: multi-process, Kafka restarts, 400-example differential runs (CI runs them too)
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout 0 -m long $(LONG_ARGS)

test-fast: $(STAMP) ## Run the tests without the slow marker
	$(BIN)/python -m pytest -q -m "not slow and not spark and not long"

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP) ## Format the code
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP) ## Run every benchmark against its baseline (rows in benchmarks/latest.md)
	$(BIN)/python -m benchmarks.run

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: help install demo test test-spark test-long test-fast lint format bench clean
