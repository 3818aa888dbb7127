"""Which runs a claim takes: the decision, shared by every store backend.

A backend reads, inside its claim transaction, the pool, its queues, the active runs and the
waiting candidates; these functions decide, in Prefect's order (queue priority, lower first,
then scheduled time), which candidates become PENDING and which are CANCELLED by their
deployment's CANCEL_NEW limit. Keeping the decision here makes the backends differ only in how
they read and lock, never in what a claim means.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.specs import PoolSpec, QueueSpec, deployment_concurrency

CANCEL_NEW = "CANCEL_NEW"
DEPLOYMENT_LIMIT_REACHED = "Deployment concurrency limit reached."


@dataclass
class ClaimBudget:
    """How many runs a claim may take: in all (`total`), and per open queue (`queue_slots`,
    None for no limit); `priorities` of the open queues."""

    total: int
    queue_slots: dict[str, int | None] = field(default_factory=dict)
    priorities: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.total <= 0 or not self.queue_slots


def claim_budget(
    pool_spec: Mapping[str, Any],
    queue_specs: Iterable[tuple[str, str]],
    active_by_queue: Mapping[str, int],
    *,
    limit: int,
    wanted_queues: set[str] | None,
) -> ClaimBudget:
    """The budget from the pool's spec, its queues' (name, spec JSON), and the count of
    PENDING/RUNNING/CANCELLING runs per queue. A paused pool or queue has no slot."""
    pool = PoolSpec.from_spec(pool_spec)
    if pool.paused:
        return ClaimBudget(0)
    total = limit
    if pool.concurrency_limit is not None:
        total = min(total, max(0, pool.concurrency_limit - sum(active_by_queue.values())))
    budget = ClaimBudget(total)
    for name, spec_text in queue_specs:
        queue = QueueSpec.from_spec(json.loads(spec_text))
        if queue.paused or (wanted_queues is not None and name not in wanted_queues):
            continue
        budget.queue_slots[name] = (
            None
            if queue.concurrency_limit is None
            else max(0, queue.concurrency_limit - active_by_queue.get(name, 0))
        )
        budget.priorities[name] = queue.priority
    return budget


def deployment_limit(spec_text: str) -> tuple[int | None, str | None]:
    """A deployment's concurrency limit and collision strategy, from its spec JSON."""
    return deployment_concurrency(json.loads(spec_text))


def choose_runs(
    candidates: Iterable[tuple[str, str, str]],
    budget: ClaimBudget,
    limits: Mapping[str, tuple[int | None, str | None]],
    active_by_deployment: Mapping[str, int],
) -> tuple[list[str], list[str]]:
    """From (id, queue, deployment) candidates in scheduled order, the ids to claim and the
    ids to cancel (over a CANCEL_NEW deployment limit). With ENQUEUE a run over its
    deployment's limit waits, and so does a run whose queue has no slot left."""
    slots = dict(budget.queue_slots)
    running = dict(active_by_deployment)
    ordered = sorted(
        (run for run in candidates if run[1] in slots),
        key=lambda run: budget.priorities[run[1]],  # stable: scheduled time within a priority
    )
    chosen: list[str] = []
    refused: list[str] = []
    for run_id, queue, deployment in ordered:
        if len(chosen) >= budget.total:
            break
        free = slots[queue]
        if free is not None and free <= 0:
            continue
        limit_of_deployment, strategy = limits.get(deployment, (None, None))
        if limit_of_deployment is not None:
            if running.get(deployment, 0) >= limit_of_deployment:
                if strategy == CANCEL_NEW:
                    refused.append(run_id)
                continue  # ENQUEUE: it waits for a slot of its deployment
            running[deployment] = running.get(deployment, 0) + 1
        if free is not None:
            slots[queue] = free - 1
        chosen.append(run_id)
    return chosen, refused
