"""The per-file cache keyed by git blob id (reconciler/desired/build_cache.py) never serves a stale
result: real git repositories, a real SQLite store, the engine as the daemon calls it. Each
plan made with the cache is compared with the same plan made without it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.desired.build_cache import BuildCache
from reconciler.engine.stages import ReconcileOutcome, ReconcileRequest, reconcile
from reconciler.model.resources import Kind
from reconciler.plan.model import Action
from reconciler.plan.render_json import render_json
from reconciler.settings import Settings
from reconciler.store import open_store
from tests.conftest import GitRepo

POOLS = "work_pools:\n  - {name: etl, type: process}\n"


def flow(name: str, params: str = "days: int = 1") -> str:
    head = f"from prefect import flow\n\n\n@flow(name={name!r})\n"
    return head + f"def run({params}) -> None:\n    pass\n"


def prefect(*names: str, description: str = "v1", extra: str = "") -> str:
    return "deployments:\n" + "".join(
        f"  - name: {n}\n    entrypoint: flows/f.py:run\n    description: {description}\n"
        f"    work_pool: {{name: etl}}\n{extra}"
        for n in names
    )


class Daemonish:
    """Plans and applies one repository as the daemon's controller does: one cache for all."""

    def __init__(self, repo: GitRepo, store_url: str) -> None:
        self.repo = repo
        self.settings = Settings(store_url=store_url)
        self.cache = BuildCache()

    def plan(self, *, cache: bool = True, dry_run: bool = True) -> ReconcileOutcome:
        request = ReconcileRequest(
            repositories=(str(self.repo.path),),
            settings=self.settings,
            dry_run=dry_run,
            cache=self.cache if cache else None,
        )
        return reconcile(request, environ={})

    def checked_plan(self) -> ReconcileOutcome:
        """The plan with the cache, after checking that it is the plan without."""
        cached = self.plan()
        fresh = self.plan(cache=False)
        assert plan_json(cached) == plan_json(fresh)
        return cached

    def apply(self) -> None:
        done = self.plan(dry_run=False)
        assert not done.errors, done.errors


def plan_json(outcome: ReconcileOutcome) -> Any:
    return json.loads(render_json(outcome.plan, mask=outcome.masker))


def changed(outcome: ReconcileOutcome) -> list[tuple[str, str]]:
    return [(c.action.value, c.key) for c in outcome.plan.changes]


@pytest.fixture
def daemon(make_repo: Callable[..., GitRepo], store_url: str) -> Daemonish:
    repo = make_repo(
        {
            "work-pools.yaml": POOLS,
            "a/flows/f.py": flow("fa"),
            "a/prefect.yaml": prefect("one", "two"),
            "b/flows/f.py": flow("fb"),
            "b/prefect.yaml": prefect("three"),
            "c/flows/f.py": flow("fc"),
            "c/prefect.yaml": prefect("four"),
        }
    )
    made = Daemonish(repo, store_url)
    made.apply()
    assert changed(made.checked_plan()) == []
    return made


def test_a_changed_file_changes_its_deployments_and_the_others_come_from_the_cache(
    daemon: Daemonish,
) -> None:
    daemon.repo.commit({"a/prefect.yaml": prefect("one", "two", description="v2")})
    hits = daemon.cache.hits
    outcome = daemon.checked_plan()
    assert daemon.cache.hits - hits == 2  # b and c; a was read again
    assert changed(outcome) == [("update", "fa/one"), ("update", "fa/two")]
    diff = outcome.plan.changes[0].diffs[0]
    assert (diff.before, diff.after) == ("v1", "v2")
    daemon.apply()
    store = open_store(daemon.settings.store_url, readonly=True)
    try:
        stored = store.get(Kind.DEPLOYMENT, "fa/one")
        untouched = store.get(Kind.DEPLOYMENT, "fb/three")
    finally:
        store.close()
    assert stored is not None and stored.spec["description"] == "v2"
    assert stored.source_commit == daemon.repo.git("rev-parse", "HEAD")
    assert untouched is not None and untouched.source_commit != stored.source_commit


def test_a_deleted_file_has_its_deployments_pruned(daemon: Daemonish) -> None:
    daemon.repo.remove("c/prefect.yaml")
    daemon.repo.commit()
    outcome = daemon.checked_plan()
    assert changed(outcome) == [("delete", "fc/four")]
    assert outcome.plan.changes[0].action is Action.DELETE
    assert len(daemon.cache) == 2  # the deleted file's result is forgotten


