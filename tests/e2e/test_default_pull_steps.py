"""A deployment whose file has no pull steps runs on a worker elsewhere: the generated steps
clone the repository into the run's directory, at the commit that was last applied, and work
in the file's directory. Here the "other host" is a fresh directory that shares nothing with
the repository but its URL, as a worker on another machine would."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.errors import ConfigError
from reconciler.engine.stages import ReconcileRequest, reconcile
from reconciler.model.resources import Kind
from reconciler.settings import Settings
from reconciler.steps.runner import StepFailed
from reconciler.store import open_store
from reconciler.worker.flow_code import fetch_flow_code
from tests.conftest import GitRepo
from tests.e2e.helpers import FLOW, POOLS, apply_in_process

pytestmark = pytest.mark.e2e

PROJECT_FILE = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
"""


def run_directory(store_url: str, tmp_path: Path, name: str) -> Path:
    """What a worker does before starting the flow: fetch the code, return its directory."""
    store = open_store(store_url, readonly=True)
    try:
        deployment = store.get(Kind.DEPLOYMENT, "ingest/nightly")
        assert deployment is not None and deployment.owner is not None
        (record,) = [r for r in store.repositories() if r.repo == deployment.owner.repo]
    finally:
        store.close()
    workdir = tmp_path / "worker" / name
    workdir.mkdir(parents=True)
    return fetch_flow_code(
        deployment.deployment_spec().pull_steps,
        deployment="ingest/nightly",
        repository_commit=record.last_commit,
        workdir=workdir,
        env=dict(os.environ),
    )


def test_the_worker_gets_the_applied_code_of_the_files_directory(
    make_repo: Callable[..., GitRepo], store_url: str, tmp_path: Path
) -> None:
    repo = make_repo(
        {
            "work-pools.yaml": POOLS,
            "teams/etl/prefect.yaml": PROJECT_FILE,
            "teams/etl/flows/etl.py": FLOW,
        }
    )
    apply_in_process(store_url, repo)
    first = run_directory(store_url, tmp_path, "run-1")
    assert first.name == "etl" and first.parent.name == "teams"
    assert (first / "flows/etl.py").read_text() == FLOW
    assert not first.is_relative_to(repo.path)

    # A commit the reconciler refuses (invalid file) is never what a run executes.
    repo.commit(
        {
            "teams/etl/flows/etl.py": FLOW + "\n# refused commit\n",
            "teams/etl/prefect.yaml": PROJECT_FILE.replace("work_pool", "work_pol"),
        }
    )
    with pytest.raises(ConfigError):
        reconcile(
            ReconcileRequest(
                repositories=(str(repo.path),), settings=Settings(store_url=store_url)
            ),
            environ={},
        )
    refused = run_directory(store_url, tmp_path, "run-2")
    assert (refused / "flows/etl.py").read_text() == FLOW

    # A commit that changes only code changes no deployment, and runs get the new code.
    repo.commit({"teams/etl/prefect.yaml": PROJECT_FILE, "teams/etl/flows/etl.py": FLOW + "# v2\n"})
    applied = apply_in_process(store_url, repo)
    assert applied.plan is not None and not applied.plan.changes
    assert (
        (run_directory(store_url, tmp_path, "run-3") / "flows/etl.py")
        .read_text()
        .endswith("# v2\n")
    )


def test_a_file_at_the_root_runs_in_the_clone_whatever_the_worker_directory(
    make_repo: Callable[..., GitRepo],
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_repo({"work-pools.yaml": POOLS, "prefect.yaml": PROJECT_FILE, "flows/etl.py": FLOW})
    apply_in_process(store_url, repo)
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    directory = run_directory(store_url, tmp_path, "run")
    assert directory.is_absolute() and directory.parent == tmp_path / "worker" / "run"
    assert (directory / "flows/etl.py").read_text() == FLOW


def test_a_repository_the_worker_cannot_reach_fails_the_run_naming_the_step(
    make_repo: Callable[..., GitRepo], store_url: str, tmp_path: Path
) -> None:
    repo = make_repo({"work-pools.yaml": POOLS, "prefect.yaml": PROJECT_FILE, "flows/etl.py": FLOW})
    apply_in_process(store_url, repo)
    moved = repo.path.with_name("moved-away")
    repo.path.rename(moved)
    with pytest.raises(StepFailed) as failed:
        run_directory(store_url, tmp_path, "run")
    assert "clone-repository" in str(failed.value)
    assert "ingest/nightly" in str(failed.value)
