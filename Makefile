# clickledger: everything a fresh machine (python3 + make) needs, from scratch.
# Two installs: `install` is what the product runs (the receiver, the pipeline, the
# notebooks); `install-dev` adds the test and lint tools (playwright, schemathesis,
# jupyter...). `make demo` and `make serve` need only the first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev
DATA   ?= data/demo

.PHONY: install install-dev test test-slow serve demo notebooks bench lint clean

install: $(RUNTIME_STAMP)

install-dev: $(DEV_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

test: install-dev
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install-dev
	$(BIN)/python -m pytest -q -m slow

# The demo network (its keys are published in the README) on purpose, and on loopback only.
serve: install
	test -f $(DATA)/config.toml || $(BIN)/clickledger init --demo --data $(DATA)
	$(BIN)/clickledger serve --data $(DATA) --host 127.0.0.1 --port 8080

demo: install
	$(BIN)/clickledger demo --data $(DATA)

notebooks: install
	CLICKLEDGER_DATA=$(DATA) $(BIN)/marimo edit notebooks/

bench: install-dev
	$(BIN)/python bench/run.py

lint: install-dev
	$(BIN)/ruff check receiver pipeline clickledger notebooks tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .ruff_cache .hypothesis *.egg-info
