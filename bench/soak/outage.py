"""The store's outage in the soak (bench/soak): what "the database is gone for 10 s" means on
each backend.

- PostgreSQL: a fast shutdown (every connection is cut, transactions in progress roll back),
  10 s with connections refused, then the same server on the same port
  (tests/infra/postgres_env.py, `PostgresServer.stop_for`). Call it from the main thread: the
  restarted server is stopped by Linux when the thread that started it ends.
- SQLite: another connection holds an exclusive lock (`BEGIN EXCLUSIVE`) for 10 s: every
  write waits for it, up to the store's busy timeout, and then fails.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.infra.postgres_env import PostgresServer


def postgres_outage(server: PostgresServer, seconds: float) -> None:
    server.stop_for(seconds)


def sqlite_outage(database: Path, seconds: float) -> None:
    conn = sqlite3.connect(database, timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
