"""Two writers on one store: both succeed, neither loses the other's objects, and a plan made
before another writer committed is never applied as it stands."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.apply.transaction import apply_plan
from reconciler.core.errors import StaleStateError
from reconciler.desired.build import BuildResult, build_desired
from reconciler.engine.stages import ReconcileRequest, reconcile
from reconciler.model.resources import Kind
from reconciler.settings import Settings
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import FLOW, PREFECT, apply_in_process, keys, project, run_many

pytestmark = pytest.mark.e2e

Dump = Callable[[str], dict[str, list[tuple[object, ...]]]]

OTHER_TEAM = {
    "flows/etl.py": FLOW,
    "work-pools.yaml": "work_pools:\n  - name: reports\n    type: process\n",
    "prefect.yaml": PREFECT.replace("nightly", "reports").replace("{name: etl}", "{name: reports}"),
}


def test_two_processes_on_one_store_both_apply(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    first = make_repo(project())
    second = make_repo(OTHER_TEAM, name="other-team")

    results = run_many(
        run_cli,
        ["--store", store_url, str(first.path)],
        ["--store", store_url, str(second.path)],
    )
    for result in results:
        assert result.code == 0, result.output
        assert "Apply complete!" in result.stdout

    assert keys(store_url, Kind.DEPLOYMENT) == ["ingest/nightly", "ingest/reports"]
    assert keys(store_url, Kind.WORK_POOL) == ["etl", "gpu", "reports"]
    history = run_cli("history", "-o", "json", "--store", store_url)
    entries = json.loads(history.stdout)
    assert len(entries) == 2
    assert {e["sources"][0]["repo"] for e in entries} == {str(first.path), str(second.path)}


def bump_revision(store_url: str) -> None:
    """Another writer commits (here: sets a variable) between someone's plan and apply."""
    other = open_store(store_url)
    try:
        with other.transaction() as tx:
            tx.set_variable("written_meanwhile", True)
    finally:
        other.close()


def test_plan_from_an_older_revision_is_refused_then_planned_again(
    make_repo: Callable[..., GitRepo], store_url: str, dump_store: Dump
) -> None:
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    repo.commit({"prefect.yaml": PREFECT + "    parameters: {days: 2}\n"})
    request = ReconcileRequest(
        repositories=(str(repo.path),), settings=Settings(store_url=store_url)
    )

    planned = reconcile(dataclasses.replace(request, dry_run=True), environ={})
    assert planned.plan.summary.change == 1
    bump_revision(store_url)
    before = dump_store(store_url)

    store = open_store(store_url)
    try:
        with pytest.raises(StaleStateError, match="the store changed while planning"):
            apply_plan(store, planned.plan, planned.masker)
    finally:
        store.close()
    assert dump_store(store_url) == before

    outcome = reconcile(request, environ={})
    assert outcome.applied is not None
    assert outcome.plan.observed_revision == planned.plan.observed_revision + 1
    store = open_store(store_url, readonly=True)
    try:
        deployment = store.get(Kind.DEPLOYMENT, "ingest/nightly")
        assert store.variables() == {"written_meanwhile": True}
    finally:
        store.close()
    assert deployment is not None and deployment.spec["parameters"] == {"days": 2}


def test_engine_plans_again_when_another_writer_commits_first(
    make_repo: Callable[..., GitRepo], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer sneaks in after the engine's first plan: the engine's apply is refused as stale,
    it plans again from what the other writer committed, and applies that."""
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    repo.commit({"prefect.yaml": PREFECT + "    parameters: {days: 3}\n"})
    builds: list[int] = []

    def build_then_another_writer_commits(*args: Any, **kwargs: Any) -> BuildResult:
        result = build_desired(*args, **kwargs)
        builds.append(1)
        if len(builds) == 1:
            bump_revision(store_url)
        return result

    monkeypatch.setattr("reconciler.engine.stages.build_desired", build_then_another_writer_commits)
    outcome = reconcile(
        ReconcileRequest(repositories=(str(repo.path),), settings=Settings(store_url=store_url)),
        environ={},
    )

    assert outcome.attempts == 2 and len(builds) == 2
    assert outcome.applied is not None
    store = open_store(store_url, readonly=True)
    try:
        deployment = store.get(Kind.DEPLOYMENT, "ingest/nightly")
        assert store.variables() == {"written_meanwhile": True}
    finally:
        store.close()
    assert deployment is not None and deployment.spec["parameters"] == {"days": 3}
