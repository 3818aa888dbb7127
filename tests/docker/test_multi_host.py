"""Workers on several hosts sharing one PostgreSQL store (issue 7, item 4).

Three workers run in containers of reconciler's own image (tests/infra/reconciler_image.py)
and one on this host, all against the session's PostgreSQL server, on one pool of 2,000 runs.
One container is killed (SIGKILL, the whole container) while it has runs in progress: the live
workers find it stopped heartbeating (1 s beats, 3 missed) and crash its runs, and go on with
the rest. No run may start twice, every run must end. A fifth of the runs start a Python flow,
the rest only `true` (see new_runs): the whole test takes about a minute and a half.

The containers run with `network_mode="host"`: PostgreSQL listens on 127.0.0.1 only, and the
containers share the host's loopback and nothing else of it (their own filesystem, processes
and Python install). Neither the worker nor its flows need any other network here.

The flows are in a git repository on this host, bind-mounted read-only into the containers at
the same absolute path; the deployments' pull step is `set_working_directory` to that path, so
a run finds its code at the same place on every worker. (The default pull step, a git clone
per run, works as well but costs 2,000 clones here, on 2 cores.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from reconciler.model.runs import FlowRun, NewRun, RunState
from reconciler.store import open_store
from tests.conftest import GIT_ENV, CliResult, GitRepo
from tests.infra.reconciler_image import RUN_LABEL

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

RUNS = 2000
NAP_EVERY = 10  # one run in ten sleeps NAP_SECONDS, so that the kill finds runs in progress
NAP_SECONDS = 0.5
CONTAINERS = 3
VICTIM = "container-2"
HOST_WORKER = "host"
KILL_AFTER_FINAL = 300  # runs ended before the kill
FINAL = {RunState.COMPLETED, RunState.FAILED, RunState.CRASHED, RunState.CANCELLED}
ACTIVE = {RunState.PENDING, RunState.RUNNING}
DEADLINE_S = 400.0

FLOWS = """\
import time


def quick(n: int = 0) -> int:
    return n


def nap(seconds: float = 0.5) -> None:
    time.sleep(seconds)
"""
POOLS = "work_pools:\n  - name: multi\n    type: process\n"


def prefect_yaml(code: Path) -> str:
    pull = (
        "    pull:\n"
        "      - prefect.deployments.steps.set_working_directory:\n"
        f"          directory: {code}\n"
    )
    return (
        "deployments:\n"
        "  - name: quick\n    entrypoint: flows/flows.py:quick\n    work_pool: {name: multi}\n"
        + pull
        + "  - name: nap\n    entrypoint: flows/flows.py:nap\n    work_pool: {name: multi}\n"
        + pull
    )


def new_runs(count: int) -> list[NewRun]:
    """One run in ten naps (a Python flow), one in ten returns at once (a Python flow); the
    rest are runs of `quick` whose job sets `command: true`: claimed, pulled, configured,
    started as a process and ended like any run, without the 0.1 s of CPU of starting Python
    (process-per-run: 2,000 Python flows take about 5 minutes on 2 cores)."""
    now = time.time()
    runs = []
    for i in range(count):
        nap = i % NAP_EVERY == NAP_EVERY - 1
        python = nap or i % NAP_EVERY == 0
        runs.append(
            NewRun(
                deployment="nap/nap" if nap else "quick/quick",
                flow_name="nap" if nap else "quick",
                pool="multi",
                queue="default",
                scheduled_time=now,
                parameters={"seconds": NAP_SECONDS} if nap else {"n": i},
                job_variables={} if python else {"command": "true"},
            )
        )
    return runs


def all_runs(url: str) -> list[FlowRun]:
    store = open_store(url, readonly=True)
    try:
        return store.list_runs(limit=RUNS * 2)
    finally:
        store.close()


def worker_args(url: str, name: str) -> list[str]:
    return [
        "worker",
        "start",
        "--pool",
        "multi",
        "--store",
        url,
        "--name",
        name,
        "--limit",
        "4",
        "--heartbeat-seconds",
        "1",
    ]


@contextlib.contextmanager
def worker_containers(
    client: docker.DockerClient, image: str, url: str, code: Path
) -> Iterator[dict[str, Container]]:
    """The container workers, labelled with this test's run id and removed afterwards."""
    run_id = uuid.uuid4().hex
    started: dict[str, Container] = {}
    try:
        for number in range(1, CONTAINERS + 1):
            name = f"container-{number}"
            started[name] = client.containers.run(
                image,
                worker_args(url, name),
                detach=True,
                labels={RUN_LABEL: run_id},
                # Host networking: the store listens on 127.0.0.1 (see the docstring).
                network_mode="host",
                volumes={str(code): {"bind": str(code), "mode": "ro"}},
            )
        yield started
    finally:
        for running in started.values():
            with contextlib.suppress(docker.errors.NotFound):
                running.remove(force=True)
        assert client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}) == []


