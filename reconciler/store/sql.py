"""The SQL layer under the store: one query text for SQLite and PostgreSQL.

Every query of the store (store/sql_store.py, sql_runs.py, prefect_records.py) is written
once, in the common SQL both databases speak, with `?` placeholders. A `Dialect` turns that
text into what its driver runs, once per distinct text (cached):

- PostgreSQL (psycopg): `?` becomes `%s` (and a literal `%` is doubled);
- SQLite (sqlite3): row-lock clauses (`FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, with
  `OF t` and `SKIP LOCKED`) are dropped, since a SQLite write transaction (`BEGIN IMMEDIATE`)
  already excludes every other writer; `COLLATE "C"` is dropped, since SQLite's default
  collation is already code-point order.

The one construct the text cannot carry is a list parameter: `Dialect.in_list` writes
`column IN (?, ?, ...)` for SQLite and `column = ANY(?)` with one array for PostgreSQL.

Why not SQLAlchemy Core: docs/design-notes.md, "One SQL code path" (its import alone costs a
third of a dry-run).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


class Cursor(Protocol):
    """What sqlite3's and psycopg's cursors both offer, as used here."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...

    def close(self) -> Any: ...


class Driver(Protocol):
    """A DB-API connection as both drivers give it (sqlite3, psycopg 3)."""

    def execute(self, sql: str, params: Sequence[Any], /) -> Cursor: ...

    def cursor(self) -> Cursor: ...


_LOCK_CLAUSE = re.compile(r"\s+FOR (?:NO KEY )?(?:UPDATE|SHARE)(?: OF \w+)?(?: SKIP LOCKED)?")


@lru_cache(maxsize=1024)
def _sqlite_text(sql: str) -> str:
    return _LOCK_CLAUSE.sub("", sql).replace(' COLLATE "C"', "")


@lru_cache(maxsize=1024)
def _postgres_text(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _sqlite_in(column: str, values: Collection[Any], negate: bool) -> tuple[str, list[Any]]:
    marks = ", ".join("?" for _ in values)
    return f"{column} {'NOT IN' if negate else 'IN'} ({marks})", list(values)


def _postgres_in(column: str, values: Collection[Any], negate: bool) -> tuple[str, list[Any]]:
    return (f"{column} <> ALL(?)" if negate else f"{column} = ANY(?)"), [list(values)]


@dataclass(frozen=True)
class Dialect:
    """How one database's driver is spoken: see the module docstring."""

    name: str
    text: Callable[[str], str]
    """The driver's text of a query written with `?` placeholders."""
    _in: Callable[[str, Collection[Any], bool], tuple[str, list[Any]]]

    def in_list(
        self, column: str, values: Collection[Any], *, negate: bool = False
    ) -> tuple[str, list[Any]]:
        """`column IN values` (or NOT IN) as SQL with its parameters; an empty list matches
        nothing (with `negate`, everything)."""
        return self._in(column, values, negate)


SQLITE_DIALECT = Dialect(SQLITE, _sqlite_text, _sqlite_in)
POSTGRES_DIALECT = Dialect(POSTGRESQL, _postgres_text, _postgres_in)


class Conn:
    """One connection inside one write (or read) of the store, speaking its dialect."""

    __slots__ = ("dialect", "raw")

    def __init__(self, raw: Driver, dialect: Dialect) -> None:
        self.raw = raw
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(self.dialect.text(sql), params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row, or None."""
        return self.raw.execute(self.dialect.text(sql), params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.raw.execute(self.dialect.text(sql), params).fetchall()

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """One statement run for each of `rows`."""
        cursor = self.raw.cursor()
        try:
            cursor.executemany(self.dialect.text(sql), rows)
        finally:
            cursor.close()
