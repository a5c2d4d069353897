# Two commands matter on a fresh machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run serve test docs-check lint sam bench bench-quick clean

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

## run: install, then serve on the embedded default (in-process cache, SQLite under ./data),
## prices from the built-in exchange simulator so it works offline; `make run SERVE_ARGS=`
## connects to the real exchanges instead
SERVE_ARGS ?= --sim
run: $(VENV)/.runtime
	$(BIN)/beast serve $(SERVE_ARGS)

serve: run

## test: install, then run the whole test suite (needs PostgreSQL and Redis on loopback)
test: $(VENV)/.test
	$(BIN)/pytest

## docs-check: run the examples of README.md and docs/ against a live `beast serve --sim` and check
## what they claim (also part of `make test`: tests/test_docs.py)
docs-check: $(VENV)/.test
	$(BIN)/python tools/docs_runner.py

lint: $(VENV)/.test
	$(BIN)/cfn-lint template.yaml

# The SAM CLI pins its own boto3/click: it gets a virtual environment of its own.
## bench: the full benchmark run by hand (starts everything on loopback; writes bench/RESULTS.md)
bench: $(VENV)/.test
	$(BIN)/python bench/run.py --full

## bench-quick: a few seconds per figure, to prove the harness works (CI)
bench-quick: $(VENV)/.test
	$(BIN)/python bench/run.py --quick

SAM_VENV := .sam-venv
SAM      := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-2 $(SAM_VENV)/bin/sam

$(SAM_VENV)/bin/sam:
	python3.11 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==1.170.0

## sam: `sam validate --lint`, then `sam build` (the layer and every function; needs PyPI)
sam: $(SAM_VENV)/bin/sam
	$(SAM) validate --lint
	$(SAM) build

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam data .pytest_cache
