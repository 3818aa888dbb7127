"""`reconcile daemon` while its store goes away: a PostgreSQL server stopped (every connection
cut, then refused) and started again on the same port. Found by the chaos soak (bench/soak):
the repository must be reconciled again once the store is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.model.resources import Kind
from tests.conftest import GitRepo
from tests.daemon.conftest import StartDaemon
from tests.e2e.helpers import TWO_DEPLOYMENTS, keys, project
from tests.infra.postgres_env import PostgresServer

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 4.0


def test_a_commit_made_while_the_store_is_down_is_applied_once_it_is_back(
    make_repo: Callable[..., GitRepo],
    start_daemon: StartDaemon,
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    repo = make_repo(project())
    daemon = start_daemon(
        {"store": postgres_url, "repositories": [{"name": "flows", "path": str(repo.path)}]}
    )
    first = repo.git("rev-parse", "HEAD")
    daemon.wait_for(lambda s: s.get("flows", {}).get("applied_commit") == first, timeout=30)

    # The commit lands while the server is down: the daemon's attempt fails, and so does
    # recording that failure in the store.
    landed = threading.Timer(1.0, repo.commit, ({"prefect.yaml": TWO_DEPLOYMENTS}, "add hourly"))
    landed.start()
    postgres_server.stop_for(OUTAGE_SECONDS)
    landed.join()
    assert "repo=flows" in daemon.log() and "Connection refused" in daemon.log()

    deadline = time.monotonic() + 60
    while keys(postgres_url, Kind.DEPLOYMENT) != ["ingest/hourly", "ingest/nightly"]:
        assert time.monotonic() < deadline, f"the commit was never applied:\n{daemon.log()}"
        time.sleep(0.2)
    latest = repo.git("rev-parse", "HEAD")
    daemon.wait_for(lambda s: s["flows"]["applied_commit"] == latest, timeout=30)
