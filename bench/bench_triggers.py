"""Benchmark of deployment triggers (issue 18): event stored -> triggered run created.

A store with deployment `ingest/nightly`, deployment `ingest/report` triggered by its
completion, and `--others` more deployments whose triggers wait for other events (so the
evaluator has that many triggers to look at). The evaluator runs as the daemon runs it
(`keep_evaluating`, every 0.1 s) in a process of its own. Each of `--runs` times, one run of
nightly moves to COMPLETED; the latency is the triggered run's `created_at` minus the
`received_at` of the Completed event, both written by the store (one clock). Target: p95 <=
0.5 s.

    .venv/bin/python bench/bench_triggers.py [--runs 200] [--others 50] [--store URL | --postgres]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import machine  # noqa: E402
from reconciler.model.resources import Kind, Owner, Resource  # noqa: E402
from reconciler.model.runs import NewRun, RunState  # noqa: E402
from reconciler.store import open_store  # noqa: E402
from reconciler.store.run_events import list_events  # noqa: E402

OWNER = Owner("bench", "prefect.yaml")


def _deployment(name: str, triggers: list[dict[str, Any]] | None = None) -> Resource:
    spec: dict[str, Any] = {
        "name": name,
        "flow_name": "ingest",
        "entrypoint": "flows/etl.py:ingest",
        "work_pool_name": "etl",
        "work_queue_name": "default",
        "parameters": {},
    }
    if triggers:
        spec["triggers"] = triggers
    return Resource.of(Kind.DEPLOYMENT, f"ingest/{name}", spec, OWNER)


def _setup(store_url: str, others: int) -> None:
    store = open_store(store_url)
    try:
        with store.transaction() as tx:
            pool = {"name": "etl", "type": "process", "paused": False, "concurrency_limit": None}
            queue = {"pool": "etl", "name": "default", "priority": 1, "paused": False}
            tx.put(Resource.of(Kind.WORK_POOL, "etl", pool, OWNER))
            tx.put(Resource.of(Kind.WORK_QUEUE, "etl/default", queue, OWNER))
            tx.put(_deployment("nightly"))
            completed = {
                "expect": ["prefect.flow-run.Completed"],
                "match_related": {
                    "prefect.resource.role": "deployment",
                    "prefect.resource.name": "nightly",
                },
                "parameters": {"upstream": "{{ event.resource.id }}"},
            }
            tx.put(_deployment("report", [completed]))
            for index in range(others):
                waiting = {"expect": [f"acme.other.{index}"], "threshold": 2, "within": 60}
                tx.put(_deployment(f"other-{index}", [waiting]))
    finally:
        store.close()


def _evaluate(store_url: str, stop: Any) -> None:
    from reconciler.scheduling.triggers import keep_evaluating

    keep_evaluating(lambda: open_store(store_url), lambda _store: True, stop)


def _epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--others", type=int, default=50)
    parser.add_argument("--store", default=None, help="a store URL (default: a new SQLite file)")
    parser.add_argument(
        "--postgres", action="store_true", help="a PostgreSQL server of its own (the tests')"
    )
    options = parser.parse_args()
    print(f"machine: {machine()}\n")
    if options.postgres:
        from tests.infra.postgres_env import running_postgres

        with running_postgres() as server:
            run(options, server.create_database("bench_triggers"))
    else:
        run(options, options.store)


def run(options: argparse.Namespace, given_url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-triggers-") as scratch:
        store_url = given_url or f"sqlite:///{Path(scratch) / 'state.db'}"
        _setup(store_url, options.others)
        stop = multiprocessing.Event()
        evaluator = multiprocessing.Process(target=_evaluate, args=(store_url, stop))
        evaluator.start()
        store = open_store(store_url)
        latencies: list[float] = []
        try:
            time.sleep(1.0)  # the evaluator has read the triggers
            for _ in range(options.runs):
                run = store.create_run(
                    NewRun("ingest/nightly", "ingest", "etl", "default", time.time())
                )
                store.set_run_state(run.id, RunState.RUNNING)
                store.set_run_state(run.id, RunState.COMPLETED)
                wanted = f"prefect.flow-run.{run.id}"
                deadline = time.monotonic() + 10
                made = None
                while made is None and time.monotonic() < deadline:
                    made = next(
                        (
                            r
                            for r in store.list_runs(deployment="ingest/report", limit=5)
                            if r.parameters.get("upstream") == wanted
                        ),
                        None,
                    )
                    if made is None:
                        threading.Event().wait(0.01)
                assert made is not None, f"no triggered run for {run.id} within 10 s"
                (event,) = list_events(store, event="prefect.flow-run.Completed", resource=wanted)
                latencies.append(_epoch(made.created_at) - _epoch(event.received))
            total = len(store.list_runs(deployment="ingest/report", limit=options.runs * 2))
        finally:
            stop.set()
            evaluator.join(10)
            store.close()
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"store: {store_url.split(':')[0]}; triggers: {options.others + 1}; runs: {options.runs}")
    print(f"triggered runs created: {total} (one per completed run: {total == options.runs})")
    print(
        f"event stored -> triggered run created: median {statistics.median(latencies):.3f} s, "
        f"p95 {p95:.3f} s, max {latencies[-1]:.3f} s (target p95 <= 0.5 s)"
    )


if __name__ == "__main__":
    main()
