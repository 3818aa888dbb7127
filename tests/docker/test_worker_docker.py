"""A docker pool's worker runs each flow run in a container, end to end as a user works: a
repository declares the pools and deployments, `reconcile REPO` applies it, `reconcile
deployment run` creates runs, `reconcile worker start` executes them on the real engine, and
`reconcile flow-run inspect|cancel` and the container itself show the outcome.

The runs of one batch are executed by a single `worker start --run-once` (it claims them all
at once and runs them side by side); each test then checks one of them. The images are local
(`image_pull_policy: Never` in the pools): no registry can be reached from this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from reconciler.model.runs import FlowRun, RunState
from reconciler.store import open_store
from tests.conftest import GIT_ENV, CliResult
from tests.e2e.helpers import new_repo
from tests.infra.containers import TEST_LABEL, build_image, containers_of, remove_labelled
from tests.infra.docker_env import Registry
from tests.infra.worker_process import start_worker, stop_worker, wait_for

pytestmark = pytest.mark.docker

FLOWS = """\
import os
import signal
import sys
import time


# Plain functions: the base image has no prefect (tests/docker/test_worker_docker_prefect.py
# runs Prefect flows in containers).
def ingest(who: str = "world") -> None:
    print(f"hello {who} in {os.getcwd()}")
    print(f"GREETING={os.environ.get('GREETING')}")
    print("a line on stderr", file=sys.stderr)
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        if os.path.exists(limit):
            with open(limit) as handle:
                print(f"memory limit {handle.read().strip()}")


def show(path: str) -> None:
    with open(path) as handle:
        print(f"read {handle.read().strip()!r}")
    with open("/etc/hosts") as handle:
        print(f"host.docker.internal known: {'host.docker.internal' in handle.read()}")


def explode(reason: str = "boom") -> None:
    raise ValueError(f"the flow failed: {reason}")


