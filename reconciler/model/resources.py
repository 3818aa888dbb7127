"""The objects reconciler manages, as values shared by desired state, observed state and plans.

A `Resource` is a work pool, a work queue or a deployment: its kind, its key, its owner and
its `spec`, the whole JSON-able desired body. The spec is held as canonical JSON text so a
resource is immutable and hashable, two specs compare equal exactly when their text is equal,
and the content hash recorded in the store is the hash of that text.

The stored text may also hold, under `specs.POSITIONS_KEY`, where a deployment's pull steps
were written. That is not part of the spec: `spec`, `view()` and the content hash (the hash of
the text without it) leave it out, so plans and diffs never see it. Code that reads a spec
reads its typed value (`deployment_spec()`, `pool_spec()`, `queue_spec()`, see
reconciler/model/specs.py), decoded once per resource, whether the store or the build made it.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reconciler.model.specs import POSITIONS_KEY, DeploymentSpec, PoolSpec, QueueSpec
from reconciler.model.specs import UNKNOWN_MARKER_KEY as UNKNOWN_MARKER_KEY
from reconciler.model.specs import is_unknown as is_unknown

_Typed = TypeVar("_Typed", DeploymentSpec, PoolSpec, QueueSpec)
_POSITIONS_PREFIX = "{" + json.dumps(POSITIONS_KEY) + ":"


class Kind(enum.Enum):
    """Kinds in dependency order: pools before their queues before the deployments using them,
    then the automations that name them."""

    WORK_POOL = "work_pool"
    WORK_QUEUE = "work_queue"
    DEPLOYMENT = "deployment"
    AUTOMATION = "automation"
    """An automation of automations.yaml: triggers and actions (docs/triggers.md)."""

    @property
    def order(self) -> int:
        return _KIND_ORDER[self]

    @property
    def label(self) -> str:
        return self.value.replace("_", "-")


_KIND_ORDER = {Kind.WORK_POOL: 0, Kind.WORK_QUEUE: 1, Kind.DEPLOYMENT: 2, Kind.AUTOMATION: 3}


@dataclass(frozen=True, order=True)
class Owner:
    """Who wrote an object: a repository identity and the file, relative to its root."""

    repo: str
    file: str

    def __str__(self) -> str:
        return f"{self.repo}:{self.file}"

    def to_json(self) -> dict[str, str]:
        return {"repo": self.repo, "file": self.file}


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
)


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no extra whitespace, UTF-8 kept.

    Written without looking for circular references (a quarter of the cost): the values are
    trees read from files and the store. A value that does hold one recurses until Python
    stops it, and is then written again with the check, which fails as json.dumps does."""
    try:
        text: str = _CANONICAL.encode(value)
    except RecursionError:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text


def content_hash(spec_json: str) -> str:
    return hashlib.sha256(spec_json.encode()).hexdigest()


@dataclass(frozen=True)
class Resource:
    """One managed object. Build it with `Resource.of(...)` from a JSON-able spec."""

    kind: Kind
    key: str
    spec_json: str
    owner: Owner | None
    source_commit: str | None = None
    hash: str = field(default="", compare=False)

    @classmethod
    def of(
        cls,
        kind: Kind,
        key: str,
        spec: dict[str, Any],
        owner: Owner | None,
        source_commit: str | None = None,
    ) -> Resource:
        """`spec` may carry positions under POSITIONS_KEY: stored, but not hashed."""
        if POSITIONS_KEY not in spec:
            text = canonical_json(spec)
            return cls(kind, key, text, owner, source_commit, content_hash(text))
        body = {k: v for k, v in spec.items() if k != POSITIONS_KEY}
        body_text = canonical_json(body)
        if body and min(body) > POSITIONS_KEY:  # sorted first: the stored text, encoded once
            positions = canonical_json(spec[POSITIONS_KEY])
            text = f"{_POSITIONS_PREFIX}{positions},{body_text[1:]}"
        else:
            text = canonical_json(spec)
        return cls(kind, key, text, owner, source_commit, content_hash(body_text))

    def __post_init__(self) -> None:
        if not self.hash:
            # Canonical JSON sorts "$positions" first: only then is there anything to leave out.
            text = self.spec_json
            if text.startswith(_POSITIONS_PREFIX):
                text = canonical_json(self.view())
            object.__setattr__(self, "hash", content_hash(text))

    @property
    def spec(self) -> dict[str, Any]:
        """A fresh copy of the body: callers may not mutate the resource through it."""
        value: dict[str, Any] = json.loads(self.spec_json)
        value.pop(POSITIONS_KEY, None)
        return value

    def view(self) -> Mapping[str, Any]:
        """The body for reading only, parsed once and kept (not copied on every read, as
        `spec` is): nothing in it may be changed. What writes, stores or shows the dict reads it
        (the build, the store backends, the plan's renderers); every other reader reads the
        typed value."""
        parsed: dict[str, Any] | None = self.__dict__.get("_parsed")
        if parsed is None:
            parsed = json.loads(self.spec_json)
            if POSITIONS_KEY in parsed:
                parsed = {k: v for k, v in parsed.items() if k != POSITIONS_KEY}
            object.__setattr__(self, "_parsed", parsed)
        return parsed

    def deployment_spec(self) -> DeploymentSpec:
        """The deployment's typed spec, with its pull steps' positions (decoded once).
        Raises SpecError when the stored spec lacks what every reader needs."""
        return self._typed(Kind.DEPLOYMENT, DeploymentSpec)

    def pool_spec(self) -> PoolSpec:
        return self._typed(Kind.WORK_POOL, PoolSpec)

    def queue_spec(self) -> QueueSpec:
        return self._typed(Kind.WORK_QUEUE, QueueSpec)

    def _typed(self, kind: Kind, decoder: type[_Typed]) -> _Typed:
        if self.kind is not kind:
            raise TypeError(f"{self.kind.label} {self.key} is not a {kind.label}")
        typed = self.__dict__.get("_typed_spec")
        if not isinstance(typed, decoder):
            with_positions = self.spec_json.startswith(_POSITIONS_PREFIX)
            typed = decoder.from_spec(json.loads(self.spec_json) if with_positions else self.view())
            object.__setattr__(self, "_typed_spec", typed)
        return typed

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the parsed body `view` keeps, nor the typed spec."""
        state = dict(self.__dict__)
        state.pop("_parsed", None)
        state.pop("_typed_spec", None)
        return state

    @property
    def ident(self) -> tuple[Kind, str]:
        return (self.kind, self.key)

    @property
    def sort_key(self) -> tuple[int, str]:
        return (self.kind.order, self.key)


def queue_key(pool: str, queue: str) -> str:
    return f"{pool}/{queue}"


def deployment_key(flow_name: str, deployment_name: str) -> str:
    return f"{flow_name}/{deployment_name}"


UNKNOWN_VALUE: dict[str, str] = {UNKNOWN_MARKER_KEY: "known after build"}
