"""Without a daemon, a worker evaluates the deployments' triggers: `hello` completing starts
`after-hello` with the completed run's name as its parameter, and the worker runs it."""

from __future__ import annotations

import time

import pytest

from reconciler.model.runs import FlowRun, RunState
from reconciler.store import open_store
from tests.e2e.helpers import apply_in_process
from tests.infra.worker_process import stop_worker
from tests.worker.conftest import PREFECT, Project

pytestmark = pytest.mark.e2e

AFTER_HELLO = """\
  - name: after-hello
    entrypoint: flows/flows.py:hello
    work_pool: {name: local}
    triggers:
      - expect: [prefect.flow-run.Completed]
        match_related: {prefect.resource.role: deployment, prefect.resource.name: hello}
        parameters: {name: "after {{ event.resource.name }}"}
"""


def _after_hello(project: Project) -> list[FlowRun]:
    store = open_store(project.store_url, readonly=True)
    try:
        return store.list_runs(deployment="hello/after-hello")
    finally:
        store.close()


def test_a_worker_without_a_daemon_runs_what_a_trigger_starts(project: Project) -> None:
    project.repo.commit({"prefect.yaml": PREFECT + AFTER_HELLO})
    apply_in_process(project.store_url, project.repo)
    worker = project.worker("--poll-interval", "0.05")
    try:
        first = project.run("hello/hello")
        done = project.wait_state(first, {RunState.COMPLETED}, timeout=60)
        deadline = time.monotonic() + 30
        while not _after_hello(project) and time.monotonic() < deadline:
            time.sleep(0.05)
        (triggered,) = _after_hello(project)
        assert triggered.parameters == {"name": f"after {done.name}"}
        final = project.wait_state(triggered.id, {RunState.COMPLETED}, timeout=60)
        assert f"hello after {done.name}" in project.logs(final.id)
        assert len(_after_hello(project)) == 1  # its own completion triggers nothing
    finally:
        stop_worker(worker)
