"""Test infrastructure: a real `prefect server` (Prefect from the test extra) on 127.0.0.1, for
the tests and benchmark of the forkserver (tests/worker/test_prefect_forkserver.py,
bench/bench_forkserver.py), and flow runs created in it as Prefect's own tools create them.

`running_prefect_server(directory)` starts `prefect server start` on a free port with its
PREFECT_HOME (its SQLite database) inside `directory`, no UI and no analytics, waits until
`/api/health` answers and yields the API URL (`http://127.0.0.1:PORT/api`); it stops the server
afterwards. `create_flow_run(api_url, flow_dir, entrypoint)` creates a flow, a deployment whose
pull step sets the working directory to `flow_dir`, and a flow run of it in state Pending (as
a worker leaves it before it starts the engine); it returns the run's id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

START_TIMEOUT_SECONDS = 240.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_prefect_server(directory: Path) -> Iterator[str]:
    home = directory / "prefect-server-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = (directory / "prefect-server.log").open("wb")
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(api_url, process, directory / "prefect-server.log")
        yield api_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_healthy(api_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited ({process.returncode}):\n{log.read_text()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"prefect server did not answer within {START_TIMEOUT_SECONDS} s")


def create_flow_run(
    api_url: str, flow_dir: Path, entrypoint: str, parameters: dict[str, Any] | None = None
) -> str:
    """A Pending flow run of a deployment of `entrypoint` (`file.py:function` in `flow_dir`)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.states import Pending

    function = entrypoint.rpartition(":")[2]
    with SyncPrefectClient(api_url) as client:
        flow_id = client.create_flow_from_name(function)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=f"{function}-deployment",
            entrypoint=entrypoint,
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(flow_dir)}}
            ],
        )
        run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        client.set_flow_run_state(run.id, Pending())
        return str(run.id)


def flow_run_state(api_url: str, run_id: str) -> tuple[str, str]:
    """The run's state type (`COMPLETED`...) and message."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        state = client.read_flow_run(run_id).state  # type: ignore[arg-type]
        assert state is not None
        return state.type.value, state.message or ""


def task_run_states(api_url: str, run_id: str, expected: int, timeout: float = 60) -> list[str]:
    """The states of the run's task runs, once `expected` of them are final (task runs reach a
    real server as events: they appear a moment after the flow ends)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    states: list[str] = []
    with SyncPrefectClient(api_url) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))  # type: ignore[list-item]
            )
            states = sorted(run.state.type.value for run in runs if run.state is not None)
            if len(states) >= expected and all(s in _FINAL for s in states):
                return states
            time.sleep(0.5)
    return states


_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
