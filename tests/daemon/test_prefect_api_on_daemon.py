"""The daemon serves the Prefect API at /prefect/api: a worker can point its runs there
(`--prefect-api-url`, as containers on other hosts would), with the daemon's bearer token."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.model.runs import RunState
from reconciler.store import open_store
from reconciler.worker.create_run import create_run
from tests.conftest import GitRepo
from tests.daemon.conftest import StartDaemon
from tests.daemon.test_daemon_local import applied, local
from tests.infra.worker_process import start_worker

pytest.importorskip("prefect", reason="the test extra installs prefect (make test does)")
pytestmark = pytest.mark.prefect

FLOWS = """\
from prefect import flow, task


@task
def add(a: int, b: int) -> int:
    return a + b


@flow
def total(n: int = 3) -> int:
    return sum(add(i, 1) for i in range(n))
"""
FILES = {
    "flows/total.py": FLOWS,
    "work-pools.yaml": "work_pools:\n  - {name: local, type: process}\n",
    "prefect.yaml": "deployments:\n"
    "  - {name: total, entrypoint: flows/total.py:total, work_pool: {name: local}}\n",
}
TOKEN = "daemon-token-for-tests"


def test_a_worker_runs_prefect_flows_against_the_daemons_api(
    start_daemon: StartDaemon, make_repo: Callable[..., GitRepo], tmp_path: Path
) -> None:
    repo = make_repo(FILES)
    daemon = start_daemon(local(repo), env={"RECONCILER_PREFECT_API_TOKEN": TOKEN})
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))

    # Without the token, the API refuses; with it, it answers as Prefect's server does.
    assert daemon.request("GET", "/prefect/api/flow_runs/nothing").status == 401
    version = daemon.request(
        "GET", "/prefect/api/admin/version", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert version.status == 200 and json.loads(version.body).startswith("3.")

    store = open_store(daemon.store_url)
    try:
        run_id = create_run(store, "total/total", parameters={"n": 4}).id
    finally:
        store.close()
    worker = start_worker(
        "local",
        daemon.store_url,
        *("--prefect-api-url", f"{daemon.url}/prefect/api", "--run-once"),
        cwd=tmp_path,
        log=tmp_path / "worker.log",
        env={"RECONCILER_PREFECT_API_TOKEN": TOKEN},
    )
    assert worker.wait(timeout=180) == 0, (tmp_path / "worker.log").read_text()
    store = open_store(daemon.store_url, readonly=True)
    try:
        run = store.get_run(run_id)
        assert run is not None
        assert run.state is RunState.COMPLETED, (run.state_message, daemon.log())
        deadline = time.monotonic() + 30
        while len(store.task_runs(run_id)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        tasks = store.task_runs(run_id)
    finally:
        store.close()
    assert len(tasks) == 4
    assert {t.state_type for t in tasks} == {"COMPLETED"}


def test_without_a_token_the_daemon_does_not_serve_the_prefect_api(
    start_daemon: StartDaemon, make_repo: Callable[..., GitRepo]
) -> None:
    repo = make_repo(FILES)
    assert "RECONCILER_PREFECT_API_TOKEN" not in os.environ
    daemon = start_daemon(local(repo))
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))
    assert daemon.request("GET", "/prefect/api/admin/version").status in (404, 405)
    assert "export RECONCILER_PREFECT_API_TOKEN" in daemon.log()
