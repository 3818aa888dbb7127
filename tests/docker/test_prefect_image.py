"""The Prefect test image runs real Prefect flows in a container against a Prefect API on the
host's 127.0.0.1, the path the Docker backend's runs will take: a container of
`reconciler-prefect-test` on the host network, the flow file mounted, PREFECT_API_URL pointing
at a real `prefect server` started by the test, and no temporary server in the container.

Run with `-s` to see the measured times (container start to the flow's first printed line,
and to the container's exit); they are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from docker.models.containers import Container

from tests.infra.prefect_server import PrefectServer

pytestmark = pytest.mark.docker

TEST_LABEL = "org.reconciler.test-prefect-image"
EPHEMERAL_BANNER = "Starting temporary server"
FLOW_FILE = """\
from prefect import flow, task
from prefect.runtime import flow_run


@task
def double(x: int) -> int:
    return 2 * x


@task
def add(a: int, b: int) -> int:
    return a + b


@flow(name="prefect-image-check")
def check(x: int = 3) -> int:
    print(f"FLOW_STARTED {flow_run.id}", flush=True)
    total = add(double(x), x)
    print(f"FLOW_RESULT {total}", flush=True)
    return total


if __name__ == "__main__":
    check()
"""


@dataclass
class ContainerRun:
    """What a container printed, line by line with the seconds since it was started, and how
    it ended."""

    exit_code: int
    lines: list[tuple[float, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def output(self) -> str:
        return "\n".join(line for _, _, line in self.lines)

    def first(self, marker: str) -> tuple[float, str]:
        """Seconds to, and text of, the first line containing `marker`."""
        for at, _, line in self.lines:
            if marker in line:
                return at, line
        pytest.fail(f"no line with {marker!r} in the container's output:\n{self.output}")


@pytest.fixture
def labelled(docker_client: docker.DockerClient) -> Iterator[str]:
    """A label value for this test's containers; they are removed afterwards."""
    tag = uuid.uuid4().hex[:12]
    yield tag
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{TEST_LABEL}={tag}"}
    ):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def run_container(
    client: docker.DockerClient,
    image: str,
    command: list[str],
    tag: str,
    *,
    environment: Mapping[str, str] | None = None,
    volumes: Mapping[str, Mapping[str, str]] | None = None,
    network_mode: str = "none",
    working_dir: str | None = None,
) -> ContainerRun:
    """Create a container, attach to its output, start it and read its lines as they come,
    timing each from the start, the way the worker's Docker backend reads a run's output."""
    container: Container = client.containers.create(
        image,
        command,
        environment=dict(environment or {}),
        volumes={source: dict(bind) for source, bind in (volumes or {}).items()},
        network_mode=network_mode,
        working_dir=working_dir,
        labels={TEST_LABEL: tag},
    )
    output = client.api.attach(
        str(container.id), stdout=True, stderr=True, stream=True, logs=True, demux=True
    )
    run = ContainerRun(exit_code=-1)
    partial = {"stdout": b"", "stderr": b""}
    started = time.monotonic()
    container.start()
    for frame in output:
        at = time.monotonic() - started
        for stream, data in zip(("stdout", "stderr"), frame, strict=True):
            if not data:
                continue
            *complete, partial[stream] = (partial[stream] + data).split(b"\n")
            run.lines.extend((at, stream, line.decode(errors="replace")) for line in complete)
    status = container.wait(timeout=300).get("StatusCode")
    run.seconds = time.monotonic() - started
    run.lines.extend((run.seconds, s, rest.decode()) for s, rest in partial.items() if rest)
    run.exit_code = status if isinstance(status, int) else -1
    return run


def prefect_environment(server: PrefectServer) -> dict[str, str]:
    return {
        "PREFECT_API_URL": server.api_url,
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
        "PYTHONUNBUFFERED": "1",
    }


def report(what: str, seconds: float) -> None:
    print(f"[prefect image] {what}: {seconds:.2f} s")


def test_the_image_has_prefect_3_9_as_python(
    docker_client: docker.DockerClient, prefect_image: str, labelled: str
) -> None:
    command = "import prefect; print(prefect.__version__)"
    run = run_container(docker_client, prefect_image, ["python", "-c", command], labelled)

    assert run.exit_code == 0, run.output
    assert re.fullmatch(r"3\.9\.\d+", run.output.strip()), run.output
    report("container start -> `import prefect` printed its version", run.seconds)


