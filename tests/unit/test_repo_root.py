"""The repository a command runs in is found from any subdirectory (as git finds it), and the
default store lives at its root, ignored by git."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.repo_root import default_store_path, ignore_store_directory, repository_root


def test_the_root_is_found_from_any_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    deep = tmp_path / "repo" / "a" / "b"
    deep.mkdir(parents=True)
    assert repository_root(deep) == tmp_path / "repo"
    assert repository_root(tmp_path / "repo") == tmp_path / "repo"
    assert default_store_path(deep) == str(tmp_path / "repo" / ".reconciler" / "state.db")


def test_a_git_file_marks_a_root_too(tmp_path: Path) -> None:
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / ".git").write_text("gitdir: /elsewhere/.git/worktrees/linked\n")
    assert repository_root(tmp_path / "linked") == tmp_path / "linked"


def test_outside_a_repository_the_store_stays_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    assert repository_root(tmp_path / "plain") is None
    assert default_store_path(tmp_path / "plain") == ".reconciler/state.db"


def test_the_store_directory_gets_a_gitignore_once(tmp_path: Path) -> None:
    store = tmp_path / ".reconciler" / "state.db"
    store.parent.mkdir()
    ignore_store_directory(str(store))
    ignore = store.parent / ".gitignore"
    assert ignore.read_text().splitlines()[-1] == "*"
    ignore.write_text("# mine\n*\n")
    ignore_store_directory(str(store))
    assert ignore.read_text() == "# mine\n*\n"  # never overwritten


def test_a_store_elsewhere_gets_no_gitignore(tmp_path: Path) -> None:
    ignore_store_directory(str(tmp_path / "state.db"))
    assert not (tmp_path / ".gitignore").exists()
