"""Prefect flows in a docker pool run with Prefect's own engine inside the container, against
the Prefect API the worker serves, as on a process pool: the store records their states and
task runs; a flow that raises is FAILED; an image without prefect, or a container that cannot
reach the API, is CRASHED with what to do; a cancel stops the container.

The containers are of `reconciler-prefect-test` (the base image with Prefect from a local
wheelhouse) and real worker subprocesses start them. The first batch is one
`worker start --run-once` (runs side by side); the bridge-network and cancel tests start
workers of their own. No temporary Prefect server may start (PREFECT_API_URL is always set
in the containers, and their output is checked for the banner).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import pytest

from reconciler.core.masking import MASK
from reconciler.model.runs import RunState
from reconciler.worker.docker_flows import PLAIN_MARKER
from tests.conftest import CliResult
from tests.docker.test_worker_docker import Project
from tests.e2e.helpers import new_repo
from tests.infra.containers import TEST_LABEL, build_image, containers_of, remove_labelled
from tests.infra.worker_process import run_worker, start_worker, stop_worker, wait_for

pytestmark = pytest.mark.docker

EPHEMERAL_BANNER = "Starting temporary server"

FLOWS = """\
import os
import time

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run


@task
def double(x: int) -> int:
    return 2 * x


@task
def add(a: int, b: int) -> int:
    return a + b


@flow
def tally(x: int = 3) -> int:
    print(f"FLOW_STARTED {flow_run.id} in {os.getcwd()}", flush=True)
    print(f"TOKEN {os.environ.get('PREFECT_API_KEY')}", flush=True)
    total = add(double(x), x)
    get_run_logger().info("the total is %s", total)
    return total


@flow
def explode(reason: str = "boom") -> None:
    raise ValueError(f"the flow failed on purpose: {reason}")


@flow
def nap(seconds: float = 120) -> None:
    print("napping", flush=True)
    time.sleep(seconds)
"""

BAKED_FLOW = """\
from prefect import flow, task


@task
def shout(word: str) -> str:
    return word.upper()


@flow
def baked(word: str = "hi") -> None:
    print(f"BAKED {shout(word)}", flush=True)
"""


def pools_file(tag: str, image: str) -> str:
    defaults = (
        "    job_variables:\n"
        f"      image: {image}\n"
        "      image_pull_policy: Never\n"
        f"      labels: {{{TEST_LABEL}: '{tag}'}}\n"
    )
    return "work_pools:\n" + "".join(
        f"  - name: {name}\n    type: docker\n{defaults}" for name in ("pbox", "pslow")
    )


def prefect_file(baked_image: str) -> str:
    return f"""\
deployments:
  - name: docker
    entrypoint: flows/flows.py:tally
    work_pool: {{name: pbox}}
  - name: docker
    entrypoint: flows/flows.py:explode
    work_pool: {{name: pbox}}
  - name: baked
    entrypoint: flows/baked.py:baked
    pull:
      - prefect.deployments.steps.set_working_directory: {{directory: /opt/code}}
    work_pool: {{name: pbox, job_variables: {{image: '{baked_image}'}}}}
  - name: docker
    entrypoint: flows/flows.py:nap
    work_pool: {{name: pslow, job_variables: {{auto_remove: true}}}}
