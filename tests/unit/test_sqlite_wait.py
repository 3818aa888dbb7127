"""SQLite's `wait_for_runs`: it cannot hear other processes, so it waits out the time (the
worker's poll interval, as before) and ends early on a stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from reconciler.store import open_store


def test_sqlite_waits_out_the_time_and_a_stop_ends_it(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        started = time.monotonic()
        assert store.wait_for_runs("etl", 0.3) is False
        assert 0.28 <= time.monotonic() - started < 2
        stop = threading.Event()
        threading.Timer(0.1, stop.set).start()
        started = time.monotonic()
        assert store.wait_for_runs("etl", 30, stop) is False
        assert time.monotonic() - started < 2
    finally:
        store.close()
