# Everything a fresh machine needs, installed by the targets themselves.
# `make test` : virtualenv + packages, then ruff, mypy and the whole pytest suite.
# `make demo` : the main job on examples/ against an embedded SQLite store.
# `make bench`: benchmarks that print figures (figures in README.md, Benchmarks).
# `make soak` : the chaos soak, ~10 minutes, PostgreSQL then SQLite (docs/soak.md); not in
#               `make test`. SOAK_ARGS="--minutes 3" for a shorter one.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: test lint typecheck pytest demo bench soak schemas clean system-deps

system-deps:
	@bash .ci/system-deps

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

schemas: $(STAMP)
	$(BIN)/python -m reconciler.spec.schema_code

bench: $(STAMP)
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_steps.py
	$(BIN)/python bench/bench_daemon.py
	$(BIN)/python bench/bench_worker.py
	$(BIN)/python bench/bench_scheduler.py
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_prefect_flows.py

soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .reconciler .mypy_cache .ruff_cache .pytest_cache