def test_a_flow_in_a_container_reports_to_the_prefect_api_on_the_hosts_loopback(
    docker_client: docker.DockerClient,
    prefect_image: str,
    prefect_server: PrefectServer,
    labelled: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(FLOW_FILE)

    run = run_container(
        docker_client,
        prefect_image,
        ["python", "flow.py"],
        labelled,
        environment=prefect_environment(prefect_server),
        volumes={str(tmp_path): {"bind": "/flows", "mode": "ro"}},
        network_mode="host",
        working_dir="/flows",
    )

    assert run.exit_code == 0, run.output
    assert EPHEMERAL_BANNER not in run.output
    first_line_at, first_line = run.first("FLOW_STARTED")
    assert "FLOW_RESULT 9" in run.output
    flow_run_id = first_line.split()[-1]
    flow_run = api_get(prefect_server, f"/flow_runs/{flow_run_id}")
    assert flow_run["state"]["type"] == "COMPLETED", flow_run
    assert api_get(prefect_server, f"/flows/{flow_run['flow_id']}")["name"] == (
        "prefect-image-check"
    )
    task_runs = wait_for_task_runs(prefect_server, flow_run_id, count=2)
    assert sorted(task["task_key"].split("-")[0] for task in task_runs) == ["add", "double"]
    assert {task["state"]["type"] for task in task_runs} == {"COMPLETED"}
    report("container start -> the flow's first printed line", first_line_at)
    report("container start -> the container exited (whole run)", run.seconds)


def test_prefects_engine_in_a_container_runs_a_flow_run_created_beforehand(
    docker_client: docker.DockerClient,
    prefect_image: str,
    prefect_server: PrefectServer,
    labelled: str,
    tmp_path: Path,
) -> None:
    """As a worker starts a run: the run exists in the API with its parameters, and the
    container runs `python -m prefect.engine` with PREFECT__FLOW_RUN_ID, the flow code in its
    working directory and PREFECT__FLOW_ENTRYPOINT naming the flow (so no deployment and no
    pull steps are read)."""
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_text(FLOW_FILE)
    flow = api_post(prefect_server, "/flows/", {"name": "prefect-image-check"})
    created = api_post(
        prefect_server,
        "/flow_runs/",
        {
            "flow_id": flow["id"],
            "name": f"engine-{labelled}",
            "parameters": {"x": 4},
            "state": {"type": "PENDING", "name": "Pending"},
        },
    )

    run = run_container(
        docker_client,
        prefect_image,
        ["python", "-m", "prefect.engine"],
        labelled,
        environment={
            **prefect_environment(prefect_server),
            "PREFECT__FLOW_RUN_ID": created["id"],
            "PREFECT__FLOW_ENTRYPOINT": "flows/etl.py:check",
        },
        volumes={str(tmp_path): {"bind": "/opt/reconciler/code", "mode": "ro"}},
        network_mode="host",
        working_dir="/opt/reconciler/code",
    )

    assert run.exit_code == 0, run.output
    assert EPHEMERAL_BANNER not in run.output
    first_line_at, first_line = run.first("FLOW_STARTED")
    assert first_line == f"FLOW_STARTED {created['id']}"  # prefect.runtime sees our run
    assert "FLOW_RESULT 12" in run.output  # x=4 came from the run in the API
    flow_run = api_get(prefect_server, f"/flow_runs/{created['id']}")
    assert flow_run["state"]["type"] == "COMPLETED", flow_run
    assert flow_run["name"] == f"engine-{labelled}"
    task_runs = wait_for_task_runs(prefect_server, created["id"], count=2)
    assert {task["state"]["type"] for task in task_runs} == {"COMPLETED"}, task_runs
    report("engine: container start -> the flow's first printed line", first_line_at)
    report("engine: container start -> the container exited (whole run)", run.seconds)


def api_post(server: PrefectServer, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.api_url}{path}", json=dict(body), timeout=30)
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    return created


def api_get(server: PrefectServer, path: str) -> dict[str, Any]:
    response = httpx.get(f"{server.api_url}{path}", timeout=30)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def wait_for_task_runs(
    server: PrefectServer, flow_run_id: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """The flow run's task runs once `count` of them are final: the server records task runs
    from the events the task engine sends, a moment after the flow ends."""
    query = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.post(f"{server.api_url}/task_runs/filter", json=query, timeout=30)
        response.raise_for_status()
        task_runs: list[dict[str, Any]] = response.json()
        final = [task for task in task_runs if task["state"] and task["state"]["type"] in FINAL]
        if len(final) >= count or time.monotonic() > deadline:
            return task_runs
        time.sleep(0.2)


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
