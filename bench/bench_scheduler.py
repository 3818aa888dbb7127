"""Benchmark of the scheduler (issue 6): 1,000 deployments with cron schedules.

- fill: one tick on a store with no runs yet: every schedule gets its look-ahead (at least 3
  runs and 1 hour: 3 runs of each daily cron, 3,000 runs in all);
- steady state: a tick when every schedule already has its runs (what the daemon does every
  10 s), median of 20;
- baseline, in the same run: computing the same 3,000 fire times with croniter alone, and
  inserting 3,000 rows into a bare SQLite table in one transaction.

    .venv/bin/python bench/bench_scheduler.py [--deployments 1000]
"""

from __future__ import annotations

import argparse
import datetime
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import machine  # noqa: E402
from bench.generate import generate  # noqa: E402
from reconciler.engine.stages import ReconcileRequest, reconcile  # noqa: E402
from reconciler.model.resources import Kind  # noqa: E402
from reconciler.scheduling.fire_times import fire_times  # noqa: E402
from reconciler.scheduling.scheduler import tick  # noqa: E402
from reconciler.settings import Settings  # noqa: E402
from reconciler.store import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=1000)
    options = parser.parse_args()
    print(f"machine: {machine()}\n")
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as scratch:
        root = Path(scratch)
        generate(root / "repo", options.deployments, 10)
        store_url = f"sqlite:///{root / 'state.db'}"
        reconcile(
            ReconcileRequest(
                repositories=(str(root / "repo"),), settings=Settings(store_url=store_url)
            ),
            environ={},
        )
        with sqlite3.connect(root / "state.db") as conn:
            conn.execute("DELETE FROM flow_runs")  # the apply scheduled them: start empty
        store = open_store(store_url)
        try:
            now = time.time()
            started = time.perf_counter()
            filled = tick(store, now=now)
            fill_seconds = time.perf_counter() - started
            steady = []
            for _ in range(20):
                started = time.perf_counter()
                again = tick(store, now=now)
                steady.append(time.perf_counter() - started)
                assert again.created == 0
            schedules = [
                schedule
                for deployment in store.list_resources(Kind.DEPLOYMENT)
                for schedule in deployment.deployment_spec().schedules
            ]
        finally:
            store.close()
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        started = time.perf_counter()
        computed = 0
        for schedule in schedules:
            times = fire_times(schedule, moment)
            for _ in range(3):
                next(times)
                computed += 1
        croniter_seconds = time.perf_counter() - started
        with sqlite3.connect(root / "bare.db") as bare:
            bare.execute("CREATE TABLE t (id TEXT PRIMARY KEY, at REAL, body TEXT)")
            started = time.perf_counter()
            bare.executemany(
                "INSERT INTO t VALUES (?, ?, ?)",
                [(f"run-{i}", now + i, "{}" * 20) for i in range(filled.created)],
            )
            bare.commit()
            insert_seconds = time.perf_counter() - started
    print(f"{len(schedules)} cron schedules over {options.deployments} deployments\n")
    print("| step | time |")
    print("|---|---|")
    print(f"| baseline: {computed} fire times with croniter alone | {croniter_seconds:.3f} s |")
    print(f"| baseline: {filled.created} rows into a bare SQLite table | {insert_seconds:.3f} s |")
    print(f"| fill the look-ahead: {filled.created} runs created | {fill_seconds:.3f} s |")
    print(
        f"| steady-state tick (nothing to create), median of 20 | "
        f"{statistics.median(steady) * 1000:.1f} ms |"
    )


if __name__ == "__main__":
    main()
