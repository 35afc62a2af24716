# clickledger: everything a fresh machine (python3 + make) needs, from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= data/demo

.PHONY: install test test-slow serve demo notebooks bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# The demo network (its keys are published in the README) on purpose, and on loopback only.
serve: install
	test -f $(DATA)/config.toml || $(BIN)/clickledger init --demo --data $(DATA)
	$(BIN)/clickledger serve --data $(DATA) --host 127.0.0.1 --port 8080

demo: install
	$(BIN)/clickledger demo --data $(DATA)

notebooks: install
	CLICKLEDGER_DATA=$(DATA) $(BIN)/marimo edit notebooks/

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check receiver pipeline notebooks tests bench

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .ruff_cache .hypothesis *.egg-info
