"""The real Prefect server fixture (tests/infra/prefect_server.py) does what the comparisons
with Prefect rely on: `prefect deploy` registers a deployment of a flow file, a run of it is
created through the REST API, and Prefect's own process worker runs it to COMPLETED, without
any temporary Prefect server."""

from __future__ import annotations

import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.infra.prefect_server import (
    PrefectServer,
    prefect_executable,
    running_prefect_worker,
)

pytestmark = pytest.mark.prefect

FLOW = """\
from pathlib import Path

from prefect import flow, task


@task
def double(number: int) -> int:
    return number * 2


@flow
def doubler(number: int, out: str) -> int:
    result = double(number)
    Path(out).write_text(str(result))
    return result
"""


def prefect(server: PrefectServer, cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [str(prefect_executable()), *args],
        cwd=cwd,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_prefects_process_worker_completes_a_deployed_flow(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    project = tmp_path / "project"
    project.mkdir()
    (project / "flow.py").write_text(FLOW)
    (project / "prefect.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: fixture-check
            pull:
              - prefect.deployments.steps.set_working_directory:
                  directory: {project}
            deployments:
              - name: check
                entrypoint: flow.py:doubler
                work_pool: {{name: {pool}}}
            """
        )
    )
    prefect(prefect_server, project, "work-pool", "create", pool, "--type", "process")
    prefect(prefect_server, project, "--no-prompt", "deploy", "--all")

    deployment = prefect_server.request("GET", "/deployments/name/doubler/check")
    out = tmp_path / "result.txt"
    run = prefect_server.request(
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"number": 21, "out": str(out)}},
    )

    with running_prefect_worker(prefect_server, pool, query_seconds=1, cwd=tmp_path):
        deadline = time.monotonic() + 120
        state = run["state"]["type"]
        while state not in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            assert time.monotonic() < deadline, f"run still {state} after 120 s"
            time.sleep(0.2)
            state = prefect_server.request("GET", f"/flow_runs/{run['id']}")["state"]["type"]

    assert state == "COMPLETED", (prefect_server.home / f"worker-{pool}.log").read_text()
    assert out.read_text() == "42"
    assert "temporary server" not in (prefect_server.home / f"worker-{pool}.log").read_text()
