# pilotfish: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test protos golden lint e2e unit bench

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The whole suite: unit, golden (each output also checked by `envoy --mode validate`), e2e.
# pytest exits 5 when it collected no test: that fails make, and so CI.
test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q

unit: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q tests

e2e: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q e2e

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pilotfish.demo

# Regenerate pilotfish/api from protos/ (the generated code is committed).
protos: install
	$(BIN)/python -m pilotfish.api.generate

# Rewrite testdata/<case>/expected from the current translator, deleting stale files.
golden: install
	UPDATE_GOLDEN=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q tests/test_golden.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pilotfish testsupport e2e tests/test_golden.py

bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/translate_bench.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/xds_bench.py
