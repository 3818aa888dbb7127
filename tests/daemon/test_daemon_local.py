"""`reconcile daemon` on local repositories, as a real subprocess called over real HTTP:
commits are applied as they land, invalid commits stall without losing anything, drift is
reverted or reported, and the process survives SIGTERM, SIGKILL and a second daemon."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.resources import Kind
from reconciler.store import open_store
from tests.conftest import GitRepo
from tests.daemon.conftest import StartDaemon
from tests.e2e.helpers import PREFECT, TWO_DEPLOYMENTS, keys, project

pytestmark = pytest.mark.e2e


def local(repo: GitRepo, **extra: Any) -> dict[str, Any]:
    return {"repositories": [{"name": "flows", "path": str(repo.path), **extra}]}


def applied(commit: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda s: (
        s.get("flows", {}).get("applied_commit") == commit and (s["flows"]["state"] == "Synced")
    )


def deployments(store_url: str) -> dict[str, Any]:
    store = open_store(store_url, readonly=True)
    try:
        return {r.key: r.spec for r in store.list_resources(Kind.DEPLOYMENT)}
    finally:
        store.close()


def test_a_new_commit_is_applied_and_reported(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, tmp_path: Path
) -> None:
    repo = make_repo(project())
    daemon = start_daemon(local(repo))
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/nightly"]

    commit = repo.commit({"prefect.yaml": TWO_DEPLOYMENTS}, "add hourly")
    status = daemon.wait_for(applied(commit), timeout=10)["flows"]
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/hourly", "ingest/nightly"]
    assert status["fetched_commit"] == commit
    assert status["last_success_at"] and status["next_attempt_at"]
    assert re.search(
        rf"reconcile repo=flows commit={commit[:12]} outcome=applied duration=\d+\.\d+s "
        r"detail=applied: 1 added",
        daemon.log(),
    )
    shown = subprocess.run(
        [sys.executable, "-m", "reconciler", "status", "--store", daemon.store_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(rf"flows\s+Synced\s+{commit[:12]}\s+{commit[:12]}", shown), shown


def test_invalid_files_stall_until_a_new_commit_and_keep_what_was_applied(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}))
    daemon = start_daemon(local(repo))
    good = repo.git("rev-parse", "HEAD")
    daemon.wait_for(applied(good))
    before = deployments(daemon.store_url)

    bad = repo.commit({"prefect.yaml": "deployments:\n  - name: [unclosed\n"}, "broken")
    status = daemon.wait_for(lambda s: s["flows"]["state"] == "Stalled")["flows"]
    assert status["stalled_commit"] == bad
    assert status["applied_commit"] == good
    assert "repo/prefect.yaml:3:1: error: not valid YAML" in status["last_error"]
    assert deployments(daemon.store_url) == before

    emptied = repo.commit({"prefect.yaml": "deployments: []\n"}, "empty the file")
    status = daemon.wait_for(lambda s: s["flows"].get("stalled_commit") == emptied)["flows"]
    assert "allow_empty" in status["last_error"] or "every object" in status["last_error"]
    assert deployments(daemon.store_url) == before

    fixed = repo.commit({"prefect.yaml": PREFECT}, "fixed")
    daemon.wait_for(applied(fixed))
    assert list(deployments(daemon.store_url)) == ["ingest/nightly"]


def delete_out_of_band(store_url: str, key: str) -> None:
    store = open_store(store_url)
    try:
        with store.transaction() as tx:
            tx.delete(Kind.DEPLOYMENT, key)
    finally:
        store.close()


def test_drift_is_reverted_with_self_heal(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}))
    daemon = start_daemon({**local(repo), "drift_interval": "1s"})
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))

    delete_out_of_band(daemon.store_url, "ingest/hourly")
    status = daemon.wait_for(lambda s: "drift reverted" in (s["flows"]["message"] or ""))
    assert "+deployment ingest/hourly" in status["flows"]["message"]
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/hourly", "ingest/nightly"]


def test_drift_is_reported_without_self_heal(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}))
    daemon = start_daemon({**local(repo, self_heal=False), "drift_interval": "1s"})
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))

    delete_out_of_band(daemon.store_url, "ingest/hourly")
    status = daemon.wait_for(lambda s: s["flows"]["state"] == "OutOfSync")["flows"]
    assert status["drift"] == ["+deployment ingest/hourly"]
    time.sleep(1.5)  # another drift check or two: still not reverted
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/nightly"]


def test_a_deleted_branch_is_an_error_that_deletes_nothing(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project())
    repo.git("branch", "live")
    daemon = start_daemon(local(repo, branch="live"))
    daemon.wait_for(lambda s: s.get("flows", {}).get("state") == "Synced")

    repo.git("branch", "-D", "live")
    status = daemon.wait_for(lambda s: s["flows"]["state"] == "Error")["flows"]
    assert "branch 'live' does not exist" in status["last_error"]
    assert status["next_attempt_at"] and status["failures"] >= 1
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/nightly"]

    commit = repo.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    repo.git("branch", "live")
    daemon.wait_for(applied(commit))


def test_http_endpoints_health_metrics_and_unknown_paths(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project())
    daemon = start_daemon(local(repo))
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))

    health = daemon.request("GET", "/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok", "role": "active"})
    metrics = daemon.request("GET", "/metrics").body.decode()
    assert 'reconciler_reconciles_total{outcome="applied",repo="flows"} 1.0' in metrics
    assert 'reconciler_reconcile_duration_seconds_count{repo="flows"}' in metrics
    assert 'reconciler_errors_total{repo="flows"} 0.0' in metrics
    assert 'reconciler_builds_total{repo="flows"} 0.0' in metrics
    assert 'reconciler_last_success_timestamp_seconds{repo="flows"}' in metrics
    assert daemon.request("GET", "/nope").status == 404
    assert daemon.request("POST", "/status").status == 405
    # This repository has no webhook secret: its hook is off.
    assert daemon.request("POST", "/hooks/flows", b"{}").status == 404


def test_json_logs_carry_repository_commit_outcome_and_duration(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project())
    daemon = start_daemon(local(repo), args=("--log-format", "json"))
    commit = repo.git("rev-parse", "HEAD")
    daemon.wait_for(applied(commit))
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    (reconciled,) = [line for line in lines if line.get("outcome") == "applied"]
    assert reconciled["repo"] == "flows" and reconciled["commit"] == commit
    assert reconciled["duration_seconds"] >= 0
    assert reconciled["level"] == "info" and reconciled["time"]


def test_sigterm_stops_it_within_10_seconds_with_exit_0(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project())
    daemon = start_daemon(local(repo))
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))
    started = time.monotonic()
    assert daemon.terminate() == 0
    assert time.monotonic() - started < 10
    assert "daemon stopped" in daemon.log()

    # A restart picks up where it was: the applied commit is checked, not applied again.
    history = len(open_store(daemon.store_url, readonly=True).history(limit=100))
    again = start_daemon(local(repo))
    again.wait_for_log(r"outcome=in-sync")
    assert "outcome=applied" not in again.log()
    assert len(open_store(daemon.store_url, readonly=True).history(limit=100)) == history == 1


def big_project(count: int, tag: str) -> dict[str, str | bytes]:
    lines = ["deployments:"]
    for index in range(count):
        lines += [
            f"  - name: d{index:05d}",
            "    entrypoint: flows/etl.py:ingest",
            "    work_pool: {name: etl}",
            f"    tags: [{tag}]",
        ]
    return project({"prefect.yaml": "\n".join(lines) + "\n"})


def test_sigkill_during_an_apply_leaves_a_consistent_store_and_a_restart_finishes(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, tmp_path: Path
) -> None:
    repo = make_repo(big_project(1500, "v1"))
    daemon = start_daemon(local(repo))
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")), timeout=60)

    commit = repo.commit(big_project(1500, "v2"), "retag everything")
    daemon.wait_for(lambda s: s["flows"]["state"] == "Progressing", timeout=10)
    daemon.kill()

    database = Path(daemon.store_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    tags = {spec["tags"][0] for spec in deployments(daemon.store_url).values()}
    assert len(tags) == 1, "an apply is all or nothing"
    assert len(deployments(daemon.store_url)) == 1500

    again = start_daemon(local(repo))
    again.wait_for(applied(commit), timeout=60)
    assert {spec["tags"][0] for spec in deployments(again.store_url).values()} == {"v2"}


def test_two_daemons_on_one_store_apply_a_commit_once(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project())
    first = start_daemon(local(repo))
    second = start_daemon(local(repo))
    first.wait_for(applied(repo.git("rev-parse", "HEAD")))

    for number in range(3):
        files = {"prefect.yaml": TWO_DEPLOYMENTS.replace("hourly", f"hourly{number}")}
        commit = repo.commit(files)
        first.wait_for(applied(commit))
        second.wait_for(applied(commit))
    time.sleep(0.5)
    logs = first.log() + second.log()
    applies = re.findall(r"outcome=applied duration=\S+ detail=(\S+)", logs)
    assert applies.count("applied:") == 4, logs  # the first commit and three more, once each
    store = open_store(first.store_url, readonly=True)
    try:
        assert len(store.history(limit=100)) == 4
    finally:
        store.close()


def test_an_invalid_daemon_config_exits_1_with_file_line_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "daemon.yaml"
    config.write_text("repositories:\n  - name: flows\n    pth: /srv/flows\n")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "daemon", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"{config}:3:" in done.stderr and 'did you mean "path"' in done.stderr
    assert "Traceback" not in done.stderr


def test_the_daemon_crashes_runs_of_workers_that_stopped_heartbeating(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    from reconciler.model.runs import RunState
    from reconciler.worker.create_run import create_run

    repo = make_repo(project())
    daemon = start_daemon(local(repo))
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))
    store = open_store(daemon.store_url)
    try:
        run = create_run(store, "ingest/nightly")
        store.heartbeat("etl", "gone", 0.1)
        (claimed,) = store.claim_runs("etl", "gone", limit=1, scheduled_before=time.time())
        assert claimed.id == run.id
        deadline = time.monotonic() + 20
        while (found := store.get_run(run.id)) is not None and found.state is RunState.PENDING:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.2)
        assert found is not None and found.state is RunState.CRASHED
        assert found.state_message == "worker gone stopped heartbeating"
    finally:
        store.close()
