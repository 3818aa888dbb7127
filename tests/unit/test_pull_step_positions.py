"""A pull step that fails on a worker is named by the file:line it was written at, from the
positions stored with the deployment: the worker has only the store (here the repository is
moved away before the run), so nothing is read or parsed again."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.engine.stages import ReconcileRequest, reconcile
from reconciler.model.resources import Kind, Resource
from reconciler.settings import settings_for_store
from reconciler.steps.runner import StepFailed
from reconciler.store import open_store
from reconciler.worker.flow_code import fetch_flow_code
from tests.conftest import GitRepo
from tests.e2e.helpers import FLOW, POOLS, apply_in_process

PROJECT = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
    pull:
      - prefect.deployments.steps.set_working_directory:
          directory: .
      - prefect.deployments.steps.run_shell_script:
          id: check
          script: "false"
"""
FAILING_STEP_LINE = 8


def stored(store_url: str) -> tuple[Resource, str | None]:
    """The deployment and its repository's applied commit, as a worker reads them."""
    store = open_store(store_url, readonly=True)
    try:
        deployment = store.get(Kind.DEPLOYMENT, "ingest/nightly")
        assert deployment is not None and deployment.owner is not None
        (record,) = [r for r in store.repositories() if r.repo == deployment.owner.repo]
        return deployment, record.last_commit
    finally:
        store.close()


def run_pull_steps(store_url: str, workdir: Path) -> StepFailed:
    deployment, commit = stored(store_url)
    workdir.mkdir(parents=True)
    with pytest.raises(StepFailed) as failed:
        fetch_flow_code(
            deployment.deployment_spec().pull_steps,
            deployment=deployment.key,
            repository_commit=commit,
            written_at=deployment.source_commit,
            workdir=workdir,
            env=dict(os.environ),
        )
    return failed.value


def test_a_failed_pull_step_names_where_it_was_written(
    make_repo: Callable[..., GitRepo], store_url: str, tmp_path: Path
) -> None:
    repo = make_repo({"work-pools.yaml": POOLS, "prefect.yaml": PROJECT, "flows/etl.py": FLOW})
    apply_in_process(store_url, repo)
    written = repo.path / "prefect.yaml"
    repo.path.rename(tmp_path / "moved-away")  # the worker cannot read the file

    failure = run_pull_steps(store_url, tmp_path / "run")
    assert str(failure).startswith(f'{written}:{FAILING_STEP_LINE}:9: step "check"')
    assert "exit code 1" in str(failure)


def test_lines_that_move_without_a_change_are_named_at_the_commit_they_were_stored_from(
    make_repo: Callable[..., GitRepo], store_url: str, tmp_path: Path
) -> None:
    repo = make_repo({"work-pools.yaml": POOLS, "prefect.yaml": PROJECT, "flows/etl.py": FLOW})
    apply_in_process(store_url, repo)
    first, _ = stored(store_url)
    repo.commit({"prefect.yaml": "# two lines above\n# change no deployment\n" + PROJECT})
    outcome = reconcile(
        ReconcileRequest(repositories=(str(repo.path),), settings=settings_for_store(store_url)),
        environ={},
    )
    assert not outcome.errors and not outcome.plan.has_changes  # positions are not in plans
    assert first.source_commit is not None

    failure = run_pull_steps(store_url, tmp_path / "run")
    where = f"{repo.path / 'prefect.yaml'}@{first.source_commit[:12]}:{FAILING_STEP_LINE}:9"
    assert str(failure).startswith(f'{where}: step "check"')


def test_a_step_without_a_position_is_named_by_its_place(
    make_repo: Callable[..., GitRepo], store_url: str, tmp_path: Path
) -> None:
    """A deployment stored before positions were (or the generated clone step)."""
    repo = make_repo({"work-pools.yaml": POOLS, "prefect.yaml": PROJECT, "flows/etl.py": FLOW})
    apply_in_process(store_url, repo)
    deployment, commit = stored(store_url)
    steps = [type(step)(step.name, step.body) for step in deployment.deployment_spec().pull_steps]
    (tmp_path / "run").mkdir()
    with pytest.raises(StepFailed, match=r'^deployment ingest/nightly: pull step 2: step "check"'):
        fetch_flow_code(
            steps,
            deployment=deployment.key,
            repository_commit=commit,
            workdir=tmp_path / "run",
            env=dict(os.environ),
        )
