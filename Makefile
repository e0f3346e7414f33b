# mlops-platform: one Makefile for setup, tests, the offline preview, the demo and the benchmark.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
CHECKOV_VENV := .venv-checkov
STACK ?= dev
FORMAT ?= tree
ARGS ?=
# pytest-xdist workers: a module's tests stay on one worker, in order (--dist loadfile); the server tests
# mostly wait on the servers they start, so they take one worker more than the offline ones.
TEST_WORKERS ?= 2
SERVER_WORKERS ?= 3
REGISTRY ?=
PLATFORM ?= linux/amd64
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup checkov-requirements lint typecheck test test-fast test-servers test-offline preview images docs demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	@echo "uv not found: installing uv 0.13.8 with pip"; python3 -m pip install --user --quiet "uv==0.13.8"

setup: $(UV) node_modules/.installed $(CHECKOV_VENV)/.installed ## build .venv from uv.lock (installs uv if missing), the workflow linter and checkov
	# --compile-bytecode: every test, demo and preview process then starts from .pyc files, even where
	# PYTHONDONTWRITEBYTECODE is set (a later run only checks them: under a second)
	$(UV) sync --frozen --compile-bytecode

# checkov (the outside scanner of the rendered Kubernetes objects, tests/harness/test_checkov.py) in its own
# environment: its pins would fight the platform's in uv.lock. Every package pinned by hash in
# tools/checkov/requirements.txt (`make checkov-requirements` regenerates it from requirements.in).
$(CHECKOV_VENV)/.installed: tools/checkov/requirements.txt
	$(UV) venv --quiet --allow-existing --python 3.11 $(CHECKOV_VENV)
	$(UV) pip sync --quiet --python $(CHECKOV_VENV)/bin/python --require-hashes --compile-bytecode $<
	@touch $@

checkov-requirements: ## re-pin checkov and its dependencies with hashes (tools/checkov/requirements.txt)
	$(UV) pip compile tools/checkov/requirements.in --generate-hashes --python-version 3.11 --quiet \
	  --custom-compile-command "make checkov-requirements" -o tools/checkov/requirements.txt

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund --silent
	@touch $@

demo: setup ## THE main job: MLflow, one serving process per model, Airflow and the platform API, each model trained through the API; ARGS="--once [--model NAME] [--no-api]"
	$(PY) -m devstack.demo $(ARGS)

lint: ## ruff check (line length 120, function size and complexity limits) + ruff format --check, yamllint over the YAML
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m yamllint -s .

typecheck: ## mypy over infra/ components/ stacks/ services/ dags/ harness/ policy/ devstack/ tools/ bench/ (cached in .mypy_cache)
	$(PY) -m mypy infra components stacks services dags harness policy devstack tools bench

test: setup lint typecheck ## THE test command: lint, types, the offline tests cut off from every server, then the tests with real servers
	$(MAKE) --no-print-directory test-offline
	$(MAKE) --no-print-directory test-servers

test-fast: ## every test that needs no server (marker `servers` excluded), in TEST_WORKERS processes
	$(PY) -m pytest -m "not servers" -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test-servers: ## the tests with real servers (PostgreSQL, MLflow, moto, Airflow, serving, Prometheus), in SERVER_WORKERS processes
	$(PY) -m pytest -m servers -n $(SERVER_WORKERS) --dist loadfile --durations=25

# In a private network namespace only loopback exists and nothing listens on it: no PostgreSQL, no MLflow, no
# registry. A test that needs a server but lacks the `servers` marker fails here instead of passing by luck.
test-offline: ## test-fast with no network and no server reachable (unshare -n; plain test-fast where not permitted)
	@if unshare -n true 2>/dev/null; then \
	  unshare -n sh -c 'ip link set lo up && $(MAKE) --no-print-directory test-fast'; \
	else \
	  echo "unshare -n is not permitted here: running test-fast without network isolation"; \
	  $(MAKE) --no-print-directory test-fast; \
	fi

preview: ## run the program under mocks: make preview STACK=dev|prod [FORMAT=json]
	@$(PY) -m harness.preview --stack $(STACK) --format $(FORMAT) $(ARGS)

# Run before the first `pulumi up` of a stack, and whenever an image's inputs change: `docker login` to the registry
# first. What to build and where the references go is decided in Python (tools/delivery/stack_images.py); the one
# Docker step is tools/delivery/buildx.py. Without a Docker engine, the images workflow builds the same images.
images: setup ## build and push every image STACK runs, record their digests in Pulumi.<STACK>.yaml: make images STACK=dev [REGISTRY=ghcr.io/you/repo] [PLATFORM=linux/arm64]
	$(PY) -m tools.delivery.stack_images build --stack $(STACK) --platform $(PLATFORM) $(if $(REGISTRY),--registry $(REGISTRY))

bench: setup ## serving vs `mlflow models serve` under the same load (needs hey): writes bench/results/serving.json
	$(PY) bench/serving_bench.py $(ARGS)

airflow-requirements: ## regenerate services/airflow/requirements.txt (the Airflow image's DAG libraries) from uv.lock
	$(PY) -m services.airflow > services/airflow/requirements.txt

docs: ## regenerate docs/configuration.md from stacks/settings.py
	$(PY) -m tools.docs > docs/configuration.md

clean: ## remove caches and the local demo state
	rm -rf .mypy_cache .ruff_cache .pytest_cache .local
