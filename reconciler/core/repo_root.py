"""Where the repository a command runs in starts: the nearest directory at or above the
current one that holds `.git` (a directory, or the file of a linked worktree or submodule),
as git itself finds it. Commands run from any subdirectory plan the whole repository and
find the same default store (`<root>/.reconciler/state.db`)."""

from __future__ import annotations

import os
from pathlib import Path

STORE_DIR = ".reconciler"
STORE_FILE = "state.db"


def repository_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The root of the git working copy holding `start` (default: the current directory), or
    None outside any. Stops where git does not look further: the filesystem's root, and
    $GIT_CEILING_DIRECTORIES."""
    here = Path(start if start is not None else os.getcwd()).absolute()
    ceilings = {
        Path(p).absolute()
        for p in os.environ.get("GIT_CEILING_DIRECTORIES", "").split(os.pathsep)
        if p
    }
    for directory in (here, *here.parents):
        if directory != here and directory in ceilings:
            return None  # git does not look into a ceiling directory from below
        if (directory / ".git").exists():
            return directory
    return None


def default_store_path(start: str | os.PathLike[str] | None = None) -> str:
    """`.reconciler/state.db` at the root of the repository holding `start` (absolute), else
    under `start` itself (relative, as before: outside a repository)."""
    root = repository_root(start)
    if root is None:
        return os.path.join(STORE_DIR, STORE_FILE)
    return str(root / STORE_DIR / STORE_FILE)


def ignore_store_directory(store_path: str) -> None:
    """A store created in a directory named `.reconciler` gets a `.gitignore` of `*` there,
    so that it never shows in `git status` (nor is committed). Best effort: a read-only
    directory keeps the store working."""
    directory = os.path.dirname(os.path.abspath(store_path))
    if os.path.basename(directory) != STORE_DIR:
        return
    ignore = os.path.join(directory, ".gitignore")
    if os.path.exists(ignore):
        return
    try:
        with open(ignore, "w", encoding="utf-8") as handle:
            handle.write("# written by reconciler: the store is local state, not source\n*\n")
    except OSError:
        pass
