"""The read-only view of one repository at one commit that every pure stage reads from.

A `Snapshot` is the only way the loader, the validator and the flow reader see files: they
never touch the filesystem, so planning reads exactly what is committed. Paths are POSIX,
relative to the repository root, with no leading `./`.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol


class PathKind(enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"  # submodule, or anything that is not readable content


class Snapshot(Protocol):
    """One repository at one commit (or a working copy)."""

    @property
    def repo_id(self) -> str:
        """Stable identity of the repository: the owner recorded on what it creates."""
        ...

    @property
    def commit(self) -> str | None:
        """The commit the files come from; None for an uncommitted working copy."""
        ...

    @property
    def display_root(self) -> str:
        """How to name the repository in messages (a path or URL)."""
        ...

    def files(self) -> Iterable[str]:
        """Every regular file and symlink, as repository-relative POSIX paths."""
        ...

    def kind(self, path: str) -> PathKind | None:
        """What `path` is, or None when it does not exist. Never follows symlinks."""
        ...

    def read(self, path: str) -> bytes:
        """The content of a regular file. Raises FileNotFoundError otherwise."""
        ...

    def checkout(self, destination: Path) -> Path:
        """The snapshot's files on disk (written under `destination` if need be), for the
        build and push steps of an apply, which need real files; returns their root."""
        ...


class MemorySnapshot:
    """A snapshot held in memory: used by tests of the pure stages and by benchmarks.

    `files` maps paths to content; `symlinks` maps link paths to their target text.
    """

    def __init__(
        self,
        files: Mapping[str, bytes | str],
        *,
        repo_id: str = "memory",
        commit: str | None = "0" * 40,
        symlinks: Mapping[str, str] | None = None,
    ) -> None:
        self._files = {
            normalize(p): (c.encode() if isinstance(c, str) else c) for p, c in files.items()
        }
        self._symlinks = {normalize(p): t for p, t in (symlinks or {}).items()}
        self._dirs: set[str] = set()
        for path in [*self._files, *self._symlinks]:
            parent = posixpath.dirname(path)
            while parent:
                self._dirs.add(parent)
                parent = posixpath.dirname(parent)
        self._repo_id = repo_id
        self._commit = commit

    @property
    def repo_id(self) -> str:
        return self._repo_id

    @property
    def commit(self) -> str | None:
        return self._commit

    @property
    def display_root(self) -> str:
        return self._repo_id

    def files(self) -> Iterable[str]:
        return sorted([*self._files, *self._symlinks])

    def kind(self, path: str) -> PathKind | None:
        path = normalize(path)
        if path in self._files:
            return PathKind.FILE
        if path in self._symlinks:
            return PathKind.SYMLINK
        if path == "" or path in self._dirs:
            return PathKind.DIRECTORY
        return None

    def read(self, path: str) -> bytes:
        path = normalize(path)
        if path not in self._files:
            raise FileNotFoundError(path)
        return self._files[path]

    def checkout(self, destination: Path) -> Path:
        for path, content in self._files.items():
            target = destination / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return destination


def normalize(path: str) -> str:
    """`./a//b/` -> `a/b`; the root is `""`. Does not resolve `..`."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)
