"""The scheduling policy of daemon.yaml reaches every tick: the daemon stores it, and a worker
(started with nothing but --store) ticks with it, after the daemon is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from reconciler.model.runs import RunState
from reconciler.scheduling.policy import SchedulingPolicy, stored_policy
from reconciler.store import open_store
from tests.conftest import GIT_ENV, CliResult, GitRepo
from tests.daemon.conftest import StartDaemon

pytestmark = pytest.mark.e2e

FLOW = "def hourly(label: str = 'x') -> None:\n    print(label)\n"
POOLS = "work_pools:\n  - {name: local, type: process}\n"


def deployment(name: str) -> str:
    return (
        f"  - name: {name}\n"
        "    entrypoint: flows/hourly.py:hourly\n"
        "    work_pool: {name: local}\n"
        "    schedules: [{interval: 3600}]\n"
        "    pull: []\n"
    )


def scheduled(store_url: str, deployment: str) -> int:
    store = open_store(store_url, readonly=True)
    try:
        runs = store.list_runs(deployment=deployment, states=[RunState.SCHEDULED], limit=1000)
        return len(runs)
    finally:
        store.close()


def test_a_policy_in_daemon_yaml_reaches_a_workers_tick(
    make_repo: Callable[..., GitRepo],
    start_daemon: StartDaemon,
    run_cli: Callable[..., CliResult],
) -> None:
    # By default a tick makes 3 runs of an hourly schedule at once (min_runs: 3); this
    # daemon.yaml asks for 1.
    repo = make_repo(
        {
            "flows/hourly.py": FLOW,
            "work-pools.yaml": POOLS,
            "prefect.yaml": "deployments:\n" + deployment("first"),
        }
    )
    daemon = start_daemon(
        {
            "repositories": [{"name": "flows", "path": str(repo.path)}],
            "scheduler": {"min_runs": 1, "max_runs": 1, "late_runs": "skip"},
        }
    )
    daemon.wait_for(lambda s: s.get("flows", {}).get("state") == "Synced")
    assert daemon.terminate() == 0
    store = open_store(daemon.store_url, readonly=True)
    try:
        policy = stored_policy(store)
    finally:
        store.close()
    assert (policy.look_ahead.min_runs, policy.look_ahead.max_runs) == (1, 1)
    assert policy.late.skip is True
    assert policy != SchedulingPolicy()
    assert scheduled(daemon.store_url, "hourly/first") == 1  # the daemon's own tick

    # A second deployment, applied by the CLI (which does not tick): only a tick makes its runs.
    repo.commit({"prefect.yaml": "deployments:\n" + deployment("first") + deployment("second")})
    applied = run_cli("--store", daemon.store_url, str(repo.path))
    assert applied.code == 0, applied.output
    assert scheduled(daemon.store_url, "hourly/second") == 0

    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "reconciler", "worker", "start", "--pool", "local"),
            *("--store", daemon.store_url, "--heartbeat-seconds", "0.2", "--no-forkserver"),
        ],
        cwd=repo.path,
        env={**os.environ, **GIT_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while scheduled(daemon.store_url, "hourly/second") == 0:
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() < deadline, "the worker made no run in 60 s"
            time.sleep(0.1)
        time.sleep(1.0)  # a few more ticks: the policy holds at each
        assert scheduled(daemon.store_url, "hourly/second") == 1
        assert scheduled(daemon.store_url, "hourly/first") == 1
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


def test_a_store_without_a_stored_policy_ticks_with_the_defaults(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert store.scheduling_policy() is None
        assert stored_policy(store) == SchedulingPolicy()
        store.set_scheduling_policy("{not json")
        assert stored_policy(store) == SchedulingPolicy()  # unreadable: a tick must go on
        wanted = SchedulingPolicy.from_json(json.dumps({"late": {"skip": True}, "new": 1}))
        store.set_scheduling_policy(wanted.to_json())
        assert stored_policy(store).late.skip is True
    finally:
        store.close()
