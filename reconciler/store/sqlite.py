"""The embedded SQLite store backend (the default): what SQLite needs of the SQL store.

Every query is store/sql_store.py's (and sql_runs.py's, prefect_records.py's); this module
connects, and says what a write and a read snapshot are here. WAL journal so readers never
block the writer; `BEGIN IMMEDIATE` so two writers (two `reconcile` processes) queue up
instead of interleaving, which is also what makes claims and revisions exact (SQLite has no
row locks: the writer lock covers the file); a busy timeout so the second one waits rather
than fails. SQLite cannot tell other processes of a change, so `wait_for_runs` just waits.

Inside one process, writers queue on a lock of the file's own before they ask SQLite: a worker
holds a connection per run, and a few dozen connections polling SQLite's lock with its
sleep-and-retry busy handler can starve one of them past the busy timeout (runs CRASHED with
"database is locked" under 4 workers x 8 runs). A thread waiting on the lock is woken when the
lock is free; only one connection per process then competes with the other processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

from reconciler.core.errors import StoreUrlError
from reconciler.core.repo_root import ignore_store_directory
from reconciler.store.prefect_records import PrefectRecords
from reconciler.store.sql import SQLITE_DIALECT, Conn, Dialect
from reconciler.store.sql_runs import SqlRuns
from reconciler.store.sql_store import SqlStore
from reconciler.store.web_records import WebRecords

BUSY_TIMEOUT_SECONDS = 60.0
_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: str) -> threading.RLock:
    """This process's writer lock of one database file (re-entrant: a nested write on the
    same thread still gets SQLite's own error, not a hang)."""
    key = os.path.realpath(path)
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.get(key)
        if lock is None:
            lock = _WRITE_LOCKS[key] = threading.RLock()
        return lock


MIN_SQLITE = (3, 35)
"""RETURNING (3.35, 2021) is part of the common SQL."""


class SqliteStore(SqlStore, SqlRuns, PrefectRecords, WebRecords):
    dialect: ClassVar[Dialect] = SQLITE_DIALECT
    _DATABASE = "SQLite"
    _PLACE = "file"

    def __init__(self, path: str, *, url: str, readonly: bool = False) -> None:
        self.url = url
        self.path = path
        self.shown = path
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._writer_lock = _write_lock(path)
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreUrlError(
                f"this Python's SQLite is {sqlite3.sqlite_version}; the store needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or newer",
                "use a Python built with a newer SQLite, or a PostgreSQL store",
            )
        if readonly and not os.path.exists(path):
            return  # reads as an empty store; nothing is created
        if not readonly:
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StoreUrlError(
                    f"cannot create the store directory {directory}: {exc}"
                ) from None
            ignore_store_directory(path)
        try:
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreUrlError(
                f"cannot open the store {path}: {exc}",
                "check the path in --store / RECONCILER_STORE; the file must be a reconciler "
                "SQLite store",
            ) from None
        except BaseException:
            self.close()
            raise

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    def _is_open(self) -> bool:
        return self._conn is not None

    # -- what the SQL store needs -----------------------------------------------------------

    def _tables(self) -> set[str]:
        rows = self._read(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        return {str(row[0]) for row in rows}

    def _migration_write(self) -> AbstractContextManager[Conn]:
        return self._write()  # BEGIN IMMEDIATE: one process at a time already

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._conn is None:
            return []
        return self._conn.execute(SQLITE_DIALECT.text(sql), params).fetchall()

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        conn = self._require()
        conn.execute("BEGIN")  # one read snapshot for everything inside
        try:
            yield
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[Conn]:
        """One atomic write under SQLite's write lock."""
        if self.readonly:
            raise RuntimeError("a read-only store cannot write")
        conn = self._require()
        if not self._writer_lock.acquire(timeout=BUSY_TIMEOUT_SECONDS):
            raise sqlite3.OperationalError("database is locked")  # as SQLite's busy timeout says
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Conn(conn, SQLITE_DIALECT)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            self._writer_lock.release()

    def wait_for_runs(self, pool: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """SQLite cannot tell other processes of a change: wait out the timeout (or until
        `stop`), and let the caller poll."""
        (stop or threading.Event()).wait(timeout)
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
