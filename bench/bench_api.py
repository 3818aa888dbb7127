"""Benchmark of the web API and dashboard (issue 14).

1. Creating runs: one CLI process per run (`reconcile deployment run`, what scripts did
   before), one run per API request (HTTP keep-alive), and bulk requests (many runs in one
   request, one write);
2. Page and endpoint times with a large store: 10,000 deployments and 100,000 runs (spread
   over the last 48 hours, in every state), each the median of 10 requests after one warm-up,
   timed at the client over loopback (so an upper bound of the server's time).

    .venv/bin/python bench/bench_api.py [--deployments 10000] [--runs 100000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import machine  # noqa: E402
from bench.generate import generate  # noqa: E402
from reconciler.engine.stages import ReconcileRequest, reconcile  # noqa: E402
from reconciler.http.server import serve_in_thread  # noqa: E402
from reconciler.model.resources import Kind  # noqa: E402
from reconciler.model.runs import NewRun, RunState  # noqa: E402
from reconciler.store import open_store  # noqa: E402
from reconciler.web.app import create_web_app  # noqa: E402
from reconciler.web.auth import Tokens  # noqa: E402

ADMIN = "bench-admin-token"
CLI_RUNS = 10
API_RUNS = 500
BULK_RUNS = 10_000
BULK_BATCH = 2_500


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: object = None
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    answer = conn.getresponse()
    return answer.status, answer.read()


def _fill_runs(store_url: str, keys: list[str], count: int) -> None:
    store = open_store(store_url)
    now = time.time()
    rng = random.Random(14)
    try:
        batch = []
        for index in range(count):
            key = rng.choice(keys)
            batch.append(
                NewRun(
                    deployment=key,
                    flow_name=key.split("/")[0],
                    pool="etl",
                    queue="default",
                    scheduled_time=now + rng.uniform(-48 * 3600, 4 * 3600),
                    parameters={"source": "s3://bench", "days": index % 7},
                )
            )
            if len(batch) == 10_000:
                store.create_runs(batch)
                batch = []
        store.create_runs(batch)
        store.put_repo_status(
            "bench", {"name": "bench", "source": "bench", "state": "Synced", "drift": []}
        )
    finally:
        store.close()
    # As a store that has run for two days looks: past runs ended (mostly COMPLETED), 50 of
    # them still RUNNING, future ones SCHEDULED.
    path = store_url.removeprefix("sqlite:///")
    ended = [RunState.COMPLETED] * 85 + [RunState.FAILED] * 8 + [RunState.CANCELLED] * 5
    ended += [RunState.CRASHED] * 2
    with sqlite3.connect(path) as conn:
        past = [
            row[0]
            for row in conn.execute("SELECT id FROM flow_runs WHERE scheduled_time < ?", (now,))
        ]
        conn.executemany(
            "UPDATE flow_runs SET state = ?, worker = 'bench-worker' WHERE id = ?",
            [(rng.choice(ended).value, run_id) for run_id in past[50:]]
            + [(RunState.RUNNING.value, run_id) for run_id in past[:50]],
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100_000)
    options = parser.parse_args()
    print(f"machine: {machine()}\n")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as scratch:
        root = Path(scratch)
        generate(root / "repo", options.deployments, 10)
        store_url = f"sqlite:///{root / 'state.db'}"
        started = time.perf_counter()
        reconcile(
            ReconcileRequest(repositories=(str(root / "repo"),), store_url=store_url), environ={}
        )
        print(f"applied {options.deployments} deployments in {time.perf_counter() - started:.1f} s")
        store = open_store(store_url, readonly=True)
        try:
            keys = [r.key for r in store.list_resources(Kind.DEPLOYMENT)]
        finally:
            store.close()
        key = keys[len(keys) // 2]
        started = time.perf_counter()
        _fill_runs(store_url, keys, options.runs)
        print(f"stored {options.runs} runs in {time.perf_counter() - started:.1f} s\n")

        app = create_web_app(lambda: open_store(store_url), tokens=Tokens(admin=ADMIN))
        server = serve_in_thread(app, "127.0.0.1", 0, name="bench-web")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            _creation(conn, store_url, key, root)
            _pages(conn, key)
        finally:
            server.stop()
            app.state.web.close()


def _creation(conn: http.client.HTTPConnection, store_url: str, key: str, root: Path) -> None:
    started = time.perf_counter()
    for _ in range(CLI_RUNS):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "deployment",
                "run",
                key,
                "--store",
                store_url,
                "--param",
                "source=s3://cli",
            ],
            check=True,
            capture_output=True,
            cwd=root,
            env={**os.environ},
        )
    cli = (time.perf_counter() - started) / CLI_RUNS
    path = f"/api/v1/deployments/{quote(key)}/runs"
    started = time.perf_counter()
    for _ in range(API_RUNS):
        status, body = _request(conn, "POST", path, {"parameters": {"source": "s3://api"}})
        assert status == 201, body
    single = (time.perf_counter() - started) / API_RUNS
    started = time.perf_counter()
    for offset in range(0, BULK_RUNS, BULK_BATCH):
        runs = [
            {"deployment": key, "parameters": {"source": "s3://bulk", "days": i % 9}}
            for i in range(offset, offset + BULK_BATCH)
        ]
        status, body = _request(conn, "POST", "/api/v1/flow-runs", {"runs": runs})
        assert status == 201, body
    bulk = (time.perf_counter() - started) / BULK_RUNS
    print("| how runs are created | per run | runs per second | vs the CLI |")
    print("|---|---|---|---|")
    print(
        f"| `reconcile deployment run`, one process per run ({CLI_RUNS}) | "
        f"{cli * 1000:.0f} ms | {1 / cli:.1f} | 1x |"
    )
    print(
        f"| API, one run per request, keep-alive ({API_RUNS}) | {single * 1000:.1f} ms | "
        f"{1 / single:.0f} | {cli / single:.0f}x |"
    )
    print(
        f"| API, bulk: {BULK_BATCH} runs per request ({BULK_RUNS}) | {bulk * 1000:.2f} ms | "
        f"{1 / bulk:.0f} | {cli / bulk:.0f}x |"
    )
    print()


def _pages(conn: http.client.HTTPConnection, key: str) -> None:
    status, body = _request(conn, "GET", "/api/v1/flow-runs?limit=1")
    run_id = json.loads(body)["flow_runs"][0]["id"]
    paths = [
        "/",
        "/deployments",
        f"/deployments/{quote(key)}",
        "/flow-runs",
        "/flow-runs?state=FAILED",
        f"/flow-runs/{run_id}",
        "/work-pools",
        "/repositories/bench",
        "/audit-log",
        "/api/v1/deployments?limit=50",
        f"/api/v1/deployments/{quote(key)}",
        "/api/v1/flow-runs?limit=50",
        f"/api/v1/flow-runs?limit=50&deployment={quote(key)}",
        "/api/v1/flow-runs/by-hour",
        "/api/v1/work-pools",
    ]
    print("| page or endpoint | median of 10 | slowest |")
    print("|---|---|---|")
    for path in paths:
        _request(conn, "GET", path)  # warm-up
        times = []
        for _ in range(10):
            started = time.perf_counter()
            status, body = _request(conn, "GET", path)
            times.append(time.perf_counter() - started)
            assert status == 200, (path, status, body[:300])
        median = statistics.median(times) * 1000
        mark = "" if median <= 200 else " (over 200 ms)"
        print(f"| `{path}` | {median:.1f} ms{mark} | {max(times) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
