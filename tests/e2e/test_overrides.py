"""`reconcile deployment pause|resume FLOW/NAME`: an emergency override on a git-owned
deployment, kept by every plan and apply (an override, not drift) and shown by `status`,
until removed; each refusal says what to do and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reconciler.model.resources import Kind, Resource
from reconciler.scheduling.policy import tick_with_stored_policy
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo, store_dump
from tests.e2e.helpers import apply_in_process, assert_refused, project

pytestmark = pytest.mark.e2e
RunCli = Callable[..., CliResult]

SCHEDULED = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
    schedules: [{cron: "*/5 * * * *"}]
"""


def _paused_and_runs(store_url: str, key: str) -> tuple[bool, int]:
    store = open_store(store_url)
    try:
        resource = store.get(Kind.DEPLOYMENT, key)
        assert resource is not None
        runs = [r for r in store.list_runs(deployment=key) if r.state.value == "SCHEDULED"]
        return resource.deployment_spec().paused, len(runs)
    finally:
        store.close()


def _tick(store_url: str) -> None:
    store = open_store(store_url)
    try:
        tick_with_stored_policy(store)
    finally:
        store.close()


def test_pause_is_an_override_kept_until_resume(
    make_repo: Callable[..., GitRepo], store_url: str, run_cli: RunCli
) -> None:
    repo = make_repo(project({"prefect.yaml": SCHEDULED}))
    apply_in_process(store_url, repo)
    _tick(store_url)
    assert _paused_and_runs(store_url, "ingest/nightly")[1] >= 3

    paused = run_cli("deployment", "pause", "ingest/nightly", "--store", store_url)
    assert paused.code == 0, paused.output
    assert "paused by an override; its scheduled runs were removed" in paused.stdout
    _tick(store_url)
    assert _paused_and_runs(store_url, "ingest/nightly") == (True, 0)

    plan = run_cli("--dry-run", "--detailed-exitcode", "--store", store_url, cwd=repo.path)
    assert plan.code == 0, plan.output
    assert "No changes." in plan.stdout
    assert "deployment ingest/nightly is paused by an operator override" in plan.stderr
    assert "an override, not drift" in plan.stderr
    assert "reconcile deployment resume ingest/nightly" in plan.stderr

    # A change in git is applied, and the deployment stays paused.
    repo.commit({"prefect.yaml": SCHEDULED + "    description: nightly load\n"}, "describe")
    applied = run_cli("--store", store_url, cwd=repo.path)
    assert applied.code == 0 and "1 changed" in applied.stdout, applied.output
    assert "description" in applied.stdout and "paused" not in applied.stdout  # not drift
    assert _paused_and_runs(store_url, "ingest/nightly")[0] is True

    status = run_cli("status", "--store", store_url)
    assert "override: deployment ingest/nightly paused since" in status.stdout, status.output
    assert "override.pause ingest/nightly" in status.stdout

    again = run_cli("deployment", "pause", "ingest/nightly", "--store", store_url)
    assert again.code == 0 and "already paused by an override" in again.stdout

    resumed = run_cli("deployment", "resume", "ingest/nightly", "--store", store_url)
    assert resumed.code == 0 and "the override is removed" in resumed.stdout, resumed.output
    assert _paused_and_runs(store_url, "ingest/nightly")[0] is False
    after = run_cli("--dry-run", "--detailed-exitcode", "--store", store_url, cwd=repo.path)
    assert after.code == 0 and "override" not in after.output, after.output
    assert "override:" not in run_cli("status", "--store", store_url).stdout


def test_override_refusals_change_nothing(
    make_repo: Callable[..., GitRepo], store_url: str, run_cli: RunCli
) -> None:
    repo = make_repo(project({"prefect.yaml": SCHEDULED}))
    apply_in_process(store_url, repo)
    store = open_store(store_url)
    try:
        nightly = store.get(Kind.DEPLOYMENT, "ingest/nightly")
        assert nightly is not None
        with store.transaction() as tx:
            tx.put(Resource.of(Kind.DEPLOYMENT, "ingest/by-hand", nightly.spec, None))
    finally:
        store.close()
    before = store_dump(store_url)

    assert_refused(
        run_cli("deployment", "pause", "ingest/nigthly", "--store", store_url),
        "no deployment 'ingest/nigthly'",
        'did you mean "ingest/nightly"?',
    )
    assert_refused(
        run_cli("deployment", "pause", "ingest/by-hand", "--store", store_url),
        "deployment ingest/by-hand was made by hand: it needs no override",
    )
    assert_refused(
        run_cli("deployment", "resume", "ingest/nightly", "--store", store_url),
        "deployment ingest/nightly has no override",
    )
    missing = f"sqlite:///{repo.path.parent / 'nowhere.db'}"
    assert_refused(
        run_cli("deployment", "pause", "ingest/nightly", "--store", missing),
        "there is no store at",
    )
    assert store_dump(store_url) == before
    assert not (repo.path.parent / "nowhere.db").exists()
