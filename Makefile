# erp-oa-sync: `make demo` and `make test` do every set-up step themselves.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1
MYSQL_HINT := setup: mysqlclient (the C MariaDB/MySQL driver) did not build: install libmariadb-dev and pkg-config, then make setup again; until then use mysql+pymysql URLs

.PHONY: help setup system-deps demo test test-fast lint typecheck bench clean services

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

system-deps:  ## Debian ODBC drivers and Chromium (skipped where apt-get is not available)
	@bash scripts/system-deps.sh

# --compile-bytecode: uv leaves it out, and where PYTHONDONTWRITEBYTECODE is set nothing caches it later, so each
# sync process (each Airflow task) would compile pandas, SQLAlchemy and Great Expectations again (~5 s here).
$(STAMP): pyproject.toml
	@bash scripts/system-deps.sh --build || echo "$(MYSQL_HINT)"
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv || true
	@if command -v uv >/dev/null 2>&1; then \
		[ -x $(PY) ] || uv venv --quiet -p $(PYTHON) $(VENV); \
		uv pip install --quiet --compile-bytecode -p $(PY) -e '.[airflow,dev]'; \
		uv pip install --quiet --compile-bytecode -p $(PY) -e '.[mysql]' || echo "$(MYSQL_HINT)"; \
	else \
		[ -x $(PY) ] || $(PYTHON) -m venv $(VENV); \
		$(PY) -m pip install --quiet --upgrade pip; \
		$(PY) -m pip install --quiet -e '.[airflow,dev]'; \
		$(PY) -m pip install --quiet -e '.[mysql]' || echo "$(MYSQL_HINT)"; \
	fi
	@touch $(STAMP)

setup: $(STAMP)  ## virtual environment with the package, Airflow and dev tools

services:  ## make sure PostgreSQL and MariaDB are running
	@bash scripts/services.sh

demo: setup  ## build the demo ERP and OA (SQLite) and run a full sync into var/demo
	$(VENV)/bin/erpoa demo

test: setup system-deps services  ## lint, type-check and run the whole test suite on SQLite, PostgreSQL and MariaDB
	$(VENV)/bin/ruff check etl dags tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest

test-fast: setup  ## unit and SQLite tests only
	$(PY) -m pytest -m "unit or sqlite"

lint:  ## ruff
	$(VENV)/bin/ruff check etl dags tests benchmarks

typecheck:  ## mypy on etl/
	$(VENV)/bin/mypy

bench: setup system-deps services  ## benchmarks (writes benchmarks/results/*.json and docs/performance.md)
	$(PY) benchmarks/run.py

clean:  ## remove the virtual environment and var/
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
