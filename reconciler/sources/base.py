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
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reconciler.core.diagnostics import Diagnostic


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

    def link_target(self, path: str) -> str:
        """The text a symbolic link at `path` points to; FileNotFoundError if not a link."""
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

    def link_target(self, path: str) -> str:
        path = normalize(path)
        if path not in self._symlinks:
            raise FileNotFoundError(path)
        return self._symlinks[path]

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


MAX_LINK_HOPS = 40  # as the kernel's limit: a loop of links ends with an error, not a hang


class LinkOutsideRepository(Exception):
    """A symbolic link that leads outside the repository, nowhere, or round in a loop."""

    def __init__(self, path: str, target: str, reason: str) -> None:
        super().__init__(f"'{path}' is a symbolic link to '{target}', which {reason}")
        self.path = path
        self.target = target
        self.reason = reason


def follow_links(snapshot: Snapshot, path: str) -> str:
    """The repository path of the regular file `path` leads to, following symbolic links
    (the file's own, and links to directories on the way) as long as every target stays inside
    the repository. Raises `LinkOutsideRepository` otherwise."""
    start = normalize(path)
    pending = start.split("/") if start else []
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise LinkOutsideRepository(start, _first_target(snapshot, start), _OUTSIDE)
            resolved.pop()
            continue
        here = "/".join([*resolved, part])
        if snapshot.kind(here) is not PathKind.SYMLINK:
            resolved.append(part)
            continue
        hops += 1
        target = snapshot.link_target(here)
        if hops > MAX_LINK_HOPS:
            raise LinkOutsideRepository(start, target, "is a loop of links")
        if target.startswith("/") or _is_windows_absolute(target):
            raise LinkOutsideRepository(start, target, f"{_OUTSIDE} (an absolute path)")
        pending = target.replace("\\", "/").split("/") + pending
    final = "/".join(resolved)
    if snapshot.kind(final) is not PathKind.FILE:
        raise LinkOutsideRepository(
            start, _first_target(snapshot, start), "is not a file committed in the repository"
        )
    return final


_OUTSIDE = "points outside the repository"


def read_following_links(snapshot: Snapshot, path: str) -> bytes:
    """The content of the file `path`, following symbolic links inside the repository."""
    if snapshot.kind(path) is PathKind.FILE:
        return snapshot.read(path)
    return snapshot.read(follow_links(snapshot, path))


def link_diagnostic(problem: LinkOutsideRepository, display: str) -> Diagnostic:
    """The plan error for a configuration file that is a link we cannot follow."""
    from reconciler.core.diagnostics import Location, error

    return error(
        str(problem),
        Location(display, 1),
        hint="commit the file itself, or a link whose target is a file inside the repository",
    )


def _first_target(snapshot: Snapshot, path: str) -> str:
    try:
        return snapshot.link_target(path)
    except OSError:
        return path


def _is_windows_absolute(target: str) -> bool:
    return len(target) >= 2 and target[1] == ":" and target[0].isalpha()


def normalize(path: str) -> str:
    """`./a//b/` -> `a/b`; the root is `""`. Does not resolve `..`."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)
