"""A work pool's status, as Prefect's server reports it: PAUSED, READY or NOT_READY.

Place: read side (`reconcile work-pool ls|inspect`). Pure: the caller passes the pool's spec
and the workers known for the pool. Prefect's rules: a paused pool is PAUSED; otherwise it is
READY while at least one of its workers is online (heartbeats within three intervals) and
NOT_READY when none is, including when no worker ever came.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final, Protocol

from reconciler.model.specs import PoolSpec

PAUSED: Final = "PAUSED"
READY: Final = "READY"
NOT_READY: Final = "NOT_READY"


class Worker(Protocol):
    """What the status needs of a worker: whether it is online at `now` (epoch seconds)."""

    def is_online(self, now: float) -> bool: ...


def pool_status(pool: PoolSpec, workers: Iterable[Worker], now: float | None = None) -> str:
    if pool.paused:
        return PAUSED
    at = time.time() if now is None else now
    return READY if any(worker.is_online(at) for worker in workers) else NOT_READY
