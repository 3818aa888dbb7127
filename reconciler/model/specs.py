"""Typed specs: the frozen values code outside the spec boundary reads (model, shared by all).

A resource's spec is stored, hashed and diffed as a JSON object (`Resource.spec_json`, see
reconciler/model/resources.py): that dict is the canonical form, and plans show it. Everything that
*reads* a spec (scheduler, worker, claims, CLI, Prefect API, pools) reads one of these values
instead, decoded once per resource by `Resource.deployment_spec()`, `pool_spec()` or
`queue_spec()`: `DeploymentSpec`, `PoolSpec`, `QueueSpec`, and inside a deployment its
`ScheduleSpec`s and pull `StepSpec`s. String keys of a spec appear only here and where specs
are written (reconciler/spec/, reconciler/pools/manual.py) and stored (the store backends).

Decoding rules: a key the class does not know is kept in `extra` (so `to_spec()` gives the
same dict back, and a store written by a newer version keeps its keys), a missing optional key
takes Prefect's default, and a missing or mistyped required key raises `SpecError`.

Pull steps carry where they were written (`StepSpec.position`): the build records each step's
file, line and column under `POSITIONS_KEY` inside the stored spec JSON. That key is not part
of the spec: `Resource.spec`, its content hash and therefore plans and diffs never see it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self, TypeVar

from reconciler.core.diagnostics import Location

POSITIONS_KEY = "$positions"
"""Where the stored spec JSON keeps source positions: `{"pull_steps": [[file, line, column] |
null, ...]}`, one entry per pull step. Sorted first by canonical JSON; ignored by hash and plan."""

UNKNOWN_MARKER_KEY = "$unknown"
"""How a spec writes a value only a build step produces: `{"$unknown": "known after build"}`.
A plan may hold such values; decoding reads one as a missing key (never stored: apply
writes specs after their build steps ran)."""

DEFAULT_QUEUE = "default"
DEFAULT_POOL_TYPE = "process"
DEFAULT_QUEUE_PRIORITY = 1
STEP_RESERVED_KEYS = ("id", "requires")

_T = TypeVar("_T")


class SpecError(ValueError):
    """A stored spec lacks a key every reader needs, or holds a value of the wrong type."""


# --- steps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    """One step as written: its name and its body (keyword arguments, plus the reserved
    `id` and `requires`). The body is kept as written, so a stored pull step is exactly
    what Prefect would store. `position` is where it was written, when known (a stored
    pull step; not part of the step's value)."""

    name: str
    body: dict[str, Any] = field(hash=False)
    position: Location | None = field(default=None, compare=False)

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any], position: Location | None = None) -> Self:
        """A single-key mapping `{name: body}` (the schema checked the shape at plan time)."""
        if len(raw) != 1:
            raise SpecError(f"a step is a mapping with one key, not {sorted(raw)}")
        ((name, body),) = raw.items()
        if body is not None and not isinstance(body, Mapping):
            raise SpecError(f'step "{name}": its body is {_name(type(body))}, not a mapping')
        return cls(str(name), dict(body or {}), position)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.body.items() if k not in STEP_RESERVED_KEYS}

    @property
    def id(self) -> str | None:
        step_id = self.body.get("id")
        return step_id if isinstance(step_id, str) else None

    @property
    def requires(self) -> tuple[str, ...]:
        requires = self.body.get("requires")
        if isinstance(requires, str):
            return (requires,)
        return tuple(requires or ())

    def argument(self, name: str) -> Any:
        """One keyword argument as written (None when absent)."""
        return self.body.get(name) if name not in STEP_RESERVED_KEYS else None

    def with_arguments(self, **arguments: Any) -> StepSpec:
        """The same step (and position) with some keyword arguments set."""
        return replace(self, body={**copy.deepcopy(self.body), **arguments})

    def to_json(self) -> dict[str, Any]:
        return {self.name: copy.deepcopy(self.body)}


def encode_position(location: Location) -> list[Any]:
    return [location.file, location.line, location.column]


def _decode_position(raw: Any) -> Location | None:
    if not isinstance(raw, list) or len(raw) != 3 or not isinstance(raw[0], str):
        return None  # unknown shape (or null: a generated step): no position
    line, column = raw[1], raw[2]
    return Location(
        raw[0], line if isinstance(line, int) else None, column if isinstance(column, int) else None
    )


# --- schedules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule of a deployment, as reconciler/prefect_rules/schedules.py writes it. `raw`
    is the stored mapping: a schedule's identity is a digest of it (scheduling/fire_times.py)."""

    type: str
    raw: Mapping[str, Any] = field(hash=False, repr=False)
    timezone: str | None = None
    active: bool = True
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)
    slug: str | None = None
    cron: str | None = None
    day_or: bool = True
    interval_seconds: float | None = None
    anchor_date: str | None = None
    rrule: Any = None

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> Self:
        kind = _required(raw, "type", str, "schedule")
        return cls(
            type=kind,
            raw=raw,
            timezone=_optional(raw, "timezone", str, "schedule"),
            active=bool(raw.get("active", True)),
            parameters=_mapping(raw, "parameters", "schedule"),
            slug=_optional(raw, "slug", str, "schedule"),
            cron=_optional(raw, "cron", str, "schedule"),
            day_or=bool(raw.get("day_or", True)),
            interval_seconds=_number(raw, "interval_seconds", "schedule"),
            anchor_date=_optional(raw, "anchor_date", str, "schedule"),
            rrule=raw.get("rrule"),
        )


