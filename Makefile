# vodedge — the only set-up is `make run` or `make test`; both create .venv and install.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[origin,dev]'
	touch $(STAMP)

## Start origin (with a generated sample title) and an appliance on loopback; data under ./var.
run: install
	$(PY) scripts/run_local.py

## Install what is needed and run the test suite.
test: install
	bash scripts/ensure_test_tools.sh
	$(PY) -m pytest -q

## ruff (lint + format check) and mypy (strict on our packages).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Benchmarks against reference servers (installs wrk, varnish, nginx from Debian when missing).
bench: install
	bash bench/install_refs.sh
	$(PY) bench/run_all.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
