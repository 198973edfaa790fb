# xata2convex — `make setup`, `make test`, `make demo`. Every target works on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
BIN := $(VENV)/bin
# The Lambda runtime is python3.13; use it where pyenv or the system has it, else any python3 >= 3.11.
PYTHON ?= $(shell for p in python3.13 $$(ls -d /root/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null) python3.12 python3; do \
	  "$$p" -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && { echo "$$p"; break; }; done)

.PHONY: setup test lint typecheck pytest nodetest demo bench clean

setup: $(VENV)/.installed node_modules/.installed postgres

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The Postgres source's tests start a throwaway cluster; they need Debian's server binaries.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

lint: setup
	$(BIN)/ruff check layers functions tests bench
	$(BIN)/ruff format --check layers functions tests bench

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
	$(BIN)/python -m xata2convex.demo

bench: setup
	$(BIN)/python bench/export.py
	$(BIN)/python bench/diff.py
	$(BIN)/python bench/push.py
	$(BIN)/python bench/postgres_export.py

clean:
	rm -rf $(VENV) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