# --- deployments ----------------------------------------------------------------------------

DEPLOYMENT_FIELDS = (
    "name",
    "flow_name",
    "entrypoint",
    "path",
    "flow_path",
    "description",
    "version",
    "tags",
    "parameters",
    "parameter_openapi_schema",
    "enforce_parameter_schema",
    "paused",
    "schedules",
    "concurrency_limit",
    "concurrency_options",
    "work_pool_name",
    "work_queue_name",
    "job_variables",
    "pull_steps",
    "triggers",
    "sensitive_job_variables",
)
"""A stored deployment spec's fields, in the order Prefect lists a deployment's."""
_DEPLOYMENT_KEYS = frozenset({*DEPLOYMENT_FIELDS, POSITIONS_KEY})


@dataclass(frozen=True)
class DeploymentSpec:
    """A deployment as stored: what the scheduler, the worker and the APIs read."""

    name: str
    flow_name: str
    entrypoint: str
    path: str | None = None
    flow_path: str | None = None
    description: str | None = None
    version: str | None = None
    tags: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)
    parameter_openapi_schema: Mapping[str, Any] = field(default_factory=dict, hash=False)
    enforce_parameter_schema: bool = True
    paused: bool = False
    schedules: tuple[ScheduleSpec, ...] = ()
    concurrency_limit: int | None = None
    collision_strategy: str | None = None
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    job_variables: Mapping[str, Any] = field(default_factory=dict, hash=False)
    pull_steps: tuple[StepSpec, ...] = ()
    triggers: tuple[Any, ...] | None = None
    sensitive_job_variables: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Decode a stored deployment spec (positions included when `spec` has them)."""
        what = "deployment"
        limit, strategy = deployment_concurrency(spec)
        triggers = spec.get("triggers")
        return cls(
            name=_required(spec, "name", str, what),
            flow_name=_required(spec, "flow_name", str, what),
            entrypoint=_required(spec, "entrypoint", str, what),
            path=_optional(spec, "path", str, what),
            flow_path=_optional(spec, "flow_path", str, what),
            description=_optional(spec, "description", str, what),
            version=_text(spec.get("version")),
            tags=tuple(str(tag) for tag in _sequence(spec, "tags", what)),
            parameters=_mapping(spec, "parameters", what),
            parameter_openapi_schema=_mapping(spec, "parameter_openapi_schema", what),
            enforce_parameter_schema=bool(spec.get("enforce_parameter_schema", True)),
            paused=bool(spec.get("paused")),
            schedules=tuple(ScheduleSpec.from_spec(s) for s in _sequence(spec, "schedules", what)),
            concurrency_limit=limit,
            collision_strategy=strategy,
            work_pool_name=_optional(spec, "work_pool_name", str, what),
            work_queue_name=_optional(spec, "work_queue_name", str, what),
            job_variables=_mapping(spec, "job_variables", what),
            pull_steps=_pull_steps(spec),
            triggers=tuple(triggers) if isinstance(triggers, list) else None,
            sensitive_job_variables=tuple(
                str(p) for p in _sequence(spec, "sensitive_job_variables", what)
            ),
            extra={k: v for k, v in spec.items() if k not in _DEPLOYMENT_KEYS},
        )

    @property
    def queue(self) -> str:
        """The queue its runs go to: the pool's default queue when none is named."""
        return self.work_queue_name or DEFAULT_QUEUE

    def active_schedules(self) -> tuple[ScheduleSpec, ...]:
        """The schedules that make runs (none while the deployment is paused)."""
        return () if self.paused else tuple(s for s in self.schedules if s.active)


