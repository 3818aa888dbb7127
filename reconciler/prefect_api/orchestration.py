"""Prefect's orchestration rules for flow-run states, as Prefect's engine relies on them: what
our Prefect API answers to `POST /flow_runs/{id}/set_state`, and what the run becomes.

Pure: `orchestrate(run, proposed, now)` reads our run and the proposed Prefect state and returns
an `Orchestration`: the answer for the client (status, state, details) and the change to store
(None for none). The store applies it under the run's lock (Store.apply_flow_run_state).

The rules (Prefect 3's server, the part a run meets):
- a run already final: ABORT;
- reconciler is cancelling the run: a proposed Running (or Pending/Scheduled) is ABORTed, a
  proposed final state becomes Cancelled (REJECT with that state);
- Paused/Suspended: REJECT, the current state kept: reconciler does not pause runs;
- Running from Pending, Scheduled, Late or AwaitingRetry: ACCEPT, the run count +1, the start
  time set once; when an AwaitingRetry's time is still ahead: WAIT that long;
- Failed (TimedOut too) while the run count is within the flow's `retries`: REJECT with an
  AwaitingRetry state (Scheduled, at now + retry_delay); our run stays RUNNING, never claimable;
- Completed, Failed, Crashed, Cancelled: ACCEPT, our run ends with that state, end time set.
"""

from __future__ import annotations

import datetime
import math
import uuid
from dataclasses import dataclass
from typing import Any

from reconciler.model.prefect_records import RunStateUpdate, prefect_state_of
from reconciler.model.runs import FlowRun, RunState

ACCEPT = "ACCEPT"
REJECT = "REJECT"
ABORT = "ABORT"
WAIT = "WAIT"

PAUSE_NOT_SUPPORTED = "pausing is not supported by reconciler"
AWAITING_RETRY = "AwaitingRetry"

FINAL_TYPES = {
    "COMPLETED": RunState.COMPLETED,
    "FAILED": RunState.FAILED,
    "CRASHED": RunState.CRASHED,
    "CANCELLED": RunState.CANCELLED,
}
"""Prefect's final state types and our run state for each."""
_DEFAULT_NAMES = {
    "SCHEDULED": "Scheduled",
    "PENDING": "Pending",
    "RUNNING": "Running",
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CRASHED": "Crashed",
    "CANCELLED": "Cancelled",
    "CANCELLING": "Cancelling",
    "PAUSED": "Paused",
}


@dataclass(frozen=True)
class Orchestration:
    """What set_state answers, and what to store (None: the run stays as it is)."""

    status: str
    state: dict[str, Any]
    details: dict[str, Any]
    update: RunStateUpdate | None

    def response(self) -> dict[str, Any]:
        """Prefect's OrchestrationResult JSON."""
        return {"status": self.status, "state": self.state, "details": self.details}


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds")


def _parse(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def current_state(run: FlowRun) -> dict[str, Any]:
    """The run's state as Prefect's State JSON: the last one accepted from Prefect's engine,
    or, when reconciler moved the run since (claim, cancel, crash), one made from ours."""
    if run.prefect_state is not None:
        return dict(run.prefect_state)
    state_type, name = prefect_state_of(run)
    at = run.history[-1].at if run.history else run.updated_at
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"reconciler:{run.id}:{at}:{run.state}")),
        "type": state_type,
        "name": name,
        "timestamp": at,
        "message": run.state_message,
        "data": None,
        "state_details": {"flow_run_id": run.id},
    }


def initial_state(
    proposed: dict[str, Any], run_id: str, now: datetime.datetime | None = None
) -> dict[str, Any]:
    """The proposed state as stored and echoed: a new id and time, its details kept with
    the run's id filled in."""
    now = now or datetime.datetime.now(datetime.UTC)
    state_type = str(proposed.get("type") or "").upper()
    details = dict(proposed.get("state_details") or {})
    details["flow_run_id"] = run_id
    return {
        "id": str(uuid.uuid4()),
        "type": state_type,
        "name": proposed.get("name") or _DEFAULT_NAMES.get(state_type, state_type.title()),
        "timestamp": _iso(now),
        "message": proposed.get("message"),
        "data": proposed.get("data"),
        "state_details": details,
    }


def _update(
    run: FlowRun,
    state: RunState,
    prefect_state: dict[str, Any],
    *,
    run_count: int | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
) -> RunStateUpdate:
    name = str(prefect_state["name"])
    message = prefect_state.get("message")
    return RunStateUpdate(
        state=state,
        state_name=name,
        message=message,
        prefect_state=prefect_state,
        run_count=run.run_count if run_count is None else run_count,
        start_time=start_time or run.start_time,
        end_time=end_time or run.end_time,
        history_message=f"{name}: {message}" if message else name,
    )


