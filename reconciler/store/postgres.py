"""The PostgreSQL store backend: `postgresql://user:password@host:port/database` (or
`postgres://`), for several daemons and workers on many machines sharing one store.

Every query is store/sql_store.py's (and sql_runs.py's, prefect_records.py's); this module
connects, and gives PostgreSQL's own parts: psycopg 3 on one connection per store, in
autocommit mode (every read is its own statement, every write an explicit transaction).

- **Snapshots.** `observe()` reads everything in one REPEATABLE READ, READ ONLY transaction.
- **Locks.** Row locks as the common SQL says (`FOR UPDATE`, `FOR NO KEY UPDATE`, `SKIP
  LOCKED`), and advisory locks where a row cannot say it (`_lock`: a deployment's slots
  across pools, one run's log numbering, migrations).
- **Wake-ups.** Runs created or freed, and pools, queues and deployments written, send
  `NOTIFY reconciler_runs, '<pool>'` at commit; `wait_for_runs()` LISTENs on a connection of
  its own, so an idle worker hears of a new run at once rather than at its next poll.
- **Schema.** The migrations of store/migrations.py, run once each under an advisory lock (two
  processes opening a new database do not both migrate). A read-only open creates and
  migrates nothing, and its session is read-only (`default_transaction_read_only`).
- **Connection lost.** A connection found broken is replaced at the next call.
- **Secrets.** The password of the URL never appears in an error: URLs are shown without
  credentials and the driver's messages are masked.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo as pg_conninfo

from reconciler.core.errors import StoreUrlError
from reconciler.core.url_credentials import strip_credentials
from reconciler.store.prefect_records import PrefectRecords
from reconciler.store.sql import POSTGRES_DIALECT, Conn, Dialect
from reconciler.store.sql_runs import SqlRuns
from reconciler.store.sql_store import LOCK_MIGRATIONS, SqlStore
from reconciler.store.web_records import WebRecords

Connection = psycopg.Connection[tuple[Any, ...]]

CHANNEL = "reconciler_runs"
CONNECT_TIMEOUT_SECONDS = 10
_IN_TRANSACTION = psycopg.pq.TransactionStatus.INTRANS
_TRANSACTION_FAILED = psycopg.pq.TransactionStatus.INERROR
LISTEN_SLICE_SECONDS = 0.2
"""How often a wait for runs looks at its `stop` event."""


class PostgresStore(SqlStore, SqlRuns, PrefectRecords, WebRecords):
    dialect: ClassVar[Dialect] = POSTGRES_DIALECT
    _DATABASE = "PostgreSQL"
    _PLACE = "database"

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.shown_url = shown_url(url)
        self.url = self.shown_url  # logged and shown by callers: never the password
        self.shown = self.shown_url
        self.readonly = readonly
        self._secrets = _url_secrets(url)
        self._conninfo = self._make_conninfo(url)
        self._conn: Connection | None = None
        self._listener: Connection | None = None
        self._listen_lock = threading.Lock()
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            raise StoreUrlError(
                f"cannot connect to the store {self.shown_url}: {self._mask(exc)}",
                "check the URL in --store / RECONCILER_STORE, that the server runs, and that "
                "the database exists (reconciler creates its tables, not the database)",
            ) from None
        try:
            self._check_schema()
        except psycopg.Error as exc:
            self.close()
            raise StoreUrlError(
                f"cannot open the store {self.shown_url}: {self._mask(exc)}",
                "check the URL in --store / RECONCILER_STORE; the user needs to create tables "
                "in the database's schema",
            ) from None
        except BaseException:
            self.close()
            raise

    # -- connections ------------------------------------------------------------------------

    def _make_conninfo(self, url: str) -> str:
        try:
            params = pg_conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreUrlError(
                f"invalid store URL {self.shown_url}: {self._mask(exc)}",
                "use postgresql://user:password@host:port/database",
            ) from None
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
        params.setdefault("application_name", "reconciler")
        if self.readonly:
            options = str(params.get("options") or "")
            params["options"] = f"{options} -c default_transaction_read_only=on".strip()
        return pg_conninfo.make_conninfo("", **params)

    def _connect(self) -> Connection:
        return psycopg.connect(self._conninfo, autocommit=True)

    def _mask(self, error: BaseException | str) -> str:
        """The driver's message without the URL's password (in any spelling of it)."""
        text = str(error).strip()
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _require(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        if self._conn.closed or self._conn.broken:  # the server went away: connect again
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = self._connect()
        return self._conn

    def _is_open(self) -> bool:
        return self._conn is not None

    # -- what the SQL store needs -----------------------------------------------------------

    def _tables(self) -> set[str]:
        rows = self._read(
            "SELECT c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        )
        return {str(row[0]) for row in rows}

    @contextmanager
    def _migration_write(self) -> Iterator[Conn]:
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?, 0)", (LOCK_MIGRATIONS,))
            yield conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._conn is None:
            return []
        conn = self._require()
        try:
            return conn.execute(POSTGRES_DIALECT.text(sql), params).fetchall()
        except psycopg.OperationalError:
            # A cut connection is not always marked broken at once (the server's goodbye can
            # arrive while a query is being sent): drop it, so the next call connects again.
            status = conn.info.transaction_status
            if status not in (_IN_TRANSACTION, _TRANSACTION_FAILED):  # not a caller's
                conn.close()
            raise

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        conn = self._require()
        inside_a_write = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        with conn.transaction():
            if not inside_a_write:  # one snapshot for everything inside
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    @contextmanager
    def _write(self) -> Iterator[Conn]:
        """A transaction of its own; the rows it changes are locked until it ends."""
        if self.readonly:
            raise RuntimeError("a read-only store cannot write")
        conn = self._require()
        with conn.transaction():
            yield Conn(conn, POSTGRES_DIALECT)

    def _lock(self, conn: Conn, namespace: int, key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (namespace, key))

    def _notify(self, conn: Conn, pools: Iterable[str]) -> None:
        for pool in sorted(set(pools)):
            conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, pool))

    # -- wake-ups ---------------------------------------------------------------------------

    def wait_for_runs(self, pool: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """LISTEN on a connection of its own and wait up to `timeout` for a notification
        about `pool`. The first call starts listening and returns True at once: what was
        sent before cannot be heard, so the caller should look again."""
        if timeout <= 0 or (stop is not None and stop.is_set()):
            return False
        with self._listen_lock:
            if self._listener is None or self._listener.closed:
                try:
                    self._listener = self._connect()
                    self._listener.execute(f"LISTEN {CHANNEL}")
                except psycopg.Error:
                    self._drop_listener()
                    _sleep(timeout, stop)  # polling it is, this time
                    return False
                return True
            listener = self._listener
            deadline = time.monotonic() + timeout
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or (stop is not None and stop.is_set()):
                        return False
                    slice_ = min(remaining, LISTEN_SLICE_SECONDS) if stop else remaining
                    notes = listener.notifies(timeout=slice_)
                    try:  # closed before the next call: it holds the connection's lock
                        heard = any(note.payload == pool for note in notes)
                    finally:
                        notes.close()
                    if heard:
                        # Later notices of the same burst would wake the caller for nothing.
                        for _ in listener.notifies(timeout=0):
                            pass
                        return True
            except psycopg.Error:
                self._drop_listener()
                _sleep(deadline - time.monotonic(), stop)
                return False

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        self._drop_listener()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _sleep(seconds: float, stop: threading.Event | None) -> None:
    if seconds > 0:
        (stop or threading.Event()).wait(seconds)


def shown_url(url: str) -> str:
    """The URL as errors and logs may show it: no user, no password (nor a `password=`
    parameter)."""
    try:
        bare = strip_credentials(url)
        parts = urlsplit(bare)
    except ValueError:
        return "the PostgreSQL store (its URL could not be parsed)"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _url_secrets(url: str) -> list[str]:
    """The URL's password as written (percent-encoded) and decoded, longest first."""
    try:
        parts = urlsplit(url)
        raw = [parts.netloc.rpartition("@")[0].partition(":")[2]]
        raw += [v for k, v in parse_qsl(parts.query) if k == "password"]
    except ValueError:
        return []
    found = {text for item in raw for text in (item, unquote(item), quote(item)) if text}
    return sorted(found, key=len, reverse=True)
