"""`reconcile daemon` on remote repositories served on 127.0.0.1: smart HTTP behind basic auth
(`git http-backend`) and `git daemon`. Webhooks are signed and checked; credentials never
leave the process; a failed fetch deletes nothing."""

from __future__ import annotations

import http.client
import resource
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.daemon.webhooks import github_signature
from reconciler.model.resources import Kind
from tests.conftest import store_dump
from tests.daemon.conftest import DaemonProcess, StartDaemon
from tests.e2e.helpers import TWO_DEPLOYMENTS, keys, project
from tests.infra.git_servers import GitDaemon, HttpGitServer, Remote, free_port

pytestmark = pytest.mark.e2e

SECRET = "hook-secret-1f2e3d"


def remote_config(remote: Remote, **extra: Any) -> dict[str, Any]:
    return {"repositories": [{"name": "flows", "url": remote.url, **extra}]}


def applied(commit: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda s: (
        s.get("flows", {}).get("applied_commit") == commit and (s["flows"]["state"] == "Synced")
    )


def hook(daemon: DaemonProcess, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return daemon.request("POST", "/hooks/flows", body, headers).status


@pytest.fixture
def http_daemon(
    git_http_server: HttpGitServer,
    make_remote: Callable[..., Remote],
    start_daemon: StartDaemon,
) -> tuple[Remote, DaemonProcess]:
    remote = make_remote(git_http_server, project())
    daemon = start_daemon(
        remote_config(
            remote,
            poll_interval="1h",  # only the webhook (and start-up) fetch
            webhook_secret={"env": "HOOK_SECRET"},
            username={"env": "GIT_USER"},
            password={"env": "GIT_PASSWORD"},
        ),
        env={
            "HOOK_SECRET": SECRET,
            "GIT_USER": git_http_server.username,
            "GIT_PASSWORD": git_http_server.password,
        },
    )
    daemon.wait_for(applied(remote.head()))
    return remote, daemon


def test_a_signed_webhook_fetches_and_applies_at_once(
    http_daemon: tuple[Remote, DaemonProcess], git_http_server: HttpGitServer
) -> None:
    remote, daemon = http_daemon
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/nightly"]
    commit = remote.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    body = b'{"ref": "refs/heads/main"}'

    started = time.monotonic()
    assert hook(daemon, body, github_signature(SECRET, body)) == 202
    assert time.monotonic() - started < 1.0, "the webhook answers before the work is done"
    daemon.wait_for(applied(commit), timeout=10)
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/hourly", "ingest/nightly"]

    # The owner recorded is the URL, never the credentials or the cache directory.
    dump = repr(store_dump(daemon.store_url))
    assert remote.url.removesuffix(".git") in dump
    assert git_http_server.password not in dump
    assert git_http_server.password not in daemon.log()


def test_a_gitlab_token_is_accepted_too(http_daemon: tuple[Remote, DaemonProcess]) -> None:
    remote, daemon = http_daemon
    commit = remote.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    status = daemon.request("POST", "/hooks/flows", b"{}", {"X-Gitlab-Token": SECRET}).status
    assert status == 202
    daemon.wait_for(applied(commit), timeout=10)


@pytest.mark.parametrize(
    "signature",
    [None, github_signature("wrong-secret", b"{}"), "sha256=" + "0" * 64],
)
def test_a_missing_or_wrong_signature_gets_401_and_nothing_happens(
    http_daemon: tuple[Remote, DaemonProcess], signature: str | None
) -> None:
    remote, daemon = http_daemon
    before = daemon.statuses()["flows"]
    remote.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    assert hook(daemon, b"{}", signature) == 401
    time.sleep(1.0)
    after = daemon.statuses()["flows"]
    assert after["fetched_commit"] == before["fetched_commit"]
    assert after["last_attempt_at"] == before["last_attempt_at"]
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/nightly"]


def test_bodies_over_5_mb_are_refused(http_daemon: tuple[Remote, DaemonProcess]) -> None:
    remote, daemon = http_daemon
    before = daemon.statuses()["flows"]
    remote.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    # A client announcing a large body is answered 413 before it sends it.
    host, port = daemon.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/hooks/flows")
    connection.putheader("Content-Length", str(5 * 1024 * 1024 + 1))
    connection.putheader("X-Hub-Signature-256", github_signature(SECRET, b""))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    time.sleep(0.5)
    assert daemon.statuses()["flows"]["last_attempt_at"] == before["last_attempt_at"]
    assert daemon.request("POST", "/hooks/unknown", b"{}").status == 404


def test_polling_over_git_protocol_applies_new_commits(
    git_daemon: GitDaemon, make_remote: Callable[..., Remote], start_daemon: StartDaemon
) -> None:
    remote = make_remote(git_daemon, project())
    daemon = start_daemon(remote_config(remote, poll_interval=1))
    daemon.wait_for(applied(remote.head()))
    commit = remote.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    daemon.wait_for(applied(commit), timeout=10)


def test_a_force_push_is_applied_and_reported(
    git_daemon: GitDaemon, make_remote: Callable[..., Remote], start_daemon: StartDaemon
) -> None:
    remote = make_remote(git_daemon, project())
    first = remote.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    daemon = start_daemon(remote_config(remote, poll_interval=1))
    daemon.wait_for(applied(first))

    rewritten = remote.force_push({"prefect.yaml": TWO_DEPLOYMENTS.replace("hourly", "daily")})
    daemon.wait_for(applied(rewritten), timeout=10)
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == ["ingest/daily", "ingest/nightly"]
    assert f"history was rewritten (force-push): {first[:12]}" in daemon.log()


def test_a_deleted_remote_branch_keeps_the_last_applied_state(
    git_daemon: GitDaemon, make_remote: Callable[..., Remote], start_daemon: StartDaemon
) -> None:
    remote = make_remote(git_daemon, project({"prefect.yaml": TWO_DEPLOYMENTS}))
    remote.commit({"README.md": "keep main\n"}, branch="live")
    config = {"repositories": [{"name": "flows", "url": remote.url, "branch": "live"}]}
    daemon = start_daemon({**config, "drift_interval": "1s"})
    daemon.wait_for(lambda s: s.get("flows", {}).get("state") == "Synced")
    before = keys(daemon.store_url, Kind.DEPLOYMENT)

    remote.delete_branch("live")
    status = daemon.wait_for(lambda s: s["flows"]["state"] == "Error", timeout=15)["flows"]
    assert "branch 'live' no longer exists" in status["last_error"]
    assert status["next_attempt_at"]
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == before == ["ingest/hourly", "ingest/nightly"]


def test_an_unreachable_remote_is_retried_with_backoff_and_deletes_nothing(
    start_daemon: StartDaemon,
) -> None:
    url = f"git://127.0.0.1:{free_port()}/gone.git"
    daemon = start_daemon({"repositories": [{"name": "flows", "url": url}]})
    status = daemon.wait_for(lambda s: s.get("flows", {}).get("state") == "Error")["flows"]
    assert "cannot reach" in status["last_error"]
    assert status["failures"] == 1 and status["next_attempt_at"]
    assert "retrying in" in status["message"]
    status = daemon.wait_for(lambda s: s["flows"]["failures"] >= 2, timeout=15)["flows"]
    assert status["state"] == "Error"
    assert keys(daemon.store_url, Kind.DEPLOYMENT) == []


IDLE_CONNECTIONS = 1000


@pytest.fixture
def many_descriptors() -> None:
    """Room for 1,000 client sockets here and as many in the daemon (it inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * IDLE_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the open-file limit is {hard}: {wanted} descriptors are needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def wait_until_all_closed(sockets: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Reads every socket until the server closes it; returns those still open at `timeout`."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(sock)
    still_open = [key.fileobj for key in selector.get_map().values()]
    selector.close()
    return [sock for sock in still_open if isinstance(sock, socket.socket)]


def test_a_thousand_idle_connections_delay_neither_healthz_nor_a_webhook(
    many_descriptors: None, http_daemon: tuple[Remote, DaemonProcess]
) -> None:
    remote, daemon = http_daemon
    host, port = daemon.url.removeprefix("http://").split(":")
    # Half never send a byte; half start a request and never finish its headers (slowloris).
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(IDLE_CONNECTIONS)]
    for sock in idle[1::2]:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: daemon\r\nX-Slow: ")
    try:
        health = http.client.HTTPConnection(host, int(port), timeout=5)
        health.request("GET", "/healthz")
        assert health.getresponse().status == 200
        health.close()

        commit = remote.commit({"prefect.yaml": TWO_DEPLOYMENTS})
        body = b'{"ref": "refs/heads/main"}'
        hook = http.client.HTTPConnection(host, int(port), timeout=5)
        hook.request(
            "POST", "/hooks/flows", body, {"X-Hub-Signature-256": github_signature(SECRET, body)}
        )
        assert hook.getresponse().status == 202
        hook.close()
        daemon.wait_for(applied(commit), timeout=10)

        # The daemon closes them all: silent ones after the idle timeout (5 s), slow
        # headers after the header timeout (10 s).
        assert wait_until_all_closed(idle, timeout=30) == []
    finally:
        for sock in idle:
            sock.close()


def test_a_streamed_body_is_refused_once_it_passes_5_mb(
    http_daemon: tuple[Remote, DaemonProcess],
) -> None:
    _, daemon = http_daemon
    before = daemon.statuses()["flows"]
    host, port = daemon.url.removeprefix("http://").split(":")
    # Chunked, so no Content-Length announces the size: the limit holds while reading, and the
    # 413 comes although the body never ends.
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        b"POST /hooks/flows HTTP/1.1\r\nHost: daemon\r\nTransfer-Encoding: chunked\r\n"
        + b"X-Hub-Signature-256: "
        + github_signature(SECRET, b"").encode()
        + b"\r\n\r\n"
    )
    chunk = b"x" * (1024 * 1024)
    for _ in range(6):
        sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert daemon.statuses()["flows"]["last_attempt_at"] == before["last_attempt_at"]