def _reject(state: dict[str, Any], reason: str, update: RunStateUpdate | None) -> Orchestration:
    return Orchestration(REJECT, state, {"type": "reject_details", "reason": reason}, update)


def _abort(run: FlowRun, reason: str) -> Orchestration:
    return Orchestration(
        ABORT, current_state(run), {"type": "abort_details", "reason": reason}, None
    )


def _retries(run: FlowRun) -> tuple[int, float]:
    policy = run.empirical_policy or {}
    retries = policy.get("retries") or policy.get("max_retries") or 0
    delay = policy.get("retry_delay") or policy.get("retry_delay_seconds") or 0
    if isinstance(delay, list):  # a task-style list of delays: the first applies
        delay = delay[0] if delay else 0
    return int(retries), float(delay)


def orchestrate(
    run: FlowRun, proposed: dict[str, Any], now: datetime.datetime | None = None
) -> Orchestration:
    """Prefect's answer to proposing `proposed` (Prefect's State JSON) for `run`."""
    now = now or datetime.datetime.now(datetime.UTC)
    state_type = str(proposed.get("type") or "").upper()
    current = current_state(run)
    if run.state.is_final:
        return _abort(run, f"this run has already finished ({current['name']})")
    made = initial_state(proposed, run.id, now)
    if state_type == "PAUSED":
        return _reject(current, PAUSE_NOT_SUPPORTED, None)
    if run.state is RunState.CANCELLING:
        if state_type == "CANCELLED" or state_type in FINAL_TYPES:
            cancelled = made
            if state_type != "CANCELLED":
                cancelled = {
                    **made,
                    "type": "CANCELLED",
                    "name": "Cancelled",
                    "message": "the run was cancelled",
                }
            update = _update(run, RunState.CANCELLED, cancelled, end_time=_iso(now))
            if state_type == "CANCELLED":
                return _accept(cancelled, update)
            return _reject(cancelled, "the run is being cancelled", update)
        return _abort(run, "the run is being cancelled")
    if state_type in FINAL_TYPES:
        return _finish(run, made, current, now)
    if state_type == "RUNNING":
        return _start(run, made, current, now)
    if state_type in ("PENDING", "SCHEDULED"):
        # Prefect's name is kept, our state is not moved: a claimed run never becomes
        # claimable again, and a run made through the API is never claimable at all.
        return _accept(made, _update(run, run.state, made))
    if state_type == "CANCELLING":
        return _accept(made, _update(run, RunState.CANCELLING, made))
    return _reject(current, f"reconciler does not know the state type {state_type!r}", None)


def _accept(state: dict[str, Any], update: RunStateUpdate | None) -> Orchestration:
    return Orchestration(ACCEPT, state, {"type": "accept_details"}, update)


def _start(
    run: FlowRun, made: dict[str, Any], current: dict[str, Any], now: datetime.datetime
) -> Orchestration:
    awaiting = current.get("name") == AWAITING_RETRY
    if awaiting:
        due = _parse((current.get("state_details") or {}).get("scheduled_time"))
        if due is not None and due > now:
            delay = math.ceil((due - now).total_seconds())
            return Orchestration(
                WAIT,
                current,
                {
                    "type": "wait_details",
                    "delay_seconds": delay,
                    "reason": "Scheduled time is in the future",
                },
                None,
            )
    update = _update(
        run,
        RunState.RUNNING,
        made,
        run_count=run.run_count + 1,
        start_time=run.start_time or _iso(now),
    )
    return _accept(made, update)


def _finish(
    run: FlowRun, made: dict[str, Any], current: dict[str, Any], now: datetime.datetime
) -> Orchestration:
    retries, delay = _retries(run)
    if made["type"] == "FAILED" and current["type"] == "RUNNING" and run.run_count <= retries:
        due = now + datetime.timedelta(seconds=delay)
        retry = {
            **made,
            "type": "SCHEDULED",
            "name": AWAITING_RETRY,
            "message": f"Retry {run.run_count}/{retries}",
            "data": None,
            "state_details": {
                **made["state_details"],
                "scheduled_time": _iso(due),
            },
        }
        update = _update(run, RunState.RUNNING, retry)
        return _reject(retry, f"Retrying: run {run.run_count} of {retries + 1} failed", update)
    final = FINAL_TYPES[made["type"]]
    return _accept(made, _update(run, final, made, end_time=_iso(now)))
