"""Prune against a real Prefect server deletes deployments 50 to a request
(`/deployments/bulk_delete`), and falls back to one request per deployment on a server that
lacks that endpoint. A proxy in front of the server counts the requests (and, for the
fallback, answers 404 to the bulk endpoint as an older server does)."""

from __future__ import annotations

import http.server
from collections.abc import Callable

import pytest

from tests.conftest import CliResult, GitRepo
from tests.infra.prefect_server import PrefectServer
from tests.prefect_target.proxy import ForwardingProxy, Verdict
from tests.prefect_target.test_prefect_target import Names, deployments, project, reconcile

pytestmark = pytest.mark.prefect

KEPT = [{"name": "keep"}]
PRUNED = [{"name": f"old-{i:02d}"} for i in range(60)]  # two bulk requests: 50 + 10


class _CountingProxy(ForwardingProxy):
    def __init__(self, upstream: str, *, without_bulk_delete: bool) -> None:
        self.bulk_bodies: set[bytes] = set()
        self.single_paths: set[str] = set()
        self.without_bulk_delete = without_bulk_delete
        super().__init__(upstream, answer_first=self._count)

    def _count(self, request: http.server.BaseHTTPRequestHandler, body: bytes | None) -> Verdict:
        path = request.path.split("?", 1)[0].rstrip("/")
        bulk = path.endswith("/deployments/bulk_delete")
        single = request.command == "DELETE" and "/deployments/" in path
        if bulk:  # a request the client sent again (a busy server's 503) has the same body
            self.bulk_bodies.add(body or b"")
        if single:
            self.single_paths.add(path)
        if bulk and self.without_bulk_delete:
            return 404, {"detail": "Not Found"}, {}
        return None


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.mark.parametrize("without_bulk_delete", [False, True], ids=["bulk", "older-server"])
def test_prune_deletes_every_removed_deployment_and_nothing_else(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    names: Names,
    without_bulk_delete: bool,
) -> None:
    repo = make_repo(project(names.pool, names.flow, KEPT + PRUNED))
    proxy = _CountingProxy(prefect_server.api_url, without_bulk_delete=without_bulk_delete)
    target = f"prefect+{proxy.url}"
    try:
        assert reconcile(run_cli, repo, target).code == 0
        assert len(deployments(prefect_server, names.flow_name)) == 61
        repo.commit(project(names.pool, names.flow, KEPT), "remove 60 deployments")
        proxy.bulk_bodies.clear()
        proxy.single_paths.clear()
        pruned = reconcile(run_cli, repo, target)
        again = reconcile(run_cli, repo, target)
    finally:
        proxy.close()
    assert pruned.code == 0, pruned.output
    assert "Apply complete! Resources: 0 added, 0 changed, 60 destroyed." in pruned.stdout
    assert sorted(deployments(prefect_server, names.flow_name)) == ["keep"]
    assert "No changes." in again.stdout
    assert len(proxy.bulk_bodies) == 2  # 50 + 10
    assert len(proxy.single_paths) == (60 if without_bulk_delete else 0)