def deployment_concurrency(spec: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """Only a deployment's concurrency limit and collision strategy: what a claim reads of
    each candidate's deployment, inside its write transaction (cheaper than decoding it all)."""
    options = spec.get("concurrency_options")
    strategy = options.get("collision_strategy") if isinstance(options, Mapping) else None
    limit = _optional(spec, "concurrency_limit", int, "deployment")
    return limit, strategy if isinstance(strategy, str) else None


def _pull_steps(spec: Mapping[str, Any]) -> tuple[StepSpec, ...]:
    steps = _sequence(spec, "pull_steps", "deployment")
    stored = spec.get(POSITIONS_KEY)
    positions = stored.get("pull_steps") if isinstance(stored, Mapping) else None
    if not isinstance(positions, list) or len(positions) != len(steps):
        positions = [None] * len(steps)  # none stored (an older store), or not for these steps
    decoded = []
    for step, position in zip(steps, positions, strict=True):
        if not isinstance(step, Mapping):
            raise SpecError(f"deployment spec: a pull step is {_name(type(step))}, not a mapping")
        decoded.append(StepSpec.from_spec(step, _decode_position(position)))
    return tuple(decoded)


def with_pull_step_positions(
    spec: dict[str, Any], positions: Sequence[Location | None]
) -> dict[str, Any]:
    """The spec to store: `spec` with where each of its pull steps was written (nothing is
    added when no step has a position)."""
    if not any(positions):
        return spec
    encoded = [encode_position(p) if p is not None else None for p in positions]
    return {**spec, POSITIONS_KEY: {"pull_steps": encoded}}


# --- pools and queues -----------------------------------------------------------------------

_POOL_KEYS = ("name", "type", "description", "paused", "concurrency_limit", "base_job_template")
_QUEUE_KEYS = ("pool", "name", "description", "priority", "concurrency_limit", "paused")


@dataclass(frozen=True)
class PoolSpec:
    """A work pool as stored (work-pools.yaml, or made by hand)."""

    name: str
    type: str = DEFAULT_POOL_TYPE
    description: str | None = None
    paused: bool = False
    concurrency_limit: int | None = None
    base_job_template: Mapping[str, Any] = field(default_factory=dict, hash=False)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        what = "work pool"
        return cls(
            name=_required(spec, "name", str, what),
            type=_optional(spec, "type", str, what) or DEFAULT_POOL_TYPE,
            description=_optional(spec, "description", str, what),
            paused=bool(spec.get("paused")),
            concurrency_limit=_optional(spec, "concurrency_limit", int, what),
            base_job_template=_mapping(spec, "base_job_template", what),
            extra={k: v for k, v in spec.items() if k not in _POOL_KEYS},
        )

    def to_spec(self) -> dict[str, Any]:
        """The stored form (the keys every pool spec has, then any kept from decoding)."""
        return {
            "name": self.name,
            "type": self.type,
            "description": self.description,
            "paused": self.paused,
            "concurrency_limit": self.concurrency_limit,
            "base_job_template": copy.deepcopy(dict(self.base_job_template)),
            **copy.deepcopy(dict(self.extra)),
        }


@dataclass(frozen=True)
class QueueSpec:
    """A work queue as stored: its pool, name and place in the pool's priority order."""

    pool: str
    name: str
    description: str | None = None
    priority: int = DEFAULT_QUEUE_PRIORITY
    concurrency_limit: int | None = None
    paused: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        what = "work queue"
        priority = _optional(spec, "priority", int, what)
        return cls(
            pool=_required(spec, "pool", str, what),
            name=_required(spec, "name", str, what),
            description=_optional(spec, "description", str, what),
            priority=DEFAULT_QUEUE_PRIORITY if priority is None else priority,
            concurrency_limit=_optional(spec, "concurrency_limit", int, what),
            paused=bool(spec.get("paused")),
            extra={k: v for k, v in spec.items() if k not in _QUEUE_KEYS},
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "name": self.name,
            "description": self.description,
            "priority": self.priority,
            "concurrency_limit": self.concurrency_limit,
            "paused": self.paused,
            **copy.deepcopy(dict(self.extra)),
        }


# --- decoding helpers -----------------------------------------------------------------------


def is_unknown(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and UNKNOWN_MARKER_KEY in value


def _required(spec: Mapping[str, Any], key: str, kind: type[_T], what: str) -> _T:
    value = spec.get(key)
    if value is None:
        raise SpecError(f'{what} spec has no "{key}"')
    return _typed(value, key, kind, what)


def _optional(spec: Mapping[str, Any], key: str, kind: type[_T], what: str) -> _T | None:
    value = spec.get(key)
    return None if value is None or is_unknown(value) else _typed(value, key, kind, what)


def _typed(value: Any, key: str, kind: type[_T], what: str) -> _T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f'{what} spec: "{key}" is {_name(type(value))}, not {_name(kind)}')
    return value


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", list: "a list"}


def _name(kind: type) -> str:
    return _TYPE_NAMES.get(kind, "a mapping" if issubclass(kind, Mapping) else kind.__name__)


def _mapping(spec: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    value = spec.get(key)
    if value is None or is_unknown(value):
        return {}
    return _typed(value, key, dict, what)


def _sequence(spec: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = spec.get(key)
    if value is None or is_unknown(value):
        return []
    return _typed(value, key, list, what)


def _number(spec: Mapping[str, Any], key: str, what: str) -> float | None:
    value = spec.get(key)
    if value is None or is_unknown(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f'{what} spec: "{key}" is {_name(type(value))}, not a number')
    return float(value)


def _text(value: Any) -> str | None:
    """A version may be written as a number in YAML; it is shown as text."""
    return None if value is None or is_unknown(value) else str(value)
