"""Triggers in a real daemon: a signed event webhook starts a run and an unsigned one is
refused with nothing stored; B triggered by A's completion runs once per A run, also when the
active daemon is killed (SIGKILL) and a standby takes over."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.daemon.webhooks import github_signature
from reconciler.model.runs import FlowRun, NewRun, RunState
from reconciler.store import open_store
from reconciler.store.run_events import list_events
from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, StartDaemon
from tests.daemon.test_daemon_ha import wait_role
from tests.e2e.helpers import project

pytestmark = pytest.mark.e2e

PREFECT = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
  - name: report
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
    triggers:
      - expect: [prefect.flow-run.Completed]
        match_related:
          prefect.resource.role: deployment
          prefect.resource.name: nightly
        parameters:
          region: "{{ event.resource.id }}"
      - expect: [acme.file.arrived]
        parameters:
          region: "{{ event.payload.key }}"
"""

TEMPLATE = """\
{"event": "acme.file.arrived",
 "resource": {"prefect.resource.id": "acme.bucket.{{ body.bucket }}"},
 "payload": {"key": {{ body.key | tojson }}}}
"""
SECRET = "s3cr3t-hook"


def config(repo: GitRepo) -> dict[str, Any]:
    return {
        "repositories": [{"name": "flows", "path": str(repo.path)}],
        "event_webhooks": [
            {"name": "files", "secret": {"env": "FILES_HOOK_SECRET"}, "template": TEMPLATE}
        ],
    }


ENV = {"FILES_HOOK_SECRET": SECRET}


def reports(store_url: str) -> list[FlowRun]:
    store = open_store(store_url)
    try:
        return store.list_runs(deployment="ingest/report")
    finally:
        store.close()


def wait_reports(store_url: str, count: int, daemon: DaemonProcess) -> list[FlowRun]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = reports(store_url)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{len(reports(store_url))} report runs, wanted {count}\n{daemon.log()}")


def complete_nightly(store_url: str) -> str:
    store = open_store(store_url)
    try:
        run = store.create_run(NewRun("ingest/nightly", "ingest", "etl", "default", time.time()))
        store.set_run_state(run.id, RunState.RUNNING)
        store.set_run_state(run.id, RunState.COMPLETED)
        return run.id
    finally:
        store.close()


def applied(repo: GitRepo) -> Callable[[dict[str, dict[str, Any]]], bool]:
    commit = repo.git("rev-parse", "HEAD")
    return lambda s: s.get("flows", {}).get("applied_commit") == commit


def test_signed_event_webhook_starts_a_run_and_an_unsigned_one_is_refused(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project({"prefect.yaml": PREFECT}))
    daemon = start_daemon(config(repo), env=ENV)
    daemon.wait_for(applied(repo))
    time.sleep(0.5)  # the evaluator has seen the triggers
    body = json.dumps({"bucket": "raw", "key": "2026/orders.csv"}).encode()

    for headers in ({}, {"X-Hub-Signature-256": github_signature("wrong", body)}):
        refused = daemon.request("POST", "/hooks/events/files", body, headers)
        assert refused.status == 401, refused
        assert "Traceback" not in refused.body.decode()
    store = open_store(daemon.store_url)
    try:
        assert list_events(store, event="acme.*") == []
    finally:
        store.close()
    assert daemon.request("POST", "/hooks/events/nope", body).status == 404

    signed = {"X-Hub-Signature-256": github_signature(SECRET, body)}
    answer = daemon.request("POST", "/hooks/events/files", body, signed)
    assert answer.status == 201, answer
    (run,) = wait_reports(daemon.store_url, 1, daemon)
    assert run.parameters["region"] == "2026/orders.csv"
    assert "acme.file.arrived" in (run.history[0].message or "")


def test_b_runs_once_per_a_run_across_a_sigkill_and_a_takeover(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project({"prefect.yaml": PREFECT}))
    active = start_daemon(config(repo), env=ENV)
    active.wait_for(applied(repo))
    standby = start_daemon(config(repo), env=ENV)
    standby.wait_for_log("standing by")
    time.sleep(0.5)
    upstream = [complete_nightly(active.store_url) for _ in range(3)]
    wait_reports(active.store_url, 3, active)
    active.kill()
    upstream += [complete_nightly(active.store_url) for _ in range(3)]
    wait_role(standby, "active", timeout=15)
    found = wait_reports(active.store_url, 6, standby)
    time.sleep(1.0)  # anything fired twice would show by now
    found = reports(active.store_url)
    assert sorted(r.parameters["region"] for r in found) == sorted(
        f"prefect.flow-run.{run_id}" for run_id in upstream
    )


WATCHDOG = """\
deployments:
  - name: watchdog
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
    triggers:
      - posture: Proactive
        expect: [acme.heartbeat]
        within: 2
"""


def test_a_proactive_trigger_fires_when_the_heartbeat_does_not_come_within_2_s(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project({"prefect.yaml": WATCHDOG}))
    daemon = start_daemon(config(repo), env=ENV)
    daemon.wait_for(applied(repo))
    applied_at = time.monotonic()
    deadline = applied_at + 20
    found: list[FlowRun] = []
    while not found and time.monotonic() < deadline:
        store = open_store(daemon.store_url)
        try:
            found = store.list_runs(deployment="ingest/watchdog")
        finally:
            store.close()
        time.sleep(0.05)
    assert found, daemon.log()
    assert time.monotonic() - applied_at >= 1.5  # not before the window ended
    assert "no expected event came in time" in (found[0].history[0].message or "")
