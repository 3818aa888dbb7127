"""A run with nothing to change writes nothing: the store's revision stays, so plans made by
other processes in the meantime stay valid. A new commit with no change is still recorded."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.test_apply_twice import example_files

pytestmark = pytest.mark.e2e


def test_noop_run_leaves_the_revision_and_a_new_commit_is_recorded(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(example_files())
    assert run_cli("--store", store_url, str(repo.path)).code == 0
    store = open_store(store_url, readonly=True)
    first_revision = store.revision()
    store.close()

    again = run_cli("--store", store_url, str(repo.path))
    assert again.code == 0 and "No changes." in again.stdout
    store = open_store(store_url, readonly=True)
    assert store.revision() == first_revision
    store.close()

    commit = repo.commit({"NOTES.md": "unrelated\n"}, "docs only")
    moved = run_cli("--store", store_url, str(repo.path))
    assert moved.code == 0 and "No changes." in moved.stdout
    store = open_store(store_url, readonly=True)
    assert [r.last_commit for r in store.repositories()] == [commit]
    assert store.revision() == first_revision + 1
    assert len(store.history()) == 1, "only plans with changes enter the history"
    store.close()
