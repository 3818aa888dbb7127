"""What the daemon knows of each repository, as written to the store (`repo_status`).

States, after Argo CD's and Flux's vocabulary:

    Progressing  a new commit is being applied
    Synced       the store matches the last applied commit
    OutOfSync    objects were changed or deleted out of band (drift) and self-heal is off
    Error        something that may pass (a fetch, a step, the store): retried with backoff
    Stalled      the commit's files are invalid or the plan was refused: nothing is retried
                 until the commit changes; what was applied before stays

Also the retry schedule: 5 s doubling to a cap of 5 minutes, each delay with +-10 % jitter.
"""

from __future__ import annotations

import datetime
import enum
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0
JITTER = 0.1


class State(enum.StrEnum):
    PROGRESSING = "Progressing"
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    ERROR = "Error"
    STALLED = "Stalled"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def in_seconds_iso(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True)
class RepoStatus:
    name: str
    source: str
    branch: str
    state: State = State.PROGRESSING
    fetched_commit: str | None = None
    applied_commit: str | None = None
    stalled_commit: str | None = None
    message: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    last_attempt_at: str | None = None
    last_success_at: str | None = None
    next_attempt_at: str | None = None
    failures: int = 0
    drift: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RepoStatus:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["state"] = State(known.get("state", State.PROGRESSING))
        known["drift"] = list(known.get("drift") or [])
        return cls(**known)

    def with_(self, **changes: Any) -> RepoStatus:
        return replace(self, **changes)


def retry_delay(failures: int, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after `failures` failures in a row (1 or more)."""
    base = min(FIRST_RETRY_SECONDS * float(2 ** max(failures - 1, 0)), MAX_RETRY_SECONDS)
    spread: float = (rng or random.Random()).uniform(-JITTER, JITTER)
    return base * (1 + spread)
