# xata2convex — `make setup`, `make test`, `make demo`. Every target works on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
BIN := $(VENV)/bin
# The Lambda runtime is python3.13: the first one that runs, on PATH or in pyenv's versions (selected
# or not). The venv uses it where there is one, else any python3 >= 3.11; `make build` requires it.
RUNTIME_PYTHON := $(shell for p in python3.13 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13; do \
	  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)' 2>/dev/null && break; done)
PYTHON ?= $(or $(RUNTIME_PYTHON),$(shell for p in python3.12 python3; do \
	  "$$p" -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && { echo "$$p"; break; }; done))

.PHONY: setup build test lint typecheck pytest nodetest demo bench clean postgres chromium

setup: $(VENV)/.installed node_modules/.installed postgres chromium

# xata2convex (the package the layer ships) and, from dev/, the development-only xata2convex_local.
$(VENV)/.installed: pyproject.toml dev/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./dev
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The Postgres source's tests start a throwaway cluster; they need Debian's server binaries.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# sam build checks that the runtime's Python is on PATH, so its folder goes first (pyenv need not select it).
build: setup
	@test -n "$(RUNTIME_PYTHON)" || { echo "make build: needs Python 3.13 (the Lambda runtime); install it, e.g. pyenv install 3.13" >&2; exit 1; }
	PATH="$(dir $(RUNTIME_PYTHON)):$$PATH" $(BIN)/sam build $(if $(SAM_BUILD_DIR),--build-dir "$(SAM_BUILD_DIR)")

# The HTML run report's tests open it in a real browser: Debian's headless Chromium.
chromium:
	@command -v chromium-headless-shell >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null; }

lint: setup
	$(BIN)/ruff check layers functions dev tests bench
	$(BIN)/ruff format --check layers functions dev tests bench

typecheck: setup
	$(BIN)/mypy
	npx tsc --noEmit -p convex
	npx tsc --noEmit -p tsconfig.test.json
	$(BIN)/cfn-lint template.yaml

pytest: setup
	$(BIN)/pytest -q -p no:cacheprovider

nodetest: setup
	npx vitest run

test: lint typecheck nodetest pytest

demo: setup
	$(BIN)/python -m xata2convex_local.demo

bench: setup
	$(BIN)/python bench/export.py
	$(BIN)/python bench/diff.py
	$(BIN)/python bench/push.py
	$(BIN)/python bench/postgres_export.py

clean:
	rm -rf $(VENV) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