def snooze(seconds: float = 60) -> None:
    def on_term(signum, frame):
        print("SIGTERM received, finishing slowly", flush=True)

    signal.signal(signal.SIGTERM, on_term)
    print("sleeping", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
"""

BAKED_FLOW = """\
import os


def ingest(who: str = "world") -> None:
    print(f"baked hello {who} in {os.getcwd()}")
"""


PRINT_PARAMETERS = (
    "import os; print(os.getcwd(), open(os.environ['RECONCILER_FLOW_PARAMETERS_FILE']).read())"
)


def pools_file(tag: str) -> str:
    defaults = (
        "    job_variables:\n"
        "      image: reconciler-test-base:bookworm\n"
        "      image_pull_policy: Never\n"
        f"      labels: {{{TEST_LABEL}: '{tag}'}}\n"
    )
    return "work_pools:\n" + "".join(
        f"  - name: {name}\n    type: docker\n{defaults}"
        for name in ("box", "slowbox", "nohost", "privatebox")
    )


def prefect_file(tag: str, name: str, baked_image: str) -> str:
    return f"""\
deployments:
  - name: cloned
    entrypoint: flows/etl.py:ingest
    work_pool: {{name: box}}
  - name: configured
    entrypoint: flows/etl.py:ingest
    work_pool:
      name: box
      job_variables:
        name: {name}
        env: {{GREETING: bonjour}}
        labels: {{{TEST_LABEL}: '{tag}', team: data}}
        mem_limit: 64m
        memswap_limit: 128m
  - name: cloned
    entrypoint: flows/etl.py:explode
    work_pool: {{name: box}}
  - name: cloned
    entrypoint: flows/etl.py:show
    work_pool: {{name: box}}
  - name: baked
    entrypoint: flows/etl.py:ingest
    pull:
      - prefect.deployments.steps.set_working_directory: {{directory: /opt/code}}
    work_pool: {{name: box, job_variables: {{image: '{baked_image}'}}}}
  - name: slow
    entrypoint: flows/etl.py:snooze
    work_pool: {{name: slowbox}}
  - name: unreachable
    entrypoint: flows/etl.py:ingest
    work_pool: {{name: nohost}}
  - name: private
    entrypoint: flows/etl.py:ingest
    pull:
      - prefect.deployments.steps.set_working_directory: {{directory: /opt/code}}
    work_pool:
      name: privatebox
      job_variables:
        image_pull_policy: Always
        registry_credentials: "{{{{ prefect.blocks.docker-registry-credentials.private }}}}"
"""


def cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> CliResult:
    full_env = {**os.environ, **GIT_ENV, "NO_COLOR": "1", **(env or {})}
    full_env.pop("RECONCILER_STORE", None)
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@dataclass
class Project:
    store_url: str
    cwd: Path
    tag: str
    container_name: str
    baked_image: str
    scratch_image: str

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        result = cli(*args, "--store", self.store_url, cwd=self.cwd, env=env)
        assert result.code == 0, result.output
        return result

    def create_run(self, deployment: str, *options: str) -> str:
        created = self.run("deployment", "run", deployment, *options)
        found = re.search(r"\(([0-9a-f-]{36})\)", created.stdout)
        assert found, created.stdout
        return found.group(1)

    def flow_run(self, run_id: str) -> dict[str, Any]:
        inspected: dict[str, Any] = json.loads(self.run("flow-run", "inspect", run_id).stdout)
        return inspected

    def logs(self, run_id: str) -> str:
        return self.run("flow-run", "logs", run_id).output

    def stored_run(self, run_id: str) -> FlowRun:
        store = open_store(self.store_url, readonly=True)
        try:
            run = store.get_run(run_id)
        finally:
            store.close()
        assert run is not None
        return run


@pytest.fixture(scope="module")
def project(
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Project]:
    """The repository applied to a fresh store, with its images built."""
    tag = uuid.uuid4().hex[:12]
    root = tmp_path_factory.mktemp("worker-docker")
    baked = f"reconciler-test-baked:{tag}"
    scratch = f"reconciler-test-no-python:{tag}"
    project = Project(
        store_url=f"sqlite:///{root / 'state.db'}",
        cwd=root,
        tag=tag,
        container_name=f"reconciler-test-{tag}",
        baked_image=baked,
        scratch_image=scratch,
    )
    try:
        build_image(docker_client, baked, base_image, {"/opt/code/flows/etl.py": BAKED_FLOW}, tag)
        build_image(docker_client, scratch, "scratch", {"/hello.txt": "no python here\n"}, tag)
        repo = new_repo(
            root / "repo",
            {
                "flows/etl.py": FLOWS,
                "work-pools.yaml": pools_file(tag),
                "prefect.yaml": prefect_file(tag, project.container_name, baked),
            },
        )
        # The private deployment names a credentials block; its test sets the real values.
        unset = {"username": "-", "password": "-", "registry_url": "registry.invalid"}
        project.run(
            "secret",
            "set",
            "docker-registry-credentials/private",
            "--json",
            "--value",
            json.dumps(unset),
        )
        project.run(str(repo.path))
        yield project
    finally:
        remove_labelled(docker_client, tag, (baked, scratch))


@dataclass
class Batch:
    runs: dict[str, str]
    worker: CliResult


@pytest.fixture(scope="module")
def batch(project: Project, docker_client: docker.DockerClient) -> Batch:
    """Runs of pool `box`, all executed by one `worker start --run-once`."""
    # A container already holds the configured name: the run's container gets `name-1`.
    docker_client.containers.create(
        "reconciler-test-base:bookworm",
        ["true"],
        name=project.container_name,
        labels={TEST_LABEL: project.tag},
    )
    networks = [f"reconciler-test-{project.tag}-{n}" for n in ("front", "back")]
    for network in networks:
        docker_client.networks.create(network, labels={TEST_LABEL: project.tag})
    shared = project.cwd / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("from the host\n")
    runs = {
        "wired": project.create_run(
            "show/cloned",
            "--param",
            "path=/data/hello.txt",
            "--job-variable",
            f"networks={json.dumps(networks)}",
            "--job-variable",
            f"volumes={json.dumps([f'{shared}:/data:ro'])}",
        ),
        "cloned": project.create_run("ingest/cloned", "--param", "who=Ada"),
        "own command": project.create_run(
            "ingest/cloned",
            "--param",
            "who=Dennis",
            "--job-variable",
            f"command=python3 -c {shlex.quote(PRINT_PARAMETERS)}",
        ),
        "configured": project.create_run("ingest/configured", "--param", "who=Grace"),
        "failing": project.create_run("explode/cloned", "--param", "reason=bad input"),
        "baked": project.create_run("ingest/baked", "--param", "who=Linus"),
        "removed": project.create_run(
            "ingest/cloned", "--param", "who=Ken", "--job-variable", "auto_remove=true"
        ),
        "missing image": project.create_run(
            "ingest/cloned", "--job-variable", f"image=reconciler-test-missing:{project.tag}"
        ),
        "no registry": project.create_run(
            "ingest/cloned",
            "--job-variable",
            f"image=127.0.0.1:9/reconciler-test/missing:{project.tag}",
            "--job-variable",
            "image_pull_policy=Always",
        ),
        "no python": project.create_run(
            "ingest/cloned", "--job-variable", f"image={project.scratch_image}"
        ),
    }
    worker = project.run("worker", "start", "--pool", "box", "--run-once")
    return Batch(runs, worker)


def test_a_cloned_flow_runs_in_a_container_with_its_parameters(
    project: Project, batch: Batch, docker_client: docker.DockerClient
) -> None:
    run_id = batch.runs["cloned"]
    run = project.flow_run(run_id)

    assert run["state"] == "COMPLETED", run
    assert run["exit_code"] == 0
    (container,) = containers_of(docker_client, run_id)
    assert run["infrastructure_id"] == f"container {container.short_id}"
    assert container.status == "exited"
    logs = project.logs(run_id)
    assert "hello Ada in /opt/reconciler/code" in logs
    assert "a line on stderr" in logs
    assert "hello Ada" in batch.worker.output  # stream_output: the worker shows it too


def test_a_configured_command_runs_in_the_code_directory_with_the_parameters(
    project: Project, batch: Batch
) -> None:
    run_id = batch.runs["own command"]

    assert project.stored_run(run_id).state is RunState.COMPLETED
    assert '/opt/reconciler/code {"who": "Dennis"}' in project.logs(run_id)


def test_output_is_stored_per_stream(project: Project, batch: Batch) -> None:
    store = open_store(project.store_url, readonly=True)
    try:
        lines = store.run_logs(batch.runs["cloned"])
    finally:
        store.close()
    streams = {line.line: line.stream for line in lines}

    assert streams["hello Ada in /opt/reconciler/code"] == "stdout"
    assert streams["a line on stderr"] == "stderr"


def test_job_variables_set_env_labels_name_and_memory_of_the_container(
    project: Project, batch: Batch, docker_client: docker.DockerClient
) -> None:
    run_id = batch.runs["configured"]
    assert project.stored_run(run_id).state is RunState.COMPLETED
    logs = project.logs(run_id)
    assert "hello Grace in /opt/reconciler/code" in logs
    assert "GREETING=bonjour" in logs
    assert f"memory limit {64 * 1024 * 1024}" in logs

    (container,) = containers_of(docker_client, run_id)
    assert container.name == f"{project.container_name}-1"  # the name was taken
    assert container.labels["team"] == "data"
    assert container.labels["io.prefect.flow-run-id"] == run_id
    host_config = container.attrs["HostConfig"]
    assert host_config["Memory"] == 64 * 1024 * 1024
    assert host_config["MemorySwap"] == 128 * 1024 * 1024


def test_networks_and_volumes_of_the_job_are_attached(
    project: Project, batch: Batch, docker_client: docker.DockerClient
) -> None:
    run_id = batch.runs["wired"]
    assert project.stored_run(run_id).state is RunState.COMPLETED
    logs = project.logs(run_id)
    assert "read 'from the host'" in logs
    assert "host.docker.internal known: True" in logs

    (container,) = containers_of(docker_client, run_id)
    attached = set(container.attrs["NetworkSettings"]["Networks"])
    assert attached == {f"reconciler-test-{project.tag}-{n}" for n in ("front", "back")}


def test_a_flow_that_raises_fails_the_run_with_its_traceback(
    project: Project, batch: Batch
) -> None:
    run_id = batch.runs["failing"]
    run = project.flow_run(run_id)

    assert run["state"] == "FAILED", run
    assert run["exit_code"] == 1
    assert "the flow raised an exception" in run["state_message"]
    logs = project.logs(run_id)
    assert "Traceback (most recent call last)" in logs
    assert "ValueError: the flow failed: bad input" in logs


def test_code_built_into_the_image_runs_in_the_pull_steps_directory(
    project: Project, batch: Batch
) -> None:
    run_id = batch.runs["baked"]

    assert project.stored_run(run_id).state is RunState.COMPLETED
    assert "baked hello Linus in /opt/code" in project.logs(run_id)


def test_auto_remove_removes_the_container_after_its_output_and_exit_code_are_read(
    project: Project, batch: Batch, docker_client: docker.DockerClient
) -> None:
    run_id = batch.runs["removed"]
    run = project.stored_run(run_id)

    assert run.state is RunState.COMPLETED
    assert run.exit_code == 0
    assert (run.infrastructure_id or "").startswith("container ")
    assert "hello Ken" in project.logs(run_id)
    assert containers_of(docker_client, run_id) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing image", "is not on the Docker engine, and image_pull_policy is Never"),
        ("no registry", "pulling image '127.0.0.1:9/reconciler-test/missing:"),
        ("no python", "cannot run python3"),
    ],
)
def test_a_container_that_cannot_start_crashes_the_run_with_the_reason(
    project: Project,
    batch: Batch,
    docker_client: docker.DockerClient,
    case: str,
    expected: str,
) -> None:
    run_id = batch.runs[case]
    run = project.flow_run(run_id)

    assert run["state"] == "CRASHED", run
    assert run["exit_code"] is None
    assert "the infrastructure could not start" in run["state_message"]
    assert expected in run["state_message"]
    assert containers_of(docker_client, run_id) == []  # nothing left half-made


def test_a_worker_without_an_engine_crashes_the_run(project: Project) -> None:
    run_id = project.create_run("ingest/unreachable")

    project.run(
        "worker",
        "start",
        "--pool",
        "nohost",
        "--run-once",
        env={"DOCKER_HOST": f"unix://{project.cwd}/no-docker.sock"},
    )

    run = project.stored_run(run_id)
    assert run.state is RunState.CRASHED
    assert "no Docker engine is reachable" in (run.state_message or "")


def test_cancelling_a_run_stops_its_container_after_the_grace_period(
    project: Project, docker_client: docker.DockerClient
) -> None:
    run_id = project.create_run("snooze/slow")
    worker = start_worker(
        "slowbox",
        project.store_url,
        *("--poll-interval", "0.1", "--cancel-grace-seconds", "2"),
        cwd=project.cwd,
    )
    try:
        wait_for(lambda: "sleeping" in project.logs(run_id), "the flow to start")
        (container,) = containers_of(docker_client, run_id)
        container.reload()
        assert container.status == "running"

        project.run("flow-run", "cancel", run_id)
        asked = time.monotonic()
        wait_for(lambda: project.stored_run(run_id).state.is_final, "the run to end")
        took = time.monotonic() - asked
    finally:
        stop_worker(worker)

    run = project.stored_run(run_id)
    assert run.state is RunState.CANCELLED, run
    assert run.exit_code == 137  # SIGTERM was handled and ignored: killed after the grace
    assert "SIGTERM received" in project.logs(run_id)
    assert 1.5 <= took <= 8, took
    container.reload()
    assert container.status == "exited"


def test_a_private_image_is_pulled_with_the_registry_credentials_block(
    project: Project, docker_client: docker.DockerClient, auth_registry: Registry
) -> None:
    ref = f"{auth_registry.address}/reconciler-test/baked:{project.tag}"
    docker_client.images.get(project.baked_image).tag(ref)
    repository, _, tag = ref.rpartition(":")
    pushed = docker_client.images.push(
        repository, tag=tag, auth_config=auth_registry.auth_config, stream=True, decode=True
    )
    assert not [event for event in pushed if "error" in event]
    docker_client.images.remove(ref)  # only a pull can bring it back
    password = str(auth_registry.password)
    for block, secret in (("private", password), ("wrong", "not-the-password-" + project.tag)):
        credentials = {
            "username": auth_registry.username,
            "password": secret,
            "registry_url": auth_registry.address,
        }
        project.run(
            "secret",
            "set",
            f"docker-registry-credentials/{block}",
            "--json",
            "--value",
            json.dumps(credentials),
        )
    good = project.create_run(
        "ingest/private", "--param", "who=Barbara", "--job-variable", f"image={ref}"
    )
    wrong = project.create_run(
        "ingest/private",
        "--job-variable",
        f"image={ref}",
        "--job-variable",
        "registry_credentials={{ prefect.blocks.docker-registry-credentials.wrong }}",
    )

    try:
        worker = project.run("worker", "start", "--pool", "privatebox", "--run-once")
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(ref)

    assert project.stored_run(good).state is RunState.COMPLETED
    assert "baked hello Barbara in /opt/code" in project.logs(good)
    refused = project.stored_run(wrong)
    assert refused.state is RunState.CRASHED
    assert f"pulling image {ref!r} failed" in (refused.state_message or "")
    assert "unauthorized" in (refused.state_message or "").lower()
    for text in (worker.output, project.logs(good), refused.state_message or ""):
        assert password not in text
        assert "not-the-password" not in text
