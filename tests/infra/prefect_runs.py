"""Test infrastructure: flow runs created in a real `prefect server` as Prefect's own tools
create them (a deployment whose pull step sets the working directory, a run left Pending as a
worker leaves it before it starts the engine), and their states read back. The server itself:
tests/infra/prefect_server.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


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
