"""Notifications through Apprise to a local HTTP receiver (json:// URLs on 127.0.0.1): a
repository entering Stalled or Error, drift, failed and crashed runs; the URL (a secret)
never in the log; config errors with their place."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.errors import ConfigError
from reconciler.daemon.config import load_settings
from reconciler.model.runs import RunState
from reconciler.store import open_store
from reconciler.worker.create_run import create_run
from tests.conftest import GitRepo
from tests.daemon.conftest import StartDaemon
from tests.daemon.test_daemon_local import applied, delete_out_of_band, local
from tests.e2e.helpers import TWO_DEPLOYMENTS, project

pytestmark = pytest.mark.e2e
SECRET_PATH = "T000-s3cr3t-webhook-token"


@dataclass
class Receiver:
    url: str = ""
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for where, body in self.received if where == path]

    def wait(self, path: str, text: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in self.at(path):
                if text in body["title"] + body["message"]:
                    return body
            time.sleep(0.1)
        raise AssertionError(f"no notification with {text!r} at {path}: {self.received}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length))
            with found.lock:
                found.received.append((self.path.lstrip("/"), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    found.url = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_stalled_drift_and_failed_runs_are_sent(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, receiver: Receiver
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}))
    config = {
        **local(repo, self_heal=False),
        "drift_interval": "1s",
        "scheduler": {"interval": "1s"},
        "notifications": [
            {"url": {"env": "NOTIFY_URL"}},
            {"url": f"json://{receiver.url}/runs", "events": ["run_failed", "run_crashed"]},
        ],
    }
    daemon = start_daemon(config, env={"NOTIFY_URL": f"json://{receiver.url}/{SECRET_PATH}"})
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))

    delete_out_of_band(daemon.store_url, "ingest/hourly")
    drift = receiver.wait(SECRET_PATH, "drift in flows")
    assert "+deployment ingest/hourly" in drift["message"]
    assert "not reverted (self_heal is off)" in drift["message"]
    time.sleep(2.5)  # more drift checks, the same drift: not sent again
    assert len([b for b in receiver.at(SECRET_PATH) if "drift" in b["title"]]) == 1

    repo.commit({"prefect.yaml": "deployments:\n  - name: x\n"}, "broken")
    stalled = receiver.wait(SECRET_PATH, "flows is Stalled")
    assert "deployment has no entrypoint" in stalled["message"]

    store = open_store(daemon.store_url)
    try:
        run = create_run(store, "ingest/nightly")
        store.set_run_state(run.id, RunState.FAILED, "exit code 3")
    finally:
        store.close()
    failed = receiver.wait("runs", "FAILED")
    assert run.id in failed["message"] and "exit code 3" in failed["message"]
    assert receiver.wait(SECRET_PATH, "FAILED")
    # The run-only target had nothing else.
    assert all("flow run" in body["title"] for body in receiver.at("runs"))
    assert SECRET_PATH not in daemon.log()


def test_error_and_crashed_runs_are_sent_once(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, receiver: Receiver
) -> None:
    repo = make_repo(project())
    config = {
        **local(repo),
        "scheduler": {"interval": "1s"},
        "notifications": [{"url": f"json://{receiver.url}/all"}],
    }
    daemon = start_daemon(config)
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))
    repo.git("branch", "-m", "main", "renamed")  # the watched branch is gone: Error, retried
    error = receiver.wait("all", "flows is Error")
    assert "branch 'main' does not exist" in error["message"]
    daemon.wait_for(lambda s: s["flows"]["failures"] >= 2, timeout=30)
    assert len([b for b in receiver.at("all") if "is Error" in b["title"]]) == 1

    store = open_store(daemon.store_url)
    try:
        run = create_run(store, "ingest/nightly")
        store.set_run_state(run.id, RunState.CRASHED, "the worker stopped heartbeating")
    finally:
        store.close()
    crashed = receiver.wait("all", "CRASHED")
    assert run.id in crashed["message"] and "stopped heartbeating" in crashed["message"]


def test_a_receiver_that_fails_is_logged_without_its_url(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, receiver: Receiver
) -> None:
    repo = make_repo(project())
    # Nothing listens on port 9 (discard) of 127.0.0.1.
    url = f"json://user:{SECRET_PATH}@127.0.0.1:9/{SECRET_PATH}"
    daemon = start_daemon(
        {**local(repo), "notifications": [{"url": {"env": "NOTIFY_URL"}}]},
        env={"NOTIFY_URL": url},
    )
    daemon.wait_for(applied(repo.git("rev-parse", "HEAD")))
    repo.commit({"prefect.yaml": "deployments:\n  - name: x\n"}, "broken")
    daemon.wait_for(lambda s: s["flows"]["state"] == "Stalled")
    daemon.wait_for_log(r"notification 1 \(json, .*\) could not be sent: stalled")
    assert SECRET_PATH not in daemon.log()
    assert daemon.statuses()["flows"]["state"] == "Stalled"


def _config(tmp_path: Path, notifications: object) -> str:
    path = tmp_path / "daemon.yaml"
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {"repositories": [{"name": "r", "path": str(repo)}], "notifications": notifications}
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("notifications", "environ", "expected"),
    [
        (
            [{"url": "nosuch://token-value-123"}],
            {},
            "daemon.yaml:2:8: error: the url of notification 1 is not a URL Apprise can send "
            "to (scheme 'nosuch')",
        ),
        (
            [{"url": {"env": "MISSING_URL"}}],
            {},
            "environment variable MISSING_URL (the url of notification 1) is not set",
        ),
        ([{"url": "json://h/x", "events": ["sometimes"]}], {}, "sometimes"),
        ([{"uri": "json://h/x"}], {}, "uri"),
    ],
)
def test_notification_config_errors_have_their_place(
    tmp_path: Path, notifications: object, environ: dict[str, str], expected: str
) -> None:
    path = _config(tmp_path, notifications)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ)
    text = "\n".join(d.render() for d in caught.value.diagnostics)
    assert expected in text, text
    assert "token-value-123" not in text


def test_notifications_are_read_from_the_config(tmp_path: Path) -> None:
    secret_file = tmp_path / "slack-url"
    secret_file.write_text("json://hooks.internal/abc\n")
    settings = load_settings(
        _config(
            tmp_path,
            [{"url": {"file": str(secret_file)}, "events": ["drift"]}, {"url": "form://h/x"}],
        ),
        {},
    )
    first, second = settings.notifications
    assert first.url.value == "json://hooks.internal/abc" and first.events == {"drift"}
    assert "hooks.internal" not in repr(first)
    assert second.events == {"error", "stalled", "drift", "run_failed", "run_crashed", "automation"}
