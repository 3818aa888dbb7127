"""Benchmark of our Prefect API's event stream (issue 11): task-state events per second.

Serves the Prefect API (reconciler/prefect_api) with uvicorn on 127.0.0.1 over a fresh SQLite
store, and from another process sends task-run state events over `/events/in` as Prefect's
client does (subprotocol `prefect`, auth frame, one event per frame):
- paced: 1,000 events per second for `--seconds`, then how long until the last one is stored
  (the lag: "without falling behind" means it stays near the writer's batch interval);
- burst: `--burst` events as fast as the socket takes them, and the stored rate end to end.

    .venv/bin/python bench/bench_prefect_events.py [--seconds 5] [--burst 20000]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from bench.common import machine  # noqa: E402
from reconciler.model.resources import Kind, Resource  # noqa: E402
from reconciler.model.runs import NewRun  # noqa: E402
from reconciler.prefect_api import create_prefect_api  # noqa: E402
from reconciler.store import open_store  # noqa: E402

SENDER = textwrap.dedent(
    """
    import json, sys, time, uuid
    from websockets.sync.client import connect
    url, run_id, count, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    names = ("Pending", "Running", "Completed")
    with connect(url, subprotocols=["prefect"]) as ws:
        ws.send(json.dumps({"type": "auth", "token": None}))
        assert json.loads(ws.recv())["type"] == "auth_success"
        start = time.monotonic()
        for i in range(count):
            if rate > 0:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            task = str(uuid.UUID(int=i // 3 + 1))
            name = names[i % 3]
            ws.send(json.dumps({
                "id": str(uuid.uuid4()),
                "occurred": "2026-05-01T12:00:%02d.%06dZ" % (i % 3, i % 999999),
                "event": "prefect.task-run." + name,
                "resource": {"prefect.resource.id": "prefect.task-run." + task},
                "related": [{"prefect.resource.id": "prefect.flow-run." + run_id,
                             "prefect.resource.role": "flow-run"}],
                "payload": {"validated_state": {"type": name.upper(), "name": name},
                            "task_run": {"name": "t", "task_key": "t", "dynamic_key": str(i),
                                         "run_count": 1}},
                "follows": None,
            }))
        ws.ping().wait(60)
        print(time.monotonic() - start)
    """
)


def serve(url: str) -> tuple[uvicorn.Server, threading.Thread, int, Starlette]:
    app = create_prefect_api(
        lambda: open_store(url), may_access=lambda run: True, allow_adhoc_runs=True, token=None
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    root = Starlette(routes=[Mount("/prefect/api", app=app)])
    server = uvicorn.Server(uvicorn.Config(root, log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1], app


def stored_events(url: str) -> int:
    store = open_store(url)
    try:
        return len(store._read_rows("SELECT id FROM events"))  # type: ignore[attr-defined]
    finally:
        store.close()


def measure(url: str, ws_url: str, run_id: str, count: int, rate: float) -> tuple[float, float]:
    """(seconds to send, seconds from the last send until everything is stored)."""
    before = stored_events(url)
    sent = subprocess.run(
        [sys.executable, "-c", SENDER, ws_url, run_id, str(count), str(rate)],
        capture_output=True,
        text=True,
        check=True,
    )
    sending = float(sent.stdout.strip())
    done_sending = time.monotonic()
    while stored_events(url) < before + count:
        time.sleep(0.005)
    return sending, time.monotonic() - done_sending


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=20000)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "state.db")
        store = open_store(url)
        with store.transaction() as tx:
            tx.put(Resource.of(Kind.WORK_POOL, "p", {"name": "p", "type": "process"}, None))
        run = store.create_run(NewRun("f/d", "f", "p", "default", time.time()))
        store.close()
        server, thread, port, _app = serve(url)
        ws_url = f"ws://127.0.0.1:{port}/prefect/api/events/in"
        paced = 1000 * args.seconds
        sending, lag = measure(url, ws_url, run.id, paced, 1000.0)
        print(
            f"paced: {paced} events at 1,000/s sent in {sending:.2f} s; "
            f"all stored {lag * 1000:.0f} ms after the last was sent"
        )
        sending, lag = measure(url, ws_url, run.id, args.burst, 0)
        total = sending + lag
        print(
            f"burst: {args.burst} events sent in {sending:.2f} s, all stored after {total:.2f} s: "
            f"{args.burst / total:,.0f} events/s end to end"
        )
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":
    main()
