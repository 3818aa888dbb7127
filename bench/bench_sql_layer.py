"""Benchmark behind the store's SQL layer choice (issue 12): SQLAlchemy Core or our own
`reconciler/store/sql.py`, measured where the store spends its time.

- import: a fresh interpreter importing the layer (median of `--imports` processes), beside
  the drivers themselves; every CLI run pays it, a dry-run included;
- per statement: a read by primary key and an upsert on SQLite (in memory: the layer's cost,
  not the disk's), through the bare driver, our layer, SQLAlchemy Core with `text()`, and
  SQLAlchemy Core statements (`select()`, `insert().on_conflict_do_update()`).

SQLAlchemy is not a dependency of reconciler; it is measured when the environment has it
(the test extra brings it with Prefect).

    .venv/bin/python bench/bench_sql_layer.py [--imports 9] [--statements 20000]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import machine  # noqa: E402
from reconciler.store.sql import SQLITE_DIALECT, Conn  # noqa: E402

STORE_DEPENDENCIES = "import reconciler.store.base, reconciler.core.errors"
IMPORTS = {
    "sqlite3 (driver)": "import sqlite3",
    "psycopg (driver)": "import psycopg",
    "reconciler.store.sql (ours)": "import reconciler.store.sql",
    "sqlalchemy": "import sqlalchemy",
    "sqlalchemy + sqlite and psycopg dialects": (
        "import sqlalchemy; import sqlalchemy.dialects.sqlite.pysqlite; "
        "import sqlalchemy.dialects.postgresql.psycopg"
    ),
    "alembic (migrations)": "import alembic.command, alembic.migration",
}
SCHEMA = "CREATE TABLE variables (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT)"
READ = "SELECT name, value FROM variables WHERE name = ?"
UPSERT = (
    "INSERT INTO variables (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


def import_seconds(code: str, times: int) -> float | None:
    """Seconds the import takes in a fresh interpreter (the store's own dependencies and
    the interpreter's start are not counted), median of `times`."""
    timed = (
        f"import time; {STORE_DEPENDENCIES}; started = time.perf_counter(); {code}; "
        "print(time.perf_counter() - started)"
    )
    samples = []
    for _ in range(times):
        done = subprocess.run(
            [sys.executable, "-c", timed], cwd=ROOT, capture_output=True, text=True
        )
        if done.returncode != 0:
            return None
        samples.append(float(done.stdout))
    return statistics.median(samples)


def per_call(fn: Callable[[int], None], count: int) -> float:
    """Microseconds per call, best of three rounds."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for index in range(count):
            fn(index)
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def statement_costs(count: int) -> dict[str, tuple[float, float]]:
    raw = sqlite3.connect(":memory:", isolation_level=None)
    raw.execute(SCHEMA)
    raw.executemany(UPSERT, [(f"v{i}", "1", "now") for i in range(1000)])
    ours = Conn(raw, SQLITE_DIALECT)
    found: dict[str, tuple[float, float]] = {
        "bare sqlite3": (
            per_call(lambda i: raw.execute(READ, (f"v{i % 1000}",)).fetchall(), count),
            per_call(lambda i: raw.execute(UPSERT, (f"v{i % 1000}", "2", "now")), count),
        ),
        "reconciler.store.sql": (
            per_call(lambda i: ours.all(READ, (f"v{i % 1000}",)), count),
            per_call(lambda i: ours.execute(UPSERT, (f"v{i % 1000}", "2", "now")), count),
        ),
    }
    try:
        import sqlalchemy as sa
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    except ImportError:
        return found
    engine = sa.create_engine("sqlite://", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(SCHEMA)
        read_text = sa.text("SELECT name, value FROM variables WHERE name = :name")
        upsert_text = sa.text(
            "INSERT INTO variables (name, value, updated_at) VALUES (:name, :value, :at) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at"
        )
        conn.execute(
            upsert_text, [{"name": f"v{i}", "value": "1", "at": "now"} for i in range(1000)]
        )
        found["SQLAlchemy Core, text()"] = (
            per_call(lambda i: conn.execute(read_text, {"name": f"v{i % 1000}"}).all(), count),
            per_call(
                lambda i: conn.execute(
                    upsert_text, {"name": f"v{i % 1000}", "value": "2", "at": "now"}
                ),
                count,
            ),
        )
        table = sa.Table(
            "variables",
            sa.MetaData(),
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("value", sa.Text),
            sa.Column("updated_at", sa.Text),
        )
        select = sa.select(table.c.name, table.c.value).where(table.c.name == sa.bindparam("name"))
        insert = sqlite_insert(table)
        upsert = insert.on_conflict_do_update(
            index_elements=[table.c.name],
            set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
        )
        found["SQLAlchemy Core statements"] = (
            per_call(lambda i: conn.execute(select, {"name": f"v{i % 1000}"}).all(), count),
            per_call(
                lambda i: conn.execute(
                    upsert, {"name": f"v{i % 1000}", "value": "2", "updated_at": "now"}
                ),
                count,
            ),
        )
    engine.dispose()
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--imports", type=int, default=9)
    parser.add_argument("--statements", type=int, default=20000)
    options = parser.parse_args()
    print(f"machine: {machine()}\n")
    print("| import (fresh interpreter, median) | seconds |")
    print("|---|---|")
    for label, code in IMPORTS.items():
        seconds = import_seconds(code, options.imports)
        shown = "not installed" if seconds is None else f"{seconds:.3f} s"
        print(f"| {label} | {shown} |")
    print("\n| per statement (SQLite in memory, best of 3) | read by key | upsert |")
    print("|---|---|---|")
    for label, (read, write) in statement_costs(options.statements).items():
        print(f"| {label} | {read:.1f} µs | {write:.1f} µs |")


if __name__ == "__main__":
    main()
