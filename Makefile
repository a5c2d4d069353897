# Two commands matter on a fresh machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run serve test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Runtime only (what `beast serve` needs).
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Runtime + test and AWS tooling.
$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.runtime

## run: install, then serve on the embedded default (in-process cache, SQLite under ./data)
run: $(VENV)/.runtime
	$(BIN)/beast serve

serve: run

## test: install, then run the whole test suite (needs PostgreSQL and Redis on loopback)
test: $(VENV)/.test
	$(BIN)/pytest

lint: $(VENV)/.test
	$(BIN)/cfn-lint template.yaml

clean:
	rm -rf $(VENV) data .pytest_cache
