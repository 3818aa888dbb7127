"""A per-file cache for the "validate + desired state" stage, keyed by git blob id.

Reading, validating and building a prefect.yaml is most of a plan's time; between two commits
of a large repository most files are the same blobs. spec/build.py asks this cache for a
file's result before reading it, and gives it what it built. A result is served only when
all of these are what they were when it was built:

- the file's blob id (its content);
- every other path the build looked at (the flow files of its entrypoints, links on the way),
  recorded while it was built by `RecordingSnapshot`, compared by kind and blob id;
- the context: options, environment, the store's variables, blocks and pools, and the
  repository's identity (`context_key`).

So a cache never serves a stale result; the worst it does is miss. Only snapshots of commits
(with blob ids) are cached, never a working copy. The daemon keeps one cache per repository
(reconciler/daemon/controller.py); the CLI, one process per plan, does not use one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler.sources.base import PathKind, Snapshot

Signature = tuple[PathKind, str] | None
"""What a path is at a commit: its kind and git object id (None when it does not exist)."""


class BlobSnapshot(Snapshot, Protocol):
    def entry(self, path: str) -> tuple[PathKind, str] | None:
        """What is at `path` and its git object id (None when nothing is there)."""
        ...


def blob_ids(snapshot: Snapshot) -> BlobSnapshot | None:
    """The snapshot, when it can name blobs and is a commit (a working copy cannot)."""
    if snapshot.commit is None or not callable(getattr(snapshot, "entry", None)):
        return None
    return snapshot  # type: ignore[return-value]


def signature(snapshot: BlobSnapshot, path: str) -> Signature:
    return snapshot.entry(path)


def context_key(*parts: Any) -> str:
    """A digest of everything besides files that a file's result depends on."""
    text = json.dumps(parts, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class _Entry:
    blob: str
    context: str
    reads: tuple[tuple[str, Signature], ...]
    result: Any


class BuildCache:
    """Results of files by (repository, path); thread-safe (the daemon plans repositories on
    several threads, one cache each, but a drift check and an apply may share one)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, snapshot: BlobSnapshot, path: str, blob: str, context: str) -> Any | None:
        with self._lock:
            entry = self._entries.get((snapshot.repo_id, path))
        if (
            entry is None
            or entry.blob != blob
            or entry.context != context
            or any(signature(snapshot, p) != seen for p, seen in entry.reads)
        ):
            self.misses += 1
            return None
        self.hits += 1
        return entry.result

    def put(
        self,
        snapshot: BlobSnapshot,
        path: str,
        blob: str,
        context: str,
        reads: Iterable[str],
        result: Any,
    ) -> None:
        recorded = tuple((p, signature(snapshot, p)) for p in sorted(set(reads)) if p != path)
        with self._lock:
            self._entries[(snapshot.repo_id, path)] = _Entry(blob, context, recorded, result)

    def retain(self, repo_id: str, paths: Iterable[str]) -> None:
        """Forget the files of `repo_id` that are not in `paths` (deleted or renamed)."""
        keep = set(paths)
        with self._lock:
            for key in [k for k in self._entries if k[0] == repo_id and k[1] not in keep]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class RecordingSnapshot:
    """A snapshot that notes every path it is asked about: what a file's build depended on."""

    def __init__(self, inner: Snapshot) -> None:
        self.inner = inner
        self.reads: set[str] = set()

    @property
    def repo_id(self) -> str:
        return self.inner.repo_id

    @property
    def commit(self) -> str | None:
        return self.inner.commit

    @property
    def display_root(self) -> str:
        return self.inner.display_root

    def files(self) -> Iterable[str]:
        raise NotImplementedError("a file's build must not list the repository")

    def kind(self, path: str) -> PathKind | None:
        self.reads.add(path)
        return self.inner.kind(path)

    def link_target(self, path: str) -> str:
        self.reads.add(path)
        return self.inner.link_target(path)

    def read(self, path: str) -> bytes:
        self.reads.add(path)
        return self.inner.read(path)

    def checkout(self, destination: Path) -> Path:
        return self.inner.checkout(destination)
