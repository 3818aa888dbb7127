"""What the store holds, as the rest of the pipeline sees it: `ObservedState` (everything a
plan reads, at one revision) and the records the store's reads return. Values only: the
store (reconciler/store) fills them, the pure stages read them without importing the store."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.masking import strings_in
from reconciler.model.resources import Kind, Resource


@dataclass(frozen=True)
class BlockRecord:
    """A block document (`{{ prefect.blocks.<slug>.<name> }}`); its value is secret."""

    type_slug: str
    name: str
    value: Any


@dataclass(frozen=True)
class RepositoryRecord:
    repo: str
    location: str
    last_commit: str | None
    last_applied_at: str | None


@dataclass(frozen=True)
class Fence:
    """A lease as held when work began: a transaction checked against it commits only while
    `holder` still holds `lease` with this `token` (a takeover always raises the token)."""

    lease: str
    holder: str
    token: int


@dataclass(frozen=True)
class RepoStatusRecord:
    """What the daemon last knew of one watched repository (`name` from its config).
    `status` is the daemon's own JSON-able mapping (reconciler/daemon/status.py)."""

    name: str
    status: dict[str, Any]
    updated_at: str


@dataclass(frozen=True)
class AppliedPlanRecord:
    id: int
    applied_at: str
    revision: int
    sources: list[dict[str, Any]]
    summary: dict[str, int]
    plan: dict[str, Any] | None = None


@dataclass(frozen=True)
class ObservedState:
    """Everything a plan reads from the store, taken at one revision."""

    revision: int
    resources: Mapping[tuple[Kind, str], Resource] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)
    blocks: Mapping[tuple[str, str], Any] = field(default_factory=dict)

    def of_kind(self, kind: Kind) -> Iterator[Resource]:
        return (r for (k, _), r in self.resources.items() if k is kind)

    def get(self, kind: Kind, key: str) -> Resource | None:
        return self.resources.get((kind, key))

    @property
    def secret_values(self) -> list[str]:
        """Every string inside a block value: what renderers and errors must mask."""
        return [text for value in self.blocks.values() for text in strings_in(value)]
