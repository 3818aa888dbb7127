"""The scheduling policy: how far ahead runs are made, when a run is late and what becomes of it.

Stored once, in the store: the daemon writes the policy of its `daemon.yaml` (`scheduler:`)
at start-up, and every scheduler tick (the daemon's, each worker's, the CLI's after an apply)
reads it from there, so a policy set in one place reaches every process that ticks. A store
where no daemon has written one ticks with the defaults.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from reconciler.scheduling.scheduler import (
    DEFAULT_BUDGET_SECONDS,
    LatePolicy,
    LookAhead,
    TickResult,
    tick,
)
from reconciler.store.base import Store

log = logging.getLogger("reconciler.scheduler")


@dataclass(frozen=True)
class SchedulingPolicy:
    look_ahead: LookAhead = field(default_factory=LookAhead)
    late: LatePolicy = field(default_factory=LatePolicy)
    budget_seconds: float = DEFAULT_BUDGET_SECONDS

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SchedulingPolicy:
        """The policy of `to_json`'s text; a key it does not know (written by a newer version)
        is left out, a missing one takes its default."""
        raw: dict[str, Any] = json.loads(text)
        return cls(
            look_ahead=LookAhead(**_known(raw.get("look_ahead"), LookAhead)),
            late=LatePolicy(**_known(raw.get("late"), LatePolicy)),
            budget_seconds=float(raw.get("budget_seconds", DEFAULT_BUDGET_SECONDS)),
        )


def _known(raw: Any, kind: type) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in (raw or {}).items() if k in names}


def stored_policy(store: Store) -> SchedulingPolicy:
    """The policy in the store, else the defaults (also when what is stored cannot be read:
    a tick must go on)."""
    text = store.scheduling_policy()
    if text is None:
        return SchedulingPolicy()
    try:
        return SchedulingPolicy.from_json(text)
    except (ValueError, TypeError):
        log.warning("the stored scheduling policy cannot be read; ticking with the defaults")
        return SchedulingPolicy()


def store_policy(store: Store, policy: SchedulingPolicy) -> None:
    """Make `policy` the one every tick uses (written only when it differs)."""
    text = policy.to_json()
    if store.scheduling_policy() != text:
        store.set_scheduling_policy(text)


def tick_with_stored_policy(store: Store, *, now: float | None = None) -> TickResult:
    """One scheduler tick under the stored policy: what the daemon, workers and CLI call."""
    policy = stored_policy(store)
    return tick(
        store,
        now=now,
        look=policy.look_ahead,
        late=policy.late,
        budget_seconds=policy.budget_seconds,
    )
