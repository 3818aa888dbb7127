"""Events in Prefect's shape for our flow runs' state changes (design notes: "Triggers").

Prefect's server emits one event per accepted flow-run state: `prefect.flow-run.<state name>`
about the resource `prefect.flow-run.<id>`, with the flow, the deployment, the work queue, the
work pool and each tag as related resources (each with its `prefect.resource.role`) and the
transition in the payload. The store writes these events in the same transaction as the state
change (reconciler/store/run_events.py), so a trigger never sees a state the store does not
have, nor misses one it has.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from reconciler.model.prefect_records import (
    FLOW_RUN_PREFIX,
    PREFECT_STATE_OF,
    EventRecord,
    prefect_flow_id,
    stable_id,
)
from reconciler.model.runs import FlowRun, RunState

MESSAGE_LIMIT = 100_000
"""A state message longer than this is cut in the event's resource (Prefect cuts it too)."""


def _state(state: RunState | None, name: str | None, message: str | None) -> Any:
    if state is None:
        return None
    state_type, default_name = PREFECT_STATE_OF[state]
    return {"type": state_type, "name": name or default_name, "message": message or ""}


def flow_run_related(
    run: FlowRun, tags: Sequence[str] = (), pool_type: str | None = None
) -> list[dict[str, Any]]:
    """The related resources of a run's events: flow, deployment, queue, pool, tags."""
    related: list[dict[str, Any]] = [
        {
            "prefect.resource.id": f"prefect.flow.{prefect_flow_id(run.flow_name)}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": run.flow_name,
        }
    ]
    if run.deployment:
        deployment_id = stable_id("deployment", run.deployment)
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{deployment_id}",
                "prefect.resource.role": "deployment",
                "prefect.resource.name": run.deployment.split("/", 1)[-1],
                "reconciler.deployment.key": run.deployment,
            }
        )
    if run.queue:
        queue_id = stable_id("work-queue", f"{run.pool}/{run.queue}")
        related.append(
            {
                "prefect.resource.id": f"prefect.work-queue.{queue_id}",
                "prefect.resource.role": "work-queue",
                "prefect.resource.name": run.queue,
            }
        )
    if run.pool:
        pool: dict[str, Any] = {
            "prefect.resource.id": f"prefect.work-pool.{stable_id('work-pool', run.pool)}",
            "prefect.resource.role": "work-pool",
            "prefect.resource.name": run.pool,
        }
        if pool_type:
            pool["prefect.work-pool.type"] = pool_type
        related.append(pool)
    for tag in sorted(set(tags)):
        related.append(
            {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
        )
    return related


def flow_run_state_event(
    run: FlowRun,
    previous: RunState | None,
    occurred: str,
    *,
    tags: Sequence[str] = (),
    pool_type: str | None = None,
) -> EventRecord:
    """The event of `run` having just entered its current state (from `previous`; None for
    a run just created)."""
    state_type, default_name = PREFECT_STATE_OF[run.state]
    name = run.state_name if run.state_name and run.state is not RunState.LATE else None
    name = name or default_name
    message = (run.state_message or "")[:MESSAGE_LIMIT]
    resource = {
        "prefect.resource.id": f"{FLOW_RUN_PREFIX}{run.id}",
        "prefect.resource.name": run.name,
        "prefect.run-count": str(run.run_count),
        "prefect.state-message": message,
        "prefect.state-name": name,
        "prefect.state-timestamp": occurred,
        "prefect.state-type": state_type,
        "reconciler.deployment.key": run.deployment,
    }
    initial = _state(previous, None, None)
    return EventRecord(
        id=str(uuid.uuid4()),
        occurred=occurred,
        event=f"{FLOW_RUN_PREFIX}{name}",
        resource=resource,
        related=flow_run_related(run, tags, pool_type),
        payload={
            "intended": {"from": initial["type"] if initial else None, "to": state_type},
            "initial_state": initial,
            "validated_state": {"type": state_type, "name": name, "message": message},
        },
    )
