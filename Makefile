# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench faults clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/guard demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check guard tests bench deploy
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/daemon.py
	$(BIN)/python bench/orgs.py

faults: $(VENV)/.installed-test
	rm -rf .faults
	status=0; GUARD_FAULTS=full $(BIN)/pytest tests/faults || status=$$?; \
	$(BIN)/python tests/faults/report.py --json .faults/summary.json || [ $$status -ne 0 ] || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
