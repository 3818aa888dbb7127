"""Pruning and ownership, end to end: what leaves the files leaves the store, but only what
this run owns, never everything at once by accident, and never an object someone else owns or
still uses."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from reconciler.model.resources import Kind, Resource
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import (
    FLOW,
    PREFECT,
    TWO_DEPLOYMENTS,
    Dump,
    apply_in_process,
    assert_refused,
    keys,
    project,
    run_many,
)

pytestmark = pytest.mark.e2e


def test_deleted_deployment_is_pruned_unless_no_prune(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}))
    apply_in_process(store_url, repo)
    repo.commit({"prefect.yaml": PREFECT})

    kept = run_cli("--no-prune", "--store", store_url, str(repo.path))
    assert kept.code == 0, kept.output
    assert "No changes." in kept.stdout
    assert keys(store_url, Kind.DEPLOYMENT) == ["ingest/hourly", "ingest/nightly"]

    pruned = run_cli("--store", store_url, str(repo.path))
    assert pruned.code == 0, pruned.output
    assert '- deployment "ingest/hourly"' in pruned.stdout
    assert "Apply complete! Resources: 0 added, 0 changed, 1 destroyed." in pruned.stdout
    assert keys(store_url, Kind.DEPLOYMENT) == ["ingest/nightly"]


@pytest.mark.parametrize(
    "emptied",
    [
        pytest.param(None, id="file-deleted"),
        pytest.param("deployments: []\n", id="deployments-emptied"),
    ],
)
def test_emptying_a_file_needs_allow_empty(
    emptied: str | None,
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Dump,
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}))
    apply_in_process(store_url, repo)
    if emptied is None:
        repo.remove("prefect.yaml")
        repo.commit()
    else:
        repo.commit({"prefect.yaml": emptied})
    before = dump_store(store_url)

    for refused in run_many(
        run_cli,
        ["--dry-run", "--store", store_url, str(repo.path)],
        ["--store", store_url, str(repo.path)],
    ):
        assert_refused(
            refused,
            f"the plan would delete every object of {repo.path}:prefect.yaml (2: deployment "
            "ingest/hourly, deployment ingest/nightly)",
            "--allow-empty",
        )
    assert dump_store(store_url) == before

    allowed = run_cli("--allow-empty", "--store", store_url, str(repo.path))
    assert allowed.code == 0, allowed.output
    assert "0 added, 0 changed, 2 destroyed" in allowed.stdout
    assert keys(store_url, Kind.DEPLOYMENT) == []
    assert keys(store_url, Kind.WORK_POOL) == ["etl", "gpu"], "the pools file still declares them"


def add_by_hand(store_url: str) -> None:
    """Objects made outside reconciler (owner None), as `prefect work-pool create` would."""
    pool = {"name": "manual", "type": "process", "paused": False, "concurrency_limit": None}
    queue = {"pool": "manual", "name": "default", "priority": 1, "paused": False}
    deployment = {
        "flow_name": "ingest",
        "name": "by-hand",
        "entrypoint": "flows/etl.py:ingest",
        "work_pool_name": "manual",
        "work_queue_name": "default",
        "paused": False,
    }
    store = open_store(store_url)
    try:
        with store.transaction() as tx:
            tx.put(Resource.of(Kind.WORK_POOL, "manual", pool, None))
            tx.put(Resource.of(Kind.WORK_QUEUE, "manual/default", queue, None))
            tx.put(Resource.of(Kind.DEPLOYMENT, "ingest/by-hand", deployment, None))
    finally:
        store.close()


def test_objects_made_by_hand_are_never_deleted(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    add_by_hand(store_url)
    repo.remove("prefect.yaml", "work-pools.yaml")
    repo.commit()

    result = run_cli("--allow-empty", "--store", store_url, str(repo.path))
    assert result.code == 0, result.output
    assert "by-hand" not in result.stdout and "manual" not in result.stdout
    assert keys(store_url, Kind.DEPLOYMENT) == ["ingest/by-hand"]
    assert keys(store_url, Kind.WORK_POOL) == ["manual"]
    assert keys(store_url, Kind.WORK_QUEUE) == ["manual/default"]


def test_deployment_owned_by_another_repository_is_an_error(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Dump,
) -> None:
    owner = make_repo(project())
    apply_in_process(store_url, owner)
    intruder = make_repo({"flows/etl.py": FLOW, "prefect.yaml": PREFECT}, name="intruder")
    before = dump_store(store_url)

    for result in run_many(
        run_cli,
        ["--dry-run", "--store", store_url, str(intruder.path)],
        ["--store", store_url, str(intruder.path)],
    ):
        assert_refused(
            result,
            f'deployment "ingest/nightly" already exists and belongs to {owner.path}:prefect.yaml',
            f"{intruder.path}:prefect.yaml declares it too",
        )
    assert dump_store(store_url) == before


def test_moving_a_deployment_between_files_is_an_update(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}))
    apply_in_process(store_url, repo)
    moved = PREFECT.replace("nightly", "hourly").replace("flows/", "../flows/")
    repo.commit({"prefect.yaml": PREFECT, "reports/prefect.yaml": moved})

    text, as_json = run_many(
        run_cli,
        ["--dry-run", "--store", store_url, str(repo.path)],
        ["--dry-run", "-o", "json", "--store", store_url, str(repo.path)],
    )
    assert text.code == 0, text.output
    assert (
        f'~ owner      = "{repo.path}:prefect.yaml" -> "{repo.path}:reports/prefect.yaml"'
        in text.stdout
    )
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in text.stdout
    (change,) = json.loads(as_json.stdout)["changes"]
    assert (change["action"], change["key"]) == ("update", "ingest/hourly")
    assert change["previous_owner"]["file"] == "prefect.yaml"
    assert change["owner"]["file"] == "reports/prefect.yaml"


def test_deleting_a_pool_still_in_use_is_refused(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Dump,
) -> None:
    repo = make_repo(project({"prefect.yaml": PREFECT.replace("{name: etl}", "{name: gpu}")}))
    apply_in_process(store_url, repo)
    repo.commit({"work-pools.yaml": "work_pools:\n  - name: etl\n    type: process\n"})
    before = dump_store(store_url)

    result = run_cli("--store", store_url, str(repo.path))
    assert_refused(
        result,
        f'work-pool "gpu" would be deleted but deployment "ingest/nightly" '
        f"({repo.path}:prefect.yaml) still uses it",
        "error: the plan was refused; nothing was applied",
    )
    assert dump_store(store_url) == before
