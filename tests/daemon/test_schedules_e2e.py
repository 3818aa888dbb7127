"""Schedules end to end: a real daemon turns a 2-second interval into runs, a real worker
runs them, and an edit in git replaces the waiting ones."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.model.runs import RunState
from reconciler.store import open_store
from tests.conftest import GitRepo
from tests.daemon.conftest import StartDaemon
from tests.infra.worker_process import start_worker

pytestmark = pytest.mark.e2e

FLOW = "def tick(label: str = 'tick') -> None:\n    print(f'ran {label}')\n"
POOLS = "work_pools:\n  - {name: local, type: process}\n"


def prefect(schedule: str) -> str:
    return (
        "deployments:\n"
        "  - name: every-2s\n"
        "    entrypoint: flows/tick.py:tick\n"
        "    work_pool: {name: local}\n"
        f"    schedules: [{schedule}]\n"
        "    pull: []\n"
    )


def runs(store_url: str) -> list:  # type: ignore[type-arg]
    store = open_store(store_url, readonly=True)
    try:
        return store.list_runs(limit=1000)
    finally:
        store.close()


def test_a_2_second_interval_runs_through_a_real_daemon_and_worker(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, tmp_path: Path
) -> None:
    repo = make_repo(
        {
            "flows/tick.py": FLOW,
            "work-pools.yaml": POOLS,
            "prefect.yaml": prefect("{interval: 2, parameters: {label: first}}"),
        }
    )
    daemon = start_daemon(
        {
            "repositories": [{"name": "flows", "path": str(repo.path)}],
            "scheduler": {"interval": "1s"},
        }
    )
    daemon.wait_for(lambda s: s.get("flows", {}).get("state") == "Synced")
    worker = start_worker(
        "local",
        daemon.store_url,
        *("--poll-interval", "0.1", "--prefetch-seconds", "0"),
        cwd=repo.path,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            done = [r for r in runs(daemon.store_url) if r.state is RunState.COMPLETED]
            if len(done) >= 2:
                break
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.2)
        assert all(r.schedule_id and r.parameters == {"label": "first"} for r in done)
        times = sorted(r.scheduled_time for r in done)
        assert times[1] - times[0] >= 2 and times[1] % 2 == 0

        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "work-pool",
                "preview",
                "local",
                "--hours",
                "0.01",
                "--store",
                daemon.store_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "tick/every-2s" in shown and "SCHEDULED" in shown

        # An edit in git: the waiting runs of the old schedule are replaced by the new one's.
        repo.commit({"prefect.yaml": prefect("{interval: 3, parameters: {label: second}}")})
        daemon.wait_for(lambda s: s["flows"]["applied_commit"] == repo.git("rev-parse", "HEAD"))
        deadline = time.monotonic() + 30
        while True:
            waiting = [r for r in runs(daemon.store_url) if r.state is RunState.SCHEDULED]
            seconds = [
                r
                for r in runs(daemon.store_url)
                if r.state is RunState.COMPLETED and r.parameters == {"label": "second"}
            ]
            if waiting and seconds:
                break
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.2)
        assert {tuple(sorted(r.parameters.items())) for r in waiting} == {(("label", "second"),)}
        listed = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "deployment",
                "runs",
                "tick/every-2s",
                "--limit",
                "1000",
                "--store",
                daemon.store_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "COMPLETED" in listed and "schedule" in listed
    finally:
        worker.terminate()
        worker.wait(timeout=30)