def test_a_changed_flow_file_is_read_again(daemon: Daemonish) -> None:
    """The prefect.yaml is the same blob; the flow it names is not."""
    daemon.repo.commit({"b/flows/f.py": flow("fb", "days: int = 1, region: str = 'eu'")})
    outcome = daemon.checked_plan()
    assert changed(outcome) == [("update", "fb/three")]
    paths = [d.path for d in outcome.plan.changes[0].diffs]
    assert any("region" in str(path) for path in paths), paths


def test_a_flow_renamed_changes_the_deployment_key(daemon: Daemonish) -> None:
    daemon.repo.commit({"c/flows/f.py": flow("renamed")})
    outcome = daemon.checked_plan()
    assert changed(outcome) == [("delete", "fc/four"), ("create", "renamed/four")]


def test_a_store_variable_set_after_caching_is_used(daemon: Daemonish) -> None:
    daemon.repo.commit(
        {"b/prefect.yaml": prefect("three", description="'{{ prefect.variables.note }}'")}
    )
    first = daemon.checked_plan()
    assert any("not set" in d.message for d in first.plan.diagnostics)
    store = open_store(daemon.settings.store_url)
    try:
        with store.transaction() as tx:
            tx.set_variable("note", "from the store")
    finally:
        store.close()
    outcome = daemon.checked_plan()  # same commit, same blobs: the variable is in the key
    assert not any("not set" in d.message for d in outcome.plan.diagnostics)
    diff = outcome.plan.changes[0].diffs[0]
    assert diff.after == "from the store"


def test_an_invalid_file_is_reported_again_from_the_cache(daemon: Daemonish) -> None:
    daemon.repo.commit({"b/prefect.yaml": prefect("three", extra="    colour: blue\n")})
    first = daemon.checked_plan()
    second = daemon.checked_plan()  # b is served from the cache now
    assert [d.message for d in second.plan.diagnostics] == [
        d.message for d in first.plan.diagnostics
    ]
    assert any("colour" in d.message for d in second.plan.diagnostics)


def test_two_files_that_share_a_flow_both_see_it_change(
    make_repo: Callable[..., GitRepo], store_url: str
) -> None:
    """The second file's flow is read once for both (the build's own flow cache): its
    dependency on the flow file is still recorded for each."""
    repo = make_repo(
        {
            "work-pools.yaml": POOLS,
            "flows/f.py": flow("shared"),
            "one.prefect.yaml": prefect("one"),
            "two.prefect.yaml": prefect("two"),
        }
    )
    daemon = Daemonish(repo, store_url)

    def plan(**options: Any) -> ReconcileOutcome:
        request = ReconcileRequest(
            repositories=(str(repo.path),),
            settings=daemon.settings,
            prefect_glob="*.prefect.yaml",
            **options,
        )
        return reconcile(request, environ={})

    assert not plan(cache=daemon.cache).errors
    assert not plan(dry_run=False).errors
    repo.commit({"flows/f.py": flow("shared", "days: int = 1, region: str = 'eu'")})
    cached = plan(cache=daemon.cache, dry_run=True)
    assert plan_json(cached) == plan_json(plan(dry_run=True))
    assert changed(cached) == [("update", "shared/one"), ("update", "shared/two")]


def test_a_deployment_healed_from_a_cached_file_records_the_commit_being_applied(
    daemon: Daemonish,
) -> None:
    """b's result was cached at the first commit; after a commit that changes only a, a
    deployment of b deleted out of band is written again, from the commit being applied."""
    daemon.repo.commit({"a/prefect.yaml": prefect("one", "two", description="v2")})
    daemon.apply()
    store = open_store(daemon.settings.store_url)
    try:
        with store.transaction() as tx:
            tx.delete(Kind.DEPLOYMENT, "fb/three")
    finally:
        store.close()
    assert changed(daemon.checked_plan()) == [("create", "fb/three")]
    daemon.apply()
    store = open_store(daemon.settings.store_url, readonly=True)
    try:
        healed = store.get(Kind.DEPLOYMENT, "fb/three")
    finally:
        store.close()
    assert healed is not None
    assert healed.source_commit == daemon.repo.git("rev-parse", "HEAD")
