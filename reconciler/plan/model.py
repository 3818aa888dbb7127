"""The plan: an immutable value saying what `apply` will create, change and delete.

Order is stable: changes sort by kind (pools, queues, deployments), then key; field diffs by
path. Values inside diffs are held as canonical JSON text so the plan cannot be mutated and
compares by value. `to_json()` is the documented form (schemas/plan.schema.json).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.core.diagnostics import Diagnostic
from reconciler.model.resources import Kind, Owner, Resource, canonical_json, is_unknown

PLAN_FORMAT_VERSION = 1

PathPart = str | int


class Action(enum.Enum):
    """`adopt`: an object that exists, made by hand or owned by another repository, becomes
    owned by the file that declares it (Terraform's `import`); its diffs, when it differs
    from the file, are applied with it."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    ADOPT = "adopt"

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "delete": "-", "adopt": "="}[self.value]


class _Absent:
    """The value of a field that does not exist on one side of a diff."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT = _Absent()


@dataclass(frozen=True, order=True)
class FieldDiff:
    """One changed field. `before_json`/`after_json` are None when the field is absent."""

    path: tuple[PathPart, ...]
    before_json: str | None
    after_json: str | None

    @property
    def before(self) -> Any:
        return ABSENT if self.before_json is None else json.loads(self.before_json)

    @property
    def after(self) -> Any:
        return ABSENT if self.after_json is None else json.loads(self.after_json)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": list(self.path),
            "before": None if self.before_json is None else json.loads(self.before_json),
            "after": None if self.after_json is None else json.loads(self.after_json),
            "before_absent": self.before_json is None,
            "after_absent": self.after_json is None,
        }


@dataclass(frozen=True)
class Change:
    """One object to create, update or delete.

    `desired` is the full object after the change (None for a delete); `observed` the object
    before it (None for a create). `diffs` lists the fields that differ; an update whose only
    change is its owner has no field diffs but `owner_changed` is true.
    """

    action: Action
    kind: Kind
    key: str
    desired: Resource | None
    observed: Resource | None
    diffs: tuple[FieldDiff, ...] = ()

    @property
    def owner(self) -> Owner | None:
        if self.desired is not None:
            return self.desired.owner
        return self.observed.owner if self.observed is not None else None

    @property
    def previous_owner(self) -> Owner | None:
        return self.observed.owner if self.observed is not None else None

    @property
    def owner_changed(self) -> bool:
        return (
            self.desired is not None
            and self.observed is not None
            and self.desired.owner != self.observed.owner
        )

    @property
    def sort_key(self) -> tuple[int, str]:
        return (self.kind.order, self.key)

    def to_json(self) -> dict[str, Any]:
        owner = self.owner
        previous = self.previous_owner
        return {
            "action": self.action.value,
            "kind": self.kind.value,
            "key": self.key,
            "owner": owner.to_json() if owner else None,
            "previous_owner": previous.to_json() if previous else None,
            "diffs": [d.to_json() for d in self.diffs],
            "desired": self.desired.spec if self.desired else None,
        }


@dataclass(frozen=True)
class SourceInfo:
    """A repository the plan read: identity, how it was named, the ref and commit, the files."""

    repo: str
    location: str
    ref: str
    commit: str | None
    files: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "location": self.location,
            "ref": self.ref,
            "commit": self.commit,
            "files": list(self.files),
        }


@dataclass(frozen=True)
class Summary:
    add: int
    change: int
    destroy: int
    adopt: int = 0

    @property
    def total(self) -> int:
        return self.add + self.change + self.destroy + self.adopt

    def to_json(self) -> dict[str, int]:
        return {
            "add": self.add,
            "change": self.change,
            "destroy": self.destroy,
            "adopt": self.adopt,
        }


@dataclass(frozen=True)
class PlannedStep:
    """A build or push step apply would run (`run`) or skip because its inputs are unchanged
    since it last ran (`unchanged`). A step after one that runs is `run` too: its inputs are
    known only after the build."""

    file: str
    name: str
    id: str | None
    status: str
    deployments: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "step": self.name,
            "id": self.id,
            "status": self.status,
            "deployments": list(self.deployments),
        }


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    sources: tuple[SourceInfo, ...]
    diagnostics: tuple[Diagnostic, ...]
    observed_revision: int
    unchanged: int = 0
    steps: tuple[PlannedStep, ...] = ()

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    @property
    def summary(self) -> Summary:
        count = {action: 0 for action in Action}
        for change in self.changes:
            count[change.action] += 1
        return Summary(
            count[Action.CREATE], count[Action.UPDATE], count[Action.DELETE], count[Action.ADOPT]
        )

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def to_json(self, *, changes: bool = True) -> dict[str, Any]:
        """The documented form; `changes=False` leaves the list of changes empty (for a
        renderer that writes each change's JSON apart)."""
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "observed_revision": self.observed_revision,
            "sources": [s.to_json() for s in self.sources],
            "summary": self.summary.to_json(),
            "unchanged": self.unchanged,
            "changes": [c.to_json() for c in self.changes] if changes else [],
            "diagnostics": [d.to_json() for d in self.diagnostics],
            "steps": [s.to_json() for s in self.steps],
        }


def diff_values(before: Any, after: Any, path: tuple[PathPart, ...] = ()) -> list[FieldDiff]:
    """Field-level differences between two JSON values, in path order.

    Mappings are compared key by key; lists of equal length item by item; anything else (and
    lists whose length changed) as a whole value. Values differ when their JSON differs, so `1`
    becoming `1.0` or `true` is a change even deep inside a mapping.
    """
    if _same_json(before, after):
        return []
    whole = is_unknown(before) or is_unknown(after)
    if isinstance(before, dict) and isinstance(after, dict) and not whole:
        found: list[FieldDiff] = []
        for key in sorted(set(before) | set(after)):
            if key not in before:
                found.append(FieldDiff((*path, key), None, canonical_json(after[key])))
            elif key not in after:
                found.append(FieldDiff((*path, key), canonical_json(before[key]), None))
            else:
                found.extend(diff_values(before[key], after[key], (*path, key)))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and path:
        found = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            found.extend(diff_values(old, new, (*path, index)))
        return found
    return [FieldDiff(path, canonical_json(before), canonical_json(after))]


def _same_json(before: Any, after: Any) -> bool:
    """Equal as JSON: `==` alone holds `1 == 1.0 == True`, also inside containers."""
    if type(before) is not type(after):
        return False
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(
            _same_json(value, after[key]) for key, value in before.items()
        )
    if isinstance(before, list):
        return len(before) == len(after) and all(
            _same_json(old, new) for old, new in zip(before, after, strict=True)
        )
    return bool(before == after)
