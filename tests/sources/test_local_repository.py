"""Opening a local repository (reconciler/sources/git.py): a working copy, a bare repository
(as the daemon's cache of a remote is), a directory inside a working copy, and a directory
that is no repository at all. One git call tells them apart, so each case is checked here."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.errors import SourceError
from reconciler.sources.git import open_repository
from tests.conftest import GitRepo

FILES = {"prefect.yaml": "deployments: []\n", "flows/f.py": "x = 1\n"}


def test_working_copy_reads_the_commit(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo(FILES)
    snapshot = open_repository(str(repo.path))
    assert snapshot.commit == repo.git("rev-parse", "HEAD")
    assert list(snapshot.files()) == ["flows/f.py", "prefect.yaml"]


def test_bare_repository_reads_the_same_commit(
    make_repo: Callable[..., GitRepo], tmp_path: Path
) -> None:
    repo = make_repo(FILES)
    bare = tmp_path / "bare.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True, capture_output=True
    )
    snapshot = open_repository(str(bare))
    assert snapshot.commit == repo.git("rev-parse", "HEAD")
    assert snapshot.read("prefect.yaml") == b"deployments: []\n"


def test_a_subdirectory_is_refused_naming_the_root(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo(FILES)
    with pytest.raises(SourceError) as caught:
        open_repository(str(repo.path / "flows"))
    assert caught.value.message == (
        f"{repo.path / 'flows'} is inside the git repository {repo.path.resolve()}, not its root"
    )


def test_a_plain_directory_is_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(SourceError) as caught:
        open_repository(str(plain))
    assert caught.value.message == f"{plain} is not a git repository"
    assert "git init" in (caught.value.hint or "")
