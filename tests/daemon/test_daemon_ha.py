"""Two daemons on one store: one is active, the other stands by and takes over within 15 s
when the active one dies (SIGKILL) or stops answering (SIGSTOP past its lease); a deposed
daemon that comes back stands by and never writes."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.model.resources import Kind
from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, StartDaemon
from tests.e2e.helpers import TWO_DEPLOYMENTS, keys, project

pytestmark = pytest.mark.e2e


def config(repo: GitRepo) -> dict[str, Any]:
    return {"repositories": [{"name": "flows", "path": str(repo.path)}]}


def role(daemon: DaemonProcess) -> str:
    return str(daemon.request("GET", "/healthz").json()["role"])


def wait_role(daemon: DaemonProcess, wanted: str, timeout: float) -> float:
    started = time.monotonic()
    while role(daemon) != wanted:
        assert time.monotonic() - started < timeout, daemon.log()
        time.sleep(0.1)
    return time.monotonic() - started


def applied(commit: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda s: s.get("flows", {}).get("applied_commit") == commit


def test_a_standby_takes_over_within_15_s_of_a_sigkill(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project())
    active = start_daemon(config(repo))
    active.wait_for(applied(repo.git("rev-parse", "HEAD")))
    standby = start_daemon(config(repo))
    standby.wait_for_log("standing by")
    assert (role(active), role(standby)) == ("active", "standby")

    active.kill()
    assert wait_role(standby, "active", timeout=15) < 15
    commit = repo.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    standby.wait_for(applied(commit))
    assert keys(standby.store_url, Kind.DEPLOYMENT) == ["ingest/hourly", "ingest/nightly"]


def test_a_daemon_that_stops_answering_is_replaced_and_cannot_write_when_it_returns(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project())
    first = start_daemon(config(repo))
    first.wait_for(applied(repo.git("rev-parse", "HEAD")))
    second = start_daemon(config(repo))
    second.wait_for_log("standing by")

    first.process.send_signal(signal.SIGSTOP)  # alive but silent: its lease lapses
    try:
        took = wait_role(second, "active", timeout=15)
    finally:
        first.process.send_signal(signal.SIGCONT)
    assert took < 15
    first.wait_for_log("lost the active role", timeout=10)
    assert role(first) == "standby"

    lines_before = len(first.log().splitlines())
    commit = repo.commit({"prefect.yaml": TWO_DEPLOYMENTS})
    second.wait_for(applied(commit))
    time.sleep(1.0)
    after = "\n".join(first.log().splitlines()[lines_before:])
    assert not re.search(r"outcome=(applied|healed)", after), after
    assert re.search(rf"commit={commit[:12]} outcome=applied", second.log())
