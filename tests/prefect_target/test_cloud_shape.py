"""Prefect Cloud's shape, on loopback: a workspace URL
(`prefect+https://…/api/accounts/A/workspaces/W`) and Bearer API keys, from $PREFECT_API_KEY or
the file $PREFECT_API_KEY_FILE names. Prefect Cloud itself is out of reach here (the tests'
network is loopback only), so a proxy (tests/prefect_target/proxy.py) serves the real local
`prefect server` under a workspace path and checks keys as Cloud does: an unknown key is 401,
a read-only key's writes are 403. What is tested is ours: the path kept under the workspace,
the key sent and never shown, and both refusals said clearly with nothing written."""

from __future__ import annotations

import http.server
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import CliResult, GitRepo
from tests.infra.prefect_server import PrefectServer
from tests.prefect_target.proxy import ForwardingProxy, Verdict
from tests.prefect_target.test_prefect_target import (
    Names,
    deployments,
    project,
    reconcile,
    snapshot,
)

pytestmark = pytest.mark.prefect

WORKSPACE = "/api/accounts/6f1c0a52/workspaces/93be4d11"
WRITER_KEY = "pnu_writer0123456789abcdefghijklmnopqrstu"
READER_KEY = "pnu_reader0123456789abcdefghijklmnopqrstu"
READS = ("/filter", "/count", "/paginate")


def _as_cloud(handler: http.server.BaseHTTPRequestHandler, _body: bytes | None) -> Verdict:
    key = handler.headers.get("Authorization", "").removeprefix("Bearer ")
    if key not in (WRITER_KEY, READER_KEY):
        return 401, {"detail": "Invalid authentication credentials"}, {}
    path = handler.path.split("?", 1)[0].rstrip("/")
    writes = handler.command != "GET" and not path.endswith(READS)
    if key == READER_KEY and writes:
        return 403, {"detail": "Forbidden: the key's role may only read"}, {}
    return None


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def workspace(prefect_server: PrefectServer) -> Iterator[str]:
    proxy = ForwardingProxy(prefect_server.api_url, prefix=WORKSPACE, answer_first=_as_cloud)
    try:
        yield f"prefect+{proxy.url}"
    finally:
        proxy.close()


def test_a_workspace_url_with_an_api_key_plans_and_applies(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    workspace: str,
    names: Names,
) -> None:
    repo = make_repo(project(names.pool, names.flow, [{"name": "nightly"}, {"name": "hourly"}]))
    key_file = repo.path.parent / "prefect-key"
    key_file.write_text(WRITER_KEY + "\n")
    by_file = {"PREFECT_API_KEY_FILE": str(key_file)}
    planned = run_cli("plan", str(repo.path), "--store", workspace, "--no-color", env=by_file)
    assert planned.code == 0, planned.output
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in planned.stdout
    assert deployments(prefect_server, names.flow_name) == {}  # a plan writes nothing
    applied = reconcile(run_cli, repo, workspace, "-y", env={"PREFECT_API_KEY": WRITER_KEY})
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 5 added" in applied.stdout
    assert sorted(deployments(prefect_server, names.flow_name)) == ["hourly", "nightly"]
    again = reconcile(run_cli, repo, workspace, env=by_file)
    assert "No changes." in again.stdout, again.output
    assert WRITER_KEY not in applied.output + again.output + planned.output


def test_an_unknown_key_and_a_read_only_key_are_clear_errors_and_write_nothing(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    workspace: str,
    names: Names,
) -> None:
    repo = make_repo(project(names.pool, names.flow, [{"name": "nightly"}]))
    before = snapshot(prefect_server)
    unknown = reconcile(run_cli, repo, workspace, env={"PREFECT_API_KEY": "pnu_unknown-key"})
    assert unknown.code == 1
    assert "refused the API key (401 Unauthorized)" in unknown.stderr
    assert "PREFECT_API_KEY" in unknown.stderr  # what to do
    assert "pnu_unknown-key" not in unknown.output
    assert "Traceback" not in unknown.output
    reader = reconcile(run_cli, repo, workspace, env={"PREFECT_API_KEY": READER_KEY})
    assert reader.code == 1
    assert "403 Forbidden" in reader.stderr, reader.output
    assert "use a key whose role may write" in reader.stderr
    assert READER_KEY not in reader.output
    assert "Traceback" not in reader.output
    # A read-only key can still plan (a pull request's dry-run needs no more).
    planned = reconcile(run_cli, repo, workspace, "--dry-run", env={"PREFECT_API_KEY": READER_KEY})
    assert planned.code == 0, planned.output
    assert snapshot(prefect_server) == before
