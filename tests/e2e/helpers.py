"""Shared pieces of the end-to-end tests: a small valid project, setup through the engine, and
running several CLI calls at once.

Setup (the state a test starts from) is applied in-process with
`reconciler.engine.stages.reconcile`, the same code the CLI runs, because each CLI start costs
half a second; the behaviour under test always runs through the CLI as a subprocess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reconciler.engine.stages import ReconcileOutcome, ReconcileRequest, reconcile
from reconciler.model.resources import Kind
from reconciler.settings import Settings
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo

FLOW = """\
from prefect import flow


@flow
def ingest(days: int = 1, region: str = "eu") -> int:
    return days
"""

POOLS = """\
work_pools:
  - name: etl
    type: process
  - name: gpu
    type: docker
"""

PREFECT = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
"""


def project(files: Mapping[str, str | bytes] | None = None) -> dict[str, str | bytes]:
    """A valid project (one flow, pools `etl` and `gpu`, deployment `ingest/nightly`), with
    `files` added or replacing ours."""
    return {
        "flows/etl.py": FLOW,
        "work-pools.yaml": POOLS,
        "prefect.yaml": PREFECT,
        **(files or {}),
    }


def new_repo(path: Path, files: Mapping[str, str | bytes]) -> GitRepo:
    """Like the `make_repo` fixture, for module-scoped fixtures (which cannot use it)."""
    path.mkdir(parents=True)
    repo = GitRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.commit(files, "initial")
    return repo


def apply_in_process(store_url: str, *repos: GitRepo, **options: Any) -> ReconcileOutcome:
    """Plan and apply `repos` to the store, as `reconcile REPO...` does; fails on any error."""
    request = ReconcileRequest(
        repositories=tuple(str(r.path) for r in repos),
        settings=Settings(store_url=store_url),
        **options,
    )
    outcome = reconcile(request, environ={})
    assert not outcome.errors, outcome.errors
    return outcome


def keys(store_url: str, kind: Kind) -> list[str]:
    store = open_store(store_url, readonly=True)
    try:
        return [r.key for r in store.list_resources(kind)]
    finally:
        store.close()


def run_many(
    run_cli: Callable[..., CliResult], *calls: Sequence[str], **kwargs: Any
) -> list[CliResult]:
    """Run several CLI calls at the same time (each is its own process); results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run_cli, *call, **kwargs) for call in calls]
        return [f.result() for f in futures]


def assert_refused(result: CliResult, *expected: str) -> None:
    """Exit code 1, every expected text in the output, and no traceback."""
    assert result.code == 1, result.output
    assert "Traceback" not in result.output, result.output
    for text in expected:
        assert text in result.output, f"{text!r} not in:\n{result.output}"


# A store dump (tests/conftest.py `dump_store`): every row of every table.
Dump = Callable[[str], dict[str, list[tuple[object, ...]]]]

# Two deployments of one flow in one pool: the smallest file with something to prune.
TWO_DEPLOYMENTS = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
  - name: hourly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
"""
