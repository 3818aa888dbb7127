"""A store with a work pool and deployments of real Prefect flows, our Prefect API served by
uvicorn on 127.0.0.1, and a way to run a claimed run with Prefect's own engine against it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import FlowRun, NewRun
from reconciler.prefect_api import create_prefect_api
from reconciler.store import Store, open_store

FLOWS_DIR = Path(__file__).parent / "flows"
POOL = "local"
WORKER = "worker-1"
PREFIX = "/prefect/api"
TEMPORARY_SERVER = "Starting temporary server"


def put(store: Store, *resources: Resource) -> None:
    with store.transaction() as tx:
        for resource in resources:
            tx.put(resource)


def pool_resource(name: str = POOL) -> Resource:
    body = {"name": name, "type": "process", "paused": False, "concurrency_limit": None}
    return Resource.of(Kind.WORK_POOL, name, body, None)


def queue_resource(pool: str = POOL, name: str = "default") -> Resource:
    body = {"pool": pool, "name": name, "priority": 1, "paused": False}
    return Resource.of(Kind.WORK_QUEUE, f"{pool}/{name}", body, None)


def deployment_resource(flow: str, entrypoint: str, **spec: Any) -> Resource:
    body = {
        "name": "default",
        "flow_name": flow,
        "entrypoint": entrypoint,
        "work_pool_name": POOL,
        "work_queue_name": "default",
        "paused": False,
        "parameters": {},
        "parameter_openapi_schema": {"type": "object", "properties": {}},
        "pull_steps": [],
        "tags": ["nightly"],
        **spec,
    }
    return Resource.of(Kind.DEPLOYMENT, f"{flow}/default", body, None)


class ServedApi:
    """Our Prefect API, mounted at /prefect/api, served by uvicorn in a thread."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        root = Starlette(routes=[Mount(PREFIX, app=app)])
        config = uvicorn.Config(root, log_level="warning", lifespan="off", ws="websockets-sansio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.app.state.prefect_api.close()


@dataclass
class EngineRun:
    returncode: int
    output: str


@dataclass
class Harness:
    store: Store
    store_url: str
    api: ServedApi
    tmp_path: Path

    def deploy(self, flow: str, entrypoint: str, **spec: Any) -> str:
        put(self.store, deployment_resource(flow, entrypoint, **spec))
        return f"{flow}/default"

    def claimed_run(self, deployment: str, flow: str, **parameters: Any) -> FlowRun:
        made = self.store.create_run(
            NewRun(deployment, flow, POOL, "default", time.time() - 1, parameters)
        )
        claimed = self.store.claim_runs(POOL, WORKER, limit=10, scheduled_before=time.time())
        assert made.id in [run.id for run in claimed]
        return made

    def run_engine(self, run_id: str, timeout: float = 120, **env: str) -> EngineRun:
        """`python -m prefect.engine` for our run, as a worker starts it."""
        return self.run_python(
            ["-m", "prefect.engine"], timeout, PREFECT__FLOW_RUN_ID=run_id, **env
        )

    def run_python(self, args: list[str], timeout: float = 120, **env: str) -> EngineRun:
        """Python in the flows' directory, with Prefect pointed at our API."""
        home = self.tmp_path / "prefect-home"
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_API_URL": self.api.url,
            "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
            "PREFECT_HOME": str(home),
            "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
            "PREFECT_CLIENT_MAX_RETRIES": "0",
            **env,
        }
        done = subprocess.run(
            [sys.executable, *args],
            cwd=FLOWS_DIR,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        assert TEMPORARY_SERVER not in output
        return EngineRun(done.returncode, output)

    def settle(self) -> None:
        """Wait until the events sent so far are stored."""
        assert self.api.app.state.prefect_api.events.wait_idle(10)


def open_test_store(url: str) -> Callable[[], Store]:
    return lambda: open_store(url)


@contextlib.contextmanager
def running_harness(
    tmp_path: Path, *, allow_adhoc_runs: bool, url: str | None = None
) -> Iterator[Harness]:
    url = url or str(tmp_path / "state.db")
    store = open_store(url)
    put(store, pool_resource(), queue_resource())
    app = create_prefect_api(
        open_test_store(url),
        may_access=lambda run: run.worker == WORKER or (allow_adhoc_runs and run.worker is None),
        allow_adhoc_runs=allow_adhoc_runs,
        token=None,
    )
    api = ServedApi(app)
    try:
        yield Harness(store, url, api, tmp_path)
    finally:
        api.stop()
        store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with running_harness(tmp_path, allow_adhoc_runs=False) as made:
        yield made


@pytest.fixture
def adhoc_harness(tmp_path: Path) -> Iterator[Harness]:
    with running_harness(tmp_path, allow_adhoc_runs=True) as made:
        yield made


@pytest.fixture
def postgres_harness(tmp_path: Path, postgres_url: str) -> Iterator[Harness]:
    with running_harness(tmp_path, allow_adhoc_runs=False, url=postgres_url) as made:
        yield made
