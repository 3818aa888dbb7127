"""A reconciled project (a real git repository applied to a real SQLite store), a
repository status as the daemon writes it, a hand-made work pool, and the web app over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from reconciler.model.resources import Kind, Resource
from reconciler.pools.manual import create_pool, pool_spec
from reconciler.store import Store, open_store
from reconciler.web.app import create_web_app
from reconciler.web.auth import Tokens
from tests.conftest import GitRepo, store_dump
from tests.daemon.conftest import start_daemon  # noqa: F401  (a fixture for test_daemon_web)
from tests.e2e.helpers import apply_in_process

READ = "read-token-for-tests"
ADMIN = "admin-token-for-tests"

FLOWS = """\
def hello(name: str = "world", times: int = 1) -> str:
    for _ in range(times):
        print(f"hello {name}", flush=True)
    return name


def typed(count: int, ratio: float = 0.5) -> None:
    print(count, ratio)
"""

POOLS = """\
work_pools:
  - name: local
    type: process
"""

PREFECT = """\
deployments:
  - {name: hello, entrypoint: flows/flows.py:hello, work_pool: {name: local},
     schedules: [{cron: "0 * * * *"}]}
  - {name: typed, entrypoint: flows/flows.py:typed, work_pool: {name: local},
     parameters: {count: 1}}
"""

PROJECT_FILES = {
    "flows/flows.py": FLOWS,
    "work-pools.yaml": POOLS,
    "prefect.yaml": PREFECT,
}


@dataclass
class WebProject:
    repo: GitRepo
    store_url: str
    synced: list[str]

    def store(self) -> Store:
        return open_store(self.store_url)

    def dump(self) -> dict[str, list[tuple[object, ...]]]:
        """The store's rows, without the audit log (which records refusals too)."""
        return {k: v for k, v in store_dump(self.store_url).items() if k != "audit_log"}

    def audit(self) -> list[Any]:
        store = self.store()
        try:
            return store.audit_log(limit=100)
        finally:
            store.close()


def prepare_store(store_url: str, repo: GitRepo) -> None:
    apply_in_process(store_url, repo)
    store = open_store(store_url)
    try:
        store.put_repo_status(
            "project",
            {
                "name": "project",
                "source": str(repo.path),
                "branch": "main",
                "state": "Synced",
                "applied_commit": repo.git("rev-parse", "HEAD"),
                "message": "applied",
                "drift": [],
            },
        )
        edit = create_pool(store.observe(), pool_spec("manual", "process"))
        with store.transaction() as tx:
            for resource in edit.puts:
                tx.put(resource)
    finally:
        store.close()


@pytest.fixture
def web_project(make_repo: Callable[..., GitRepo], store_url: str) -> WebProject:
    repo = make_repo(PROJECT_FILES)
    prepare_store(store_url, repo)
    return WebProject(repo, store_url, [])


def make_client(
    project: WebProject, tokens: Tokens, *, daemon: bool = True
) -> Iterator[TestClient]:
    def sync_now(name: str) -> str | None:
        project.synced.append(name)
        return None

    app = create_web_app(
        lambda: open_store(project.store_url),
        tokens=tokens,
        sync_now=sync_now if daemon else None,
    )
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
def client(web_project: WebProject) -> Iterator[TestClient]:
    """The app with both tokens configured."""
    yield from make_client(web_project, Tokens(read=READ, admin=ADMIN))


@pytest.fixture
def open_client(web_project: WebProject) -> Iterator[TestClient]:
    """The app with no token configured: reads open, no actions."""
    yield from make_client(web_project, Tokens())


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def resource(kind: Kind, key: str, store_url: str) -> Resource | None:
    store = open_store(store_url, readonly=True)
    try:
        return store.get(kind, key)
    finally:
        store.close()
