# Two commands matter on a fresh machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run serve test test-unit test-py313 docs-check lint sam invoke deploy-params layer-requirements bench bench-quick clean

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
## what they claim (also part of `make test`: tests/integration/test_docs.py)
docs-check: $(VENV)/.test
	$(BIN)/python tools/docs_runner.py

## test-unit: only tests/unit (no Redis, PostgreSQL, servers or child processes; under a minute)
test-unit: $(VENV)/.test
	$(BIN)/pytest tests/unit

# checkov pins boto3 1.35 (the project pins 1.44): like the SAM CLI, it gets a virtual environment of its own.
LINT_VENV := .lint-venv
CHECKOV   := $(LINT_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation

$(LINT_VENV)/bin/checkov:
	python3.11 -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --upgrade pip
	$(LINT_VENV)/bin/pip install --quiet checkov==3.3.30

## lint: ruff (lint and format), mypy, import-linter (the direction of the packages), the Lambda
## layer's requirements, cfn-lint with the serverless rules, then checkov on the template and on its
## SAM transform; zero findings (each suppression carries its reason where it is)
lint: $(VENV)/.test $(LINT_VENV)/bin/checkov
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(PYTHON) tools/layer_requirements.py | diff -u layers/common/requirements.txt - || { echo "run make layer-requirements" >&2; exit 1; }
	$(BIN)/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml
	$(CHECKOV) -f template.yaml
	mkdir -p .aws-sam
	AWS_DEFAULT_REGION=us-east-2 $(BIN)/python tests/cfnstack.py .aws-sam/transformed.json
	$(CHECKOV) -f .aws-sam/transformed.json

## deploy-params: samconfig.toml's parameter_overrides for ENV (dev or prod), to extend on the command line:
## sam deploy --config-env dev --parameter-overrides "$$(make -s deploy-params ENV=dev) LpoImageUri=… LrsImageUri=…"
deploy-params:
	@test -n "$(ENV)" || { echo "usage: make deploy-params ENV=dev|prod (an environment of samconfig.toml)" >&2; exit 2; }
	@$(PYTHON) -c "import sys, tomllib; envs = tomllib.load(open('samconfig.toml', 'rb')); env = envs.get(sys.argv[1]); print(env['deploy']['parameters']['parameter_overrides']) if env else sys.exit('make deploy-params: no environment ' + repr(sys.argv[1]) + ' in samconfig.toml (have: ' + ', '.join(k for k in envs if k != 'version') + ')')" "$(ENV)"

## invoke: run one function on an event the way `sam local invoke` does, without Docker;
## settings from env.json (as `--env-vars` takes them): make invoke FN=assets EVENT=events/assets_list.json
invoke: $(VENV)/.test
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<function> EVENT=<events/file.json>" >&2; exit 2; }
	@AWS_DEFAULT_REGION=us-east-2 $(BIN)/python tests/localinvoke.py "$(FN)" "$(EVENT)"

## layer-requirements: write the Lambda layer's requirements.txt from pyproject's `layer` extra
layer-requirements:
	$(PYTHON) tools/layer_requirements.py > layers/common/requirements.txt


# Python 3.13 (the images run 3.11; see bench/GAPS.md): Debian 12 packages only 3.11, so this uses an
# interpreter already on the machine: a python3.13 on PATH that runs (pyenv's shim does not unless
# 3.13 is selected), else pyenv's 3.13 install; nothing downloads one. PY313=... to choose.
PY313   ?= $(or $(shell python3.13 -c "import sys; print(sys.executable)" 2>/dev/null),$(firstword \
	$(wildcard /usr/local/bin/python3.13 /usr/bin/python3.13 $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.13*/bin/python3.13)))
VENV313 := .venv313
# The price server's tests (HTTP /price, WS, UDP, the meter, the uvicorn and granian wrappers, hostile
# clients), run on 3.13 by `make test-py313`, so the next Python is known to work before an image moves to it.
TESTS_PY313 ?= tests/unit tests/integration/test_price_http.py tests/integration/test_prebuilt_answers.py \
	tests/integration/test_udp_eager.py tests/integration/test_udp_amplification.py \
	tests/integration/test_lrs_udp.py tests/integration/test_realtime.py tests/integration/test_live_prices.py \
	tests/integration/test_billing_meter.py tests/integration/test_hostile.py \
	tests/integration/test_uvicorn_http_guards.py tests/integration/test_uvicorn_ws_direct.py \
	tests/integration/test_uvicorn_server.py tests/integration/test_granian_server.py

$(VENV313)/.test: pyproject.toml
	@test -n "$(PY313)" || { echo "make: no Python 3.13 found (python3.13 on PATH, /usr/bin, /usr/local/bin, pyenv versions/3.13*): the 3.13 venv ($(VENV313)) cannot be built; install one (pyenv install 3.13) or set PY313=/path/to/python3.13" >&2; exit 1; }
	$(PY313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --quiet --upgrade pip
	$(VENV313)/bin/pip install --quiet -e '.[test]'
	touch $@

## test-py313: the price server's hot-path tests (HTTP, WS, UDP, unit) on Python 3.13 (TESTS_PY313);
## fails when the machine has no Python 3.13, and (CI=true) when Redis or PostgreSQL is down
## instead of skipping those tests
test-py313: $(VENV313)/.test
	CI=true $(VENV313)/bin/python -m pytest $(TESTS_PY313)

## bench: the full benchmark run by hand on a quiet machine, ~15 min (starts everything on loopback;
## writes bench/RESULTS.md); the UDP figures also on Python 3.13 when python3.13 is on PATH
bench: $(VENV)/.test $(if $(PY313),$(VENV313)/.test)
	$(BIN)/python bench/run.py --full $(if $(PY313),--server-python $(VENV313)/bin/python)

## bench-quick: the same figures for a few seconds each, to prove the harness works (CI; fails only when
## a figure cannot be taken, never on a goal missed); UDP on 3.13 too when .venv313 is already built
bench-quick: $(VENV)/.test
	$(BIN)/python bench/run.py --quick $(if $(wildcard $(VENV313)/.test),--server-python $(VENV313)/bin/python)

# The SAM CLI pins its own boto3/click: it gets a virtual environment of its own.
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
	rm -rf $(VENV) $(VENV313) $(SAM_VENV) $(LINT_VENV) .aws-sam data .pytest_cache
