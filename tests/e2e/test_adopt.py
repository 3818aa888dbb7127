"""Adoption, end to end (issue 19, item 3): `reconcile adopt REPO` and `--adopt` take over
objects another repository made when the files declare them by name. Nothing is adopted
without being shown first: the plan lists them as `adopt` (with any diff), `reconcile adopt`
asks at a terminal and refuses without one unless -y; afterwards they are owned and pruned
like any object of the file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.errors import PlanRefused
from reconciler.engine.stages import ReconcileRequest, reconcile
from reconciler.model.resources import Kind
from reconciler.settings import Settings
from reconciler.store import open_store
from tests.conftest import GIT_ENV, CliResult, GitRepo
from tests.e2e.helpers import TWO_DEPLOYMENTS, Dump, apply_in_process, assert_refused, project

pytestmark = pytest.mark.e2e

CHANGED = TWO_DEPLOYMENTS.replace(
    "  - name: hourly\n    entrypoint: flows/etl.py:ingest\n",
    "  - name: hourly\n    entrypoint: flows/etl.py:ingest\n    parameters: {days: 5}\n",
)


@pytest.fixture
def two_repos(make_repo: Callable[..., GitRepo], store_url: str) -> tuple[GitRepo, GitRepo]:
    """`first` applied to the store; `second` declares the same objects, one with a diff."""
    first = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}), name="first")
    apply_in_process(store_url, first)
    second = make_repo(project({"prefect.yaml": CHANGED}), name="second")
    return first, second


def owners(store_url: str, kind: Kind) -> dict[str, str]:
    store = open_store(store_url, readonly=True)
    try:
        return {r.key: Path(r.owner.repo).name for r in store.list_resources(kind) if r.owner}
    finally:
        store.close()


def run_at_terminal(args: list[str], answer: str, cwd: Path) -> CliResult:
    """`reconcile ARGS` with a pseudo-terminal as its standard input, answering `answer`."""
    import pty

    main, secondary = pty.openpty()
    try:
        os.write(main, answer.encode())
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=cwd,
            env={**os.environ, **GIT_ENV, "NO_COLOR": "1"},
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(secondary)
        os.close(main)
    return CliResult(done.returncode, done.stdout, done.stderr)


def test_without_adopt_the_other_repositorys_objects_are_refused_with_a_hint(
    two_repos: tuple[GitRepo, GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Dump,
) -> None:
    _, second = two_repos
    before = dump_store(store_url)
    refused = run_cli("--store", store_url, str(second.path))
    assert_refused(refused, "already exists and belongs to", "reconcile adopt REPO")
    assert dump_store(store_url) == before


def test_adopt_shows_the_plan_and_refuses_without_a_terminal_or_yes(
    two_repos: tuple[GitRepo, GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Dump,
) -> None:
    _, second = two_repos
    before = dump_store(store_url)
    shown = run_cli("adopt", "--store", store_url, str(second.path))
    assert_refused(shown, "adopting asks for confirmation at a terminal", "-y")
    assert '# deployment "ingest/hourly" will be adopted' in shown.stdout
    assert re.search(r"\+ parameters\.days +(= 5)", shown.stdout)  # its diff, in the same plan
    assert '# work-pool "etl" will be adopted' in shown.stdout
    assert "Plan: 6 to adopt, 0 to add, 0 to change, 0 to destroy." in shown.stdout
    assert dump_store(store_url) == before


def test_adopt_at_a_terminal_asks_and_a_no_changes_nothing(
    two_repos: tuple[GitRepo, GitRepo], store_url: str, dump_store: Dump, tmp_path: Path
) -> None:
    _, second = two_repos
    before = dump_store(store_url)
    declined = run_at_terminal(["adopt", "--store", store_url, str(second.path)], "n\n", tmp_path)
    assert declined.code == 0, declined.output
    assert "Apply this plan (6 to adopt)?" in declined.stdout
    assert "Nothing was applied." in declined.stdout
    assert dump_store(store_url) == before

    accepted = run_at_terminal(["adopt", "--store", store_url, str(second.path)], "y\n", tmp_path)
    assert accepted.code == 0, accepted.output
    assert "Apply complete! Resources: 6 adopted, 0 added, 0 changed, 0 destroyed." in (
        accepted.stdout
    )
    assert set(owners(store_url, Kind.DEPLOYMENT).values()) == {"second"}


def test_adopted_objects_are_owned_updated_and_pruned_like_any_other(
    two_repos: tuple[GitRepo, GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    first, second = two_repos
    adopted = run_cli("adopt", "-y", "--store", store_url, str(second.path))
    assert adopted.code == 0, adopted.output
    assert owners(store_url, Kind.DEPLOYMENT) == {
        "ingest/hourly": "second",
        "ingest/nightly": "second",
    }
    assert owners(store_url, Kind.WORK_POOL) == {"etl": "second", "gpu": "second"}

    again = run_cli("--dry-run", "--store", store_url, str(second.path))
    assert "No changes." in again.stdout, again.output
    # The repository they came from now sees them as another's.
    old = run_cli("--dry-run", "--store", store_url, str(first.path))
    assert_refused(old, 'deployment "ingest/hourly" already exists and belongs to')

    second.commit({"prefect.yaml": CHANGED.split("  - name: hourly")[0]})
    pruned = run_cli("--store", store_url, str(second.path))
    assert pruned.code == 0, pruned.output
    assert '- deployment "ingest/hourly"' in pruned.stdout
    assert list(owners(store_url, Kind.DEPLOYMENT)) == ["ingest/nightly"]


def test_adopt_flag_on_apply_adopts_with_the_plan_shown(
    two_repos: tuple[GitRepo, GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    _, second = two_repos
    done = run_cli("--adopt", "--store", store_url, str(second.path))
    assert done.code == 0, done.output
    assert '= deployment "ingest/hourly" {' in done.stdout
    assert "Apply complete! Resources: 6 adopted, 0 added, 0 changed, 0 destroyed." in done.stdout
    assert set(owners(store_url, Kind.DEPLOYMENT).values()) == {"second"}


def test_a_store_changed_since_the_plan_was_shown_is_refused(
    two_repos: tuple[GitRepo, GitRepo], store_url: str, dump_store: Dump
) -> None:
    """`reconcile adopt` applies only at the revision it showed (expected_revision)."""
    _, second = two_repos
    store = open_store(store_url, readonly=True)
    try:
        shown_at = store.revision() - 1  # as if a writer came in after the plan was shown
    finally:
        store.close()
    before = dump_store(store_url)
    with pytest.raises(PlanRefused, match="the store changed since the plan was shown"):
        reconcile(
            ReconcileRequest(
                repositories=(str(second.path),),
                settings=Settings(store_url=store_url),
                adopt=True,
                expected_revision=shown_at,
            ),
            environ={},
        )
    assert dump_store(store_url) == before
