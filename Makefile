# The two commands of the README: `make run` and `make test`. Only Python 3.11+ and make needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/gardien migrate
	$(BIN)/gardien demo
	@echo "Serving on http://$(HOST):$(PORT)/graphql (GraphiQL in a browser); Ctrl-C stops."
	$(BIN)/gardien serve --host $(HOST) --port $(PORT)

# build/typecheck is the installed layout (gardien.models, gardien.resolvers, …) made of symlinks,
# for the tools that read files: mypy, and lint-imports (run from inside it, so that this checkout's
# gardien/ folder does not shadow it; it does not walk into symlinked folders, hence cp -rs).
TYPECHECK := build/typecheck
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/gardien
	cp -rs $(CURDIR)/gardien/. $(TYPECHECK)/gardien/
	for part in models resolvers schema console; do cp -rs $(CURDIR)/$$part $(TYPECHECK)/gardien/$$part; done
	MYPYPATH=$(TYPECHECK) $(BIN)/mypy -p gardien
	MYPYPATH=$(TYPECHECK) $(BIN)/mypy tests bench
	cd $(TYPECHECK) && PYTHONPATH=. $(abspath $(BIN))/lint-imports --config $(CURDIR)/pyproject.toml --no-cache

# The whole suite on SQLite, then the data-layer suites again on PostgreSQL when configured
# (.ci/run always configures it; in CI a missing database fails the run).
test: $(VENV)/.dev-installed lint
	$(BIN)/pytest
	@if [ -n "$$GARDIEN_TEST_DATABASE_URL" ]; then \
	  GARDIEN_TEST_BACKEND=postgres $(BIN)/pytest tests/models tests/resolvers tests/schema tests/gardien/mail tests/gardien/graphql; \
	else \
	  echo "PostgreSQL suites not run: set GARDIEN_TEST_DATABASE_URL=postgres://user@host/db"; \
	fi

# Regenerates the committed SDL after a deliberate schema change (API-5).
schema: $(VENV)/.installed
	$(BIN)/gardien schema > schema.graphql

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