"""


@pytest.fixture(scope="module")
def project(
    docker_client: docker.DockerClient,
    prefect_image: str,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Project]:
    tag = uuid.uuid4().hex[:12]
    root = tmp_path_factory.mktemp("worker-docker-prefect")
    baked = f"reconciler-test-baked-prefect:{tag}"
    project = Project(
        store_url=f"sqlite:///{root / 'state.db'}",
        cwd=root,
        tag=tag,
        container_name=f"reconciler-test-{tag}",
        baked_image=baked,
        scratch_image=base_image,  # no prefect in it
    )
    try:
        files = {"/opt/code/flows/baked.py": BAKED_FLOW}
        build_image(docker_client, baked, prefect_image, files, tag)
        repo = new_repo(
            root / "repo",
            {
                "flows/flows.py": FLOWS,
                "flows/baked.py": BAKED_FLOW,  # also in the image, where it runs
                "work-pools.yaml": pools_file(tag, prefect_image),
                "prefect.yaml": prefect_file(baked),
            },
        )
        project.run(str(repo.path))
        yield project
    finally:
        remove_labelled(docker_client, tag, (baked,))


@dataclass
class Batch:
    runs: dict[str, str]
    worker: CliResult


@pytest.fixture(scope="module")
def batch(project: Project) -> Batch:
    """Runs of pool `pbox`, all executed by one `worker start --run-once` that serves its
    Prefect API on 127.0.0.1 only."""
    runs = {
        "tasks": project.create_run("tally/docker", "--param", "x=4"),
        "raises": project.create_run("explode/docker", "--param", "reason=bad input"),
        "no prefect": project.create_run(
            "tally/docker", "--job-variable", f"image={project.scratch_image}"
        ),
        "bridge without listen": project.create_run(
            "tally/docker", "--job-variable", "network_mode=bridge"
        ),
        "baked": project.create_run("baked/baked", "--param", "word=loud"),
    }
    worker = project.run("worker", "start", "--pool", "pbox", "--run-once")
    return Batch(runs, worker)


def task_runs(project: Project, run_id: str) -> list[dict[str, Any]]:
    found = json.loads(project.run("task-run", "ls", "--flow-run", run_id, "-o", "json").stdout)
    assert isinstance(found, list)
    return found


def assert_tally_completed(project: Project, run_id: str, x: int) -> str:
    run = project.flow_run(run_id)
    logs = project.logs(run_id)
    assert run["state"] == "COMPLETED", (run, logs)
    assert f"FLOW_STARTED {run_id} in /opt/reconciler/code" in logs  # Prefect ran *our* run
    assert f"the total is {3 * x}" in logs  # Prefect's log record, through the API
    tasks = task_runs(project, run_id)
    assert sorted(str(t["name"]).rsplit("-", 1)[0] for t in tasks) == ["add", "double"], tasks
    assert {t["state"] for t in tasks} == {"COMPLETED"}, tasks
    assert EPHEMERAL_BANNER not in logs
    return logs


def test_a_prefect_flow_in_a_container_runs_with_prefects_engine_and_records_its_tasks(
    project: Project, batch: Batch, docker_client: docker.DockerClient
) -> None:
    run_id = batch.runs["tasks"]

    logs = assert_tally_completed(project, run_id, x=4)

    # The API token, masked (a log line is TIME STREAM TEXT).
    assert [f"TOKEN {MASK}"] in [line.split(maxsplit=2)[2:] for line in logs.splitlines()]
    (container,) = containers_of(docker_client, run_id)
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"  # the API is on loopback
    assert container.attrs["Config"]["Cmd"][-2:] == ["--prefect-engine", "flows/flows.py:tally"]


def test_a_prefect_flow_that_raises_is_failed_with_the_exception(
    project: Project, batch: Batch
) -> None:
    run = project.flow_run(batch.runs["raises"])

    assert run["state"] == "FAILED", run
    assert "the flow failed on purpose: bad input" in run["state_message"]


def test_an_image_without_prefect_crashes_the_run_saying_what_to_install(
    project: Project, batch: Batch
) -> None:
    run = project.flow_run(batch.runs["no prefect"])

    assert run["state"] == "CRASHED", run
    assert run["state_message"] == (
        f"the image {project.scratch_image} cannot import prefect: install it in the image "
        "(pip install 'prefect>=3,<4') or use an image that has it"
    )


def test_a_bridge_network_container_cannot_reach_a_loopback_api_and_says_what_to_do(
    project: Project, batch: Batch
) -> None:
    run = project.flow_run(batch.runs["bridge without listen"])

    assert run["state"] == "CRASHED", run
    message = run["state_message"]
    assert "the Prefect API at http://host.docker.internal:" in message
    assert "could not be reached" in message
    assert "--prefect-api-listen" in message


def test_a_prefect_flow_built_into_the_image_is_read_in_the_container(
    project: Project, batch: Batch
) -> None:
    run_id = batch.runs["baked"]
    run = project.flow_run(run_id)
    logs = project.logs(run_id)

    assert run["state"] == "COMPLETED", (run, logs)
    assert "BAKED LOUD" in logs
    assert PLAIN_MARKER not in logs
    assert [t["state"] for t in task_runs(project, run_id)] == ["COMPLETED"]


def docker_gateway(client: docker.DockerClient) -> str:
    """The address of the host on Docker's default bridge network."""
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = config.get("Gateway")
    if gateway:
        return str(gateway)
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def test_a_bridge_network_container_reaches_the_api_served_on_the_docker_gateway(
    project: Project, docker_client: docker.DockerClient
) -> None:
    gateway = docker_gateway(docker_client)
    run_id = project.create_run(
        "tally/docker", "--param", "x=5", "--job-variable", "network_mode=bridge"
    )

    worker = project.run(
        "worker", "start", "--pool", "pbox", "--run-once", "--prefect-api-listen", f"{gateway}:0"
    )

    assert f"serves the Prefect API for its runs at http://{gateway}:" in worker.output
    assert_tally_completed(project, run_id, x=5)
    (container,) = containers_of(docker_client, run_id)
    assert container.attrs["HostConfig"]["NetworkMode"] == "bridge"


def test_cancelling_a_prefect_flow_stops_and_removes_its_container(
    project: Project, docker_client: docker.DockerClient
) -> None:
    run_id = project.create_run("nap/docker")
    worker = start_worker(
        "pslow",
        project.store_url,
        *("--poll-interval", "0.1", "--cancel-grace-seconds", "2"),
        cwd=project.cwd,
    )
    try:
        wait_for(lambda: "napping" in project.logs(run_id), "the flow to start", timeout=90)
        assert project.stored_run(run_id).state is RunState.RUNNING  # reported by the engine
        (container,) = containers_of(docker_client, run_id)
        container.reload()
        assert container.status == "running"

        project.run("flow-run", "cancel", run_id)
        wait_for(lambda: project.stored_run(run_id).state.is_final, "the run to end", 60)
        wait_for(lambda: not containers_of(docker_client, run_id), "the container to go", 30)
    finally:
        stop_worker(worker)

    run = project.stored_run(run_id)
    assert run.state is RunState.CANCELLED, (run.state_message, project.logs(run_id))


def test_the_workers_api_refuses_a_listen_address_it_cannot_bind(project: Project) -> None:
    done = run_worker(
        "pbox",
        project.store_url,
        "--run-once",
        *("--prefect-api-listen", "192.0.2.1:4300"),  # TEST-NET-1: not this machine's
        cwd=project.cwd,
    )

    assert done.code != 0
    assert "cannot serve the Prefect API on 192.0.2.1:4300" in done.stderr
    assert "Traceback" not in done.stderr
