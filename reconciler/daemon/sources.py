"""Where the daemon reads each repository from: a local path, or a clone of a remote URL.

`fetch()` answers one question, "which commit should be planned now?", and raises
SourceError when it cannot be known: then nothing is planned, so a failed read can never
delete anything. `location` is what the engine opens at that commit.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reconciler.core.errors import SourceError
from reconciler.daemon.config import RepositoryConfig


@dataclass(frozen=True)
class Fetched:
    commit: str
    note: str | None = None
    """Something to report beside the commit: a force-push, a cache cloned again."""


class DaemonSource(Protocol):
    @property
    def location(self) -> str:
        """The repository the engine opens (a working copy, or the cache of a remote)."""
        ...

    def fetch(self) -> Fetched: ...

    def watch_paths(self) -> list[Path]:
        """Files or directories whose change means a new commit may be there ([] for none)."""
        ...


class LocalSource:
    """A repository on this machine: its branch's commit is read, never fetched."""

    def __init__(self, config: RepositoryConfig) -> None:
        assert config.path is not None
        self.config = config
        self.path = config.path

    @property
    def location(self) -> str:
        return self.path

    def fetch(self) -> Fetched:
        done = _git(
            self.path,
            "rev-parse",
            "--verify",
            "--quiet",
            f"refs/heads/{self.config.branch}^{{commit}}",
        )
        if done.returncode != 0:
            if _git(self.path, "rev-parse", "--git-dir").returncode != 0:
                raise SourceError(
                    f"{self.path} is not a git repository (any more)",
                    "check `path` in the daemon config",
                )
            raise SourceError(
                f"branch {self.config.branch!r} does not exist in {self.path}",
                "create the branch, or change `branch` in the daemon config; what was applied "
                "before stays as it is",
            )
        return Fetched(done.stdout.strip())

    def watch_paths(self) -> list[Path]:
        done = _git(self.path, "rev-parse", "--absolute-git-dir")
        if done.returncode != 0:
            return []
        git_dir = Path(done.stdout.strip())
        return [git_dir]


class RemoteSource:
    """A remote repository, cloned once into the cache and fetched on each attempt."""

    def __init__(self, config: RepositoryConfig, cache_root: Path) -> None:
        from reconciler.sources.remote import Credentials, RemoteRepository

        assert config.url is not None
        credentials = None
        if config.password is not None:
            credentials = Credentials(
                config.username.value if config.username else None, config.password.value
            )
        self.remote = RemoteRepository(config.url, config.branch, cache_root, credentials)

    @property
    def location(self) -> str:
        return str(self.remote.cache_path)

    def fetch(self) -> Fetched:
        result = self.remote.fetch()
        note = None
        if result.recloned:
            note = "the cache was missing or damaged and was cloned again"
        if result.forced and result.previous:
            note = (
                f"history was rewritten (force-push): {result.previous[:12]} is not an "
                f"ancestor of {result.commit[:12]}"
            )
        return Fetched(result.commit, note)

    def watch_paths(self) -> list[Path]:
        return []


def open_source(config: RepositoryConfig, cache_root: Path) -> DaemonSource:
    if config.is_remote:
        return RemoteSource(config, cache_root)
    return LocalSource(config)


def _git(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", path, *args], capture_output=True, text=True, timeout=60, check=False
    )