def logs_of(containers: dict[str, Container], host_log: Path) -> str:
    parts = []
    for name, running in containers.items():
        with contextlib.suppress(docker.errors.APIError):
            parts.append(f"--- {name}\n{running.logs(tail=30).decode(errors='replace')}")
    parts.append(f"--- host\n{host_log.read_text()[-3000:]}")
    return "\n".join(parts)


def test_workers_in_containers_and_on_the_host_share_2000_runs_and_survive_a_killed_one(
    docker_client: docker.DockerClient,
    reconciler_image: str,
    postgres_url: str,
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    repo = make_repo({"flows/flows.py": FLOWS, "work-pools.yaml": POOLS})
    repo.commit({"prefect.yaml": prefect_yaml(repo.path)})
    applied = run_cli("--store", postgres_url, str(repo.path))
    assert applied.code == 0, applied.output
    store = open_store(postgres_url)
    try:
        assert store.create_runs(new_runs(RUNS)) == RUNS
    finally:
        store.close()

    started = time.monotonic()
    host_log = tmp_path / "host-worker.log"
    with (
        worker_containers(docker_client, reconciler_image, postgres_url, repo.path) as containers,
        host_log.open("w") as log,
    ):
        host = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *worker_args(postgres_url, HOST_WORKER)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **GIT_ENV},
            cwd=tmp_path,
        )
        try:
            # The kill: once enough runs ended, while the victim is running a nap (0.5 s).
            while time.monotonic() - started < DEADLINE_S:
                runs = all_runs(postgres_url)
                ended = sum(run.state in FINAL for run in runs)
                napping = [
                    run
                    for run in runs
                    if run.worker == VICTIM
                    and run.state is RunState.RUNNING
                    and run.deployment == "nap/nap"
                ]
                if ended >= KILL_AFTER_FINAL and napping:
                    containers[VICTIM].kill()
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"no kill in {DEADLINE_S} s\n{logs_of(containers, host_log)}")
            killed_at = time.monotonic() - started
            ended_at_kill = ended
            assert containers[VICTIM].wait(timeout=30)["StatusCode"] == 137
            # What the victim left unfinished (crashed already, if the others were that fast).
            unfinished = {
                run.id
                for run in all_runs(postgres_url)
                if run.worker == VICTIM and run.state in ACTIVE | {RunState.CRASHED}
            }

            while time.monotonic() - started < DEADLINE_S:
                runs = all_runs(postgres_url)
                if sum(run.state in FINAL for run in runs) == RUNS:
                    break
                time.sleep(0.5)
            else:
                states = Counter(run.state.value for run in runs)
                pytest.fail(f"not all ended: {states}\n{logs_of(containers, host_log)}")
            took = time.monotonic() - started
            for running in containers.values():
                running.reload()
            survivors = {name: c.status for name, c in containers.items() if name != VICTIM}
            details = logs_of(containers, host_log)
        finally:
            if host.poll() is None:
                host.terminate()
            host_code = host.wait(timeout=60)

    print(
        f"\n{RUNS} runs by {CONTAINERS} container workers and 1 on the host: all ended in "
        f"{took:.1f} s; {VICTIM} killed at {killed_at:.1f} s after {ended_at_kill} had ended"
    )
    assert host_code == 0, details
    assert set(survivors.values()) == {"running"}, survivors
    assert len(runs) == RUNS
    for run in runs:
        starts = [change for change in run.history if change.state is RunState.RUNNING]
        assert len(starts) <= 1, f"run {run.id} started {len(starts)} times: {run.history}"
    victims = [run for run in runs if run.worker == VICTIM]
    crashed = [run for run in victims if run.state is RunState.CRASHED]
    others = [run for run in runs if run.worker != VICTIM]
    # The victim's runs in progress at the kill are CRASHED by the live workers; what it had
    # finished before stays COMPLETED.
    assert unfinished, "the victim had no run in progress when killed"
    assert {run.id for run in crashed} == unfinished
    assert {run.state for run in victims} <= {RunState.COMPLETED, RunState.CRASHED}
    for run in crashed:
        assert run.state_message == f"worker {VICTIM} stopped heartbeating", run.state_message
    # Every other run, before and after the kill, completed, each started exactly once.
    not_completed = Counter(
        (run.worker, run.state.value) for run in others if run.state is not RunState.COMPLETED
    )
    assert not not_completed, f"{not_completed}\n{details}"
    for run in others:
        assert sum(change.state is RunState.RUNNING for change in run.history) == 1
    by_worker = Counter(run.worker for run in runs if run.state is RunState.COMPLETED)
    print(f"completed per worker: {dict(by_worker)}; crashed: {len(crashed)}")
    # The host worker and at least two container workers completed runs, and containers ran
    # Python flows from the mounted repository, not only `true`.
    assert by_worker[HOST_WORKER] > 0 and len(by_worker) >= 3, by_worker
    flows_in_containers = Counter(
        run.worker
        for run in runs
        if run.state is RunState.COMPLETED and not run.job_variables and run.worker != HOST_WORKER
    )
    assert len(flows_in_containers) >= 2, flows_in_containers
