"""The web API on a real `reconcile daemon` and on `reconcile server`, as subprocesses over
real HTTP: sync now, suspend/resume of the automatic sync, and the server's refusals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import GIT_ENV, GitRepo, store_dump
from tests.daemon.conftest import DaemonProcess, StartDaemon
from tests.e2e.helpers import TWO_DEPLOYMENTS, project
from tests.web.conftest import ADMIN, PROJECT_FILES, READ, prepare_store

pytestmark = pytest.mark.e2e
TOKENS = {"RECONCILER_API_READ_TOKEN": READ, "RECONCILER_API_ADMIN_TOKEN": ADMIN}


def _api(daemon: DaemonProcess, method: str, path: str, token: str = ADMIN) -> tuple[int, dict]:  # type: ignore[type-arg]
    answer = daemon.request(method, path, headers={"Authorization": f"Bearer {token}"})
    return answer.status, answer.json()


def test_daemon_serves_the_api_sync_now_and_suspend(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project())
    daemon = start_daemon({"repositories": [{"name": "flows", "path": str(repo.path)}]}, env=TOKENS)
    first = repo.git("rev-parse", "HEAD")
    daemon.wait_for(lambda s: s.get("flows", {}).get("applied_commit") == first)
    status, body = _api(daemon, "GET", "/api/v1/repositories", READ)
    assert status == 200 and body["repositories"][0]["state"] == "Synced"
    # The daemon's own endpoints are unchanged beside the API.
    assert daemon.request("GET", "/nothing").status == 404
    assert daemon.request("POST", "/status").status == 405

    status, body = _api(daemon, "POST", "/api/v1/repositories/flows/suspend")
    assert status == 200 and body["changed"] is True
    commit = repo.commit({"prefect.yaml": TWO_DEPLOYMENTS}, "add hourly")
    time.sleep(2.0)  # the watcher sees the commit within 50 ms; suspended, nothing happens
    assert daemon.statuses()["flows"]["applied_commit"] == first
    status, body = _api(daemon, "POST", "/api/v1/repositories/flows/sync")
    assert status == 202, body
    daemon.wait_for(lambda s: s["flows"]["applied_commit"] == commit, timeout=20)

    again = repo.commit({"prefect.yaml": project()["prefect.yaml"]}, "back to one")
    time.sleep(1.0)
    assert daemon.statuses()["flows"]["applied_commit"] == commit, "still suspended"
    _api(daemon, "POST", "/api/v1/repositories/flows/resume")
    # Resuming catches up at once with the commit the suspension held back.
    daemon.wait_for(lambda s: s["flows"]["applied_commit"] == again, timeout=20)
    status, body = _api(daemon, "GET", "/api/v1/audit-log", READ)
    assert [e["action"] for e in body["entries"]] == [
        "repository.resume",
        "repository.sync",
        "repository.suspend",
    ]
    status, body = _api(daemon, "POST", "/api/v1/repositories/flows/sync", READ)
    assert status == 403 and "read-only" in body["error"]


def _server(
    store_url: str, listen: str, env: dict[str, str], tmp_path: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "server", "--store", store_url, "--listen", listen],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")},
            **GIT_ENV,
            **env,
        },
        cwd=tmp_path,
    )


def test_reconcile_server_serves_a_store(
    make_repo: Callable[..., GitRepo], store_url: str, tmp_path: Path
) -> None:
    import urllib.request

    prepare_store(store_url, make_repo(PROJECT_FILES))
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN + "\n")
    process = _server(
        store_url,
        "127.0.0.1:0",
        {"RECONCILER_API_ADMIN_TOKEN_FILE": str(token_file)},
        tmp_path,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"serving the API and dashboard on (http://\S+) ", line)
        assert url, line
        call = urllib.request.Request(
            url.group(1) + "/api/v1/deployments/hello/hello/runs",
            data=json.dumps({"parameters": {"name": "server"}}).encode(),
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(call, timeout=10) as answer:
            assert answer.status == 201
            assert json.loads(answer.read())["parameters"]["name"] == "server"
    finally:
        process.terminate()
        process.communicate(timeout=15)
        assert process.returncode == 0


def test_reconcile_server_refuses_open_reads_beyond_loopback(
    make_repo: Callable[..., GitRepo], store_url: str, tmp_path: Path
) -> None:
    prepare_store(store_url, make_repo(PROJECT_FILES))
    before = store_dump(store_url)
    process = _server(store_url, "0.0.0.0:0", {}, tmp_path)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1, output
    assert "refusing to listen on 0.0.0.0 with no API token" in output
    assert "RECONCILER_API_READ_TOKEN" in output and "Traceback" not in output
    assert store_dump(store_url) == before
    empty = tmp_path / "empty"
    empty.write_text("")
    process = _server(
        store_url, "127.0.0.1:0", {"RECONCILER_API_READ_TOKEN_FILE": str(empty)}, tmp_path
    )
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1 and "is empty" in output and "Traceback" not in output
    process = _server(store_url, "127.0.0.1:http", {}, tmp_path)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1 and "--listen must be HOST:PORT" in output
    missing = tmp_path / "nowhere.db"
    process = _server(f"sqlite:///{missing}", "127.0.0.1:0", {}, tmp_path)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1 and "there is no store at" in output, output
    assert not missing.exists(), "no store is made by looking at one"
