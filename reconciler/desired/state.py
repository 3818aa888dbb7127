"""Desired state: what the repositories say should exist, as Resources, plus the scope of each
repository (which owners a plan may prune). Built by `reconciler.desired.build` (pure)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from reconciler.core.diagnostics import Diagnostic, Location
from reconciler.model.resources import Kind, Owner, Resource

DEFAULT_PREFECT_GLOB = "prefect.yaml"
POOLS_FILE_NAME = "work-pools.yaml"
AUTOMATIONS_FILE_NAME = "automations.yaml"
"""Automations declared in git (reconciler/project/automations_file.py)."""


def matches_glob(path: str, pattern: str) -> bool:
    """A file matches when its path or its base name matches the pattern, so the default
    `prefect.yaml` finds the file at the root and in every subdirectory."""
    name = path.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(path, pattern) or (
        "/" not in pattern and fnmatch.fnmatchcase(name, pattern)
    )


@dataclass(frozen=True)
class RepoScope:
    """One repository read by this run: its identity, where it was read, and which files.

    `owns_file` decides which owners the plan may prune: an owner file matching the globs is
    in scope even when it no longer exists (it was deleted from the repository).
    """

    repo: str
    location: str
    ref: str
    commit: str | None
    files: tuple[str, ...]
    prefect_glob: str = DEFAULT_PREFECT_GLOB

    def owns_file(self, file: str) -> bool:
        return (
            matches_glob(file, self.prefect_glob)
            or matches_glob(file, POOLS_FILE_NAME)
            or matches_glob(file, AUTOMATIONS_FILE_NAME)
        )


@dataclass(frozen=True)
class DesiredState:
    resources: tuple[Resource, ...]
    scopes: tuple[RepoScope, ...]
    diagnostics: tuple[Diagnostic, ...] = ()
    implicit: frozenset[tuple[Kind, str]] = field(default_factory=frozenset)
    """Queues that deployments reference but no pools file declares: created when missing, as
    Prefect does, and otherwise left alone."""

    def file_location(self, owner: Owner | None) -> Location | None:
        """Where an owner's file is, as this run names it (for messages)."""
        if owner is None:
            return None
        for scope in self.scopes:
            if scope.repo == owner.repo:
                root = scope.location.rstrip("/")
                return Location(owner.file if root in ("", ".") else f"{root}/{owner.file}")
        return Location(f"{owner.repo}:{owner.file}")

    def in_scope(self, owner: Owner | None) -> bool:
        if owner is None:
            return False
        return any(s.repo == owner.repo and s.owns_file(owner.file) for s in self.scopes)

    @property
    def repos(self) -> frozenset[str]:
        return frozenset(s.repo for s in self.scopes)
