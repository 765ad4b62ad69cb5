# Two commands do everything: `make run` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: run test lint format test-sqlite test-postgres clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -r requirements.txt -r requirements-dev.txt
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(PY) -m vectormlops.launcher

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# The whole suite twice: SQLite with an embedded Valkey, then PostgreSQL with Redis.
test: lint test-sqlite test-postgres

test-sqlite: $(VENV)/.dev-installed
	@echo "=== pytest on SQLite + embedded Valkey ==="
	env -u DATABASE_URL -u REDIS_URL SECRET_KEY=test-only-secret-long-enough-for-the-fifty-character-rule $(PY) -m vectormlops.embedded_redis -- \
		$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(VENV)/.dev-installed
	@echo "=== pytest on PostgreSQL + Redis ==="
	SECRET_KEY=test-only-secret-long-enough-for-the-fifty-character-rule $(PY) scripts/test_postgres.py $(PYTEST_ARGS)

clean:
	rm -rf var/test-* .pytest_cache
