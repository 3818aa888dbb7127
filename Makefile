# Everything a fresh machine needs, installed by the targets themselves.
# `make test` : virtualenv + packages, then ruff, mypy and the whole pytest suite.
# `make test-fast`: no apt, Docker or PostgreSQL: unit, golden, contract (SQLite) and corpus tests.
# `make docs` : the documentation site (MkDocs + Material) into site/, checked with --strict.
# `make demo` : the main job on examples/ against an embedded SQLite store.
# `make bench`: benchmarks that print figures (figures in docs/benchmarks.md).
# `make screenshots`: the dashboard's pages in Debian's Chromium, into docs/images/ (README).
# `make soak` : the chaos soak, ~10 minutes, PostgreSQL then SQLite (docs/soak.md); not in
#               `make test`. SOAK_ARGS="--minutes 3" for a shorter one.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
# The Python packages alone (no apt): what `make test-fast` and `make docs` need.
PYSTAMP = $(VENV)/.python-stamp
DOCSTAMP = $(VENV)/.docs-stamp
# The fast tier: everything but the tests that need apt packages, Docker or PostgreSQL.
FAST_TESTS = tests/unit tests/golden tests/contract tests/corpus tests/web
FAST_MARKS = not e2e and not docker and not postgres

.PHONY: test test-fast lint typecheck pytest demo bench soak schemas docs clean system-deps screenshots

system-deps:
	@bash .ci/system-deps

$(PYSTAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(PYSTAMP)

$(STAMP): $(PYSTAMP)
	@$(MAKE) --no-print-directory system-deps
	touch $(STAMP)

$(DOCSTAMP): $(PYSTAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(DOCSTAMP)

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench docs/hooks
	$(BIN)/ruff format --check reconciler tests bench docs/hooks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

test-fast: $(PYSTAMP)
	$(BIN)/pytest -q -n 2 -m "$(FAST_MARKS)" $(FAST_TESTS)

docs: $(DOCSTAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

schemas: $(STAMP)
	$(BIN)/python -m reconciler.prefect_rules.schema_code

bench: $(STAMP)
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_blob_cache.py
	$(BIN)/python bench/bench_steps.py
	$(BIN)/python bench/bench_daemon.py
	$(BIN)/python bench/bench_worker.py
	$(BIN)/python bench/bench_scheduler.py
	$(BIN)/python bench/bench_triggers.py
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_prefect_flows.py
	$(BIN)/python bench/bench_prefect_target.py
	$(BIN)/python bench/bench_api.py

screenshots: $(STAMP)
	$(BIN)/python -m tests.web.screenshots --out docs/images

soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .reconciler .mypy_cache .ruff_cache .pytest_cache site
