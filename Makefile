# Two commands matter on a fresh machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run serve test test-py313 lint sam bench bench-quick clean

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

lint: $(VENV)/.test
	$(BIN)/cfn-lint template.yaml

# The SAM CLI pins its own boto3/click: it gets a virtual environment of its own.
# Python 3.13 for the UDP figure and the tests of the paths it changes (eager tasks): Debian 12 has
# no python3.13 package and uv must not download interpreters, so this uses one already on the
# machine (pyenv's on these machines); without one, the targets below say so and the bench skips it.
PY313 ?= $(firstword $(wildcard /usr/bin/python3.13 /usr/local/bin/python3.13 /root/.pyenv/versions/3.13*/bin/python3.13))
VENV313 := .venv313
TEST313_PINS := pytest==9.0.3 pytest-asyncio==1.5.0 pytest-timeout==2.4.0 hypothesis==6.170.15 prometheus_client==0.26.0

$(VENV313)/.test: pyproject.toml
	@test -n "$(PY313)" || { echo "no Python 3.13 on this machine (Debian 12 packages only 3.11)"; exit 1; }
	$(PY313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --quiet --upgrade pip
	$(VENV313)/bin/pip install --quiet -e . $(TEST313_PINS)
	touch $@

## test-py313: the UDP, HTTP and WebSocket tests on Python 3.13 (eager tasks for UDP)
test-py313: $(VENV313)/.test
	$(VENV313)/bin/python -m pytest tests/test_udp_eager.py tests/test_price_http.py tests/test_prebuilt_answers.py \
		tests/test_realtime.py tests/test_granian_server.py -q

## bench: the full benchmark run by hand on a quiet machine (starts everything on loopback; writes
## bench/RESULTS.md); the UDP figure also on Python 3.13 when the machine has one
bench: $(VENV)/.test $(if $(PY313),$(VENV313)/.test)
	$(BIN)/python bench/run.py --full $(if $(PY313),--server-python $(VENV313)/bin/python)

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
	rm -rf $(VENV) $(VENV313) $(SAM_VENV) .aws-sam data .pytest_cache
