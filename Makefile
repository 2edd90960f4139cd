# pilotfish: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-packages demo demo-mesh test protos golden lint e2e e2e-delta unit bench

install: $(STAMP) system-packages

# The mesh e2e tests capture pod traffic with iptables (nat REDIRECT, owner match), as
# Istio's init container does. Debian's package, only when missing; needs root.
system-packages:
	@PATH="$$PATH:/usr/sbin:/sbin" command -v iptables >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing iptables (Debian package) for the mesh tests"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      iptables >/dev/null; \
	  else \
	    echo "note: iptables is missing; the mesh tests need it and root (apt-get install iptables)"; \
	  fi; }

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

# Every e2e test with its Envoys on delta ADS (DELTA_GRPC) instead of state of the world.
e2e-delta: install
	PILOTFISH_TEST_XDS_PROTOCOL=delta PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q e2e

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pilotfish.demo

# Bookinfo in pods with sidecars (network namespaces, iptables): needs root; says so if not.
demo-mesh: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m demo.mesh

# Regenerate pilotfish/api from protos/ (the generated code is committed).
protos: install
	$(BIN)/python -m pilotfish.api.generate

# Rewrite testdata/<case>/expected from the current translator, deleting stale files.
golden: install
	UPDATE_GOLDEN=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q tests/test_golden.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pilotfish testsupport e2e demo tests/test_golden.py

bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/translate_bench.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/xds_bench.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/sidecar_bench.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/loop_stall_bench.py
