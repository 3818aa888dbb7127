"""Local git repositories as Snapshots: the committed tree at a ref, or the working copy.

The default reads `git ls-tree` at the resolved commit and blobs from the object database, so
what is planned is exactly what is committed; `worktree=True` reads tracked and untracked
(not ignored) files from disk for local iteration.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from reconciler.errors import SourceError
from reconciler.sources.base import PathKind, normalize

_MODE_KIND = {"100644": PathKind.FILE, "100755": PathKind.FILE, "120000": PathKind.SYMLINK}


def open_repository(
    path: str, *, ref: str = "HEAD", worktree: bool = False
) -> GitSnapshot | WorktreeSnapshot:
    """The repository at `path` (working copy or bare) as a Snapshot at `ref`."""
    repo = _open(path)
    if worktree:
        if repo.bare:
            raise SourceError(
                f"{path} is a bare repository: it has no working copy to read",
                "drop --worktree to read the committed tree",
            )
        return WorktreeSnapshot(repo, path)
    return GitSnapshot(repo, path, ref)


def repository_identity(repo: git.Repo) -> str:
    """The owner name recorded on objects: the `origin` URL without credentials, else the
    absolute path of the repository."""
    try:
        url = repo.remotes["origin"].url if "origin" in [r.name for r in repo.remotes] else None
    except (ValueError, GitCommandError):
        url = None
    if url:
        return strip_credentials(url).removesuffix(".git")
    root = repo.working_tree_dir if not repo.bare else repo.git_dir
    return str(Path(str(root)).resolve())


def strip_credentials(url: str) -> str:
    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _open(path: str) -> git.Repo:
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file or directory", "check the repository path")
    if not os.path.isdir(path):
        raise SourceError(f"{path} is a file, not a repository directory")
    try:
        return git.Repo(path, search_parent_directories=False)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise SourceError(
            f"{path} is not a git repository",
            "pass the root of a git clone (the directory holding .git), or run `git init` and "
            "commit your prefect.yaml",
        ) from None


class GitSnapshot:
    """The tree of one commit."""

    def __init__(self, repo: git.Repo, location: str, ref: str) -> None:
        self._repo = repo
        self._location = location
        self.ref = ref
        try:
            self._commit = repo.rev_parse(f"{ref}^{{commit}}").hexsha
        except (BadName, ValueError, GitCommandError):
            raise SourceError(
                f"ref {ref!r} does not exist in {location}",
                _ref_hint(repo),
            ) from None
        self._entries = self._list_tree()
        self._dirs = {p for p, (kind, _) in self._entries.items() if kind is PathKind.DIRECTORY}
        self._repo_id = repository_identity(repo)

    def _list_tree(self) -> dict[str, tuple[PathKind, str]]:
        output = self._repo.git.ls_tree("-r", "-t", "-z", "--full-tree", self._commit)
        entries: dict[str, tuple[PathKind, str]] = {}
        for record in output.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, object_type, sha = meta.split()
            if object_type == "tree":
                entries[path] = (PathKind.DIRECTORY, sha)
            else:
                entries[path] = (_MODE_KIND.get(mode, PathKind.OTHER), sha)
        return entries

    @property
    def repo_id(self) -> str:
        return self._repo_id

    @property
    def commit(self) -> str | None:
        return self._commit

    @property
    def display_root(self) -> str:
        return self._location

    def files(self) -> Iterable[str]:
        return sorted(p for p, (kind, _) in self._entries.items() if kind is not PathKind.DIRECTORY)

    def kind(self, path: str) -> PathKind | None:
        path = normalize(path)
        if path == "":
            return PathKind.DIRECTORY
        entry = self._entries.get(path)
        return entry[0] if entry else None

    def read(self, path: str) -> bytes:
        path = normalize(path)
        entry = self._entries.get(path)
        if entry is None or entry[0] is not PathKind.FILE:
            raise FileNotFoundError(path)
        data: bytes = self._repo.odb.stream(bytes.fromhex(entry[1])).read()
        return data


class WorktreeSnapshot:
    """Tracked and untracked, not ignored, files of the working copy, as they are on disk."""

    def __init__(self, repo: git.Repo, location: str) -> None:
        self._repo = repo
        self._location = location
        self.ref = "worktree"
        self._root = Path(str(repo.working_tree_dir)).resolve()
        listed = repo.git.ls_files("-z", "--cached", "--others", "--exclude-standard")
        self._paths = sorted(
            {p for p in listed.split("\0") if p and os.path.lexists(self._root / p)}
        )
        self._repo_id = repository_identity(repo)

    @property
    def repo_id(self) -> str:
        return self._repo_id

    @property
    def commit(self) -> str | None:
        return None

    @property
    def display_root(self) -> str:
        return self._location

    def files(self) -> Iterable[str]:
        return list(self._paths)

    def kind(self, path: str) -> PathKind | None:
        target = self._root / normalize(path)
        try:
            mode = os.lstat(target).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return PathKind.SYMLINK
        if stat.S_ISDIR(mode):
            return PathKind.DIRECTORY
        return PathKind.FILE if stat.S_ISREG(mode) else PathKind.OTHER

    def read(self, path: str) -> bytes:
        if self.kind(path) is not PathKind.FILE:
            raise FileNotFoundError(path)
        return (self._root / normalize(path)).read_bytes()


def _ref_hint(repo: git.Repo) -> str:
    try:
        names = [h.name for h in repo.heads][:10] + [t.name for t in repo.tags][:10]
    except (ValueError, GitCommandError):
        names = []
    if not names:
        return "the repository has no commits yet: commit your files first"
    return "refs here: " + ", ".join(names)
