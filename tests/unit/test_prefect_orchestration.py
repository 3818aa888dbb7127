"""Prefect's orchestration rules for flow-run states, as our Prefect API applies them
(reconciler/prefect_api/orchestration.py): pure decisions, no server."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from reconciler.model.runs import FlowRun, RunState, StateChange
from reconciler.prefect_api.orchestration import (
    ABORT,
    ACCEPT,
    PAUSE_NOT_SUPPORTED,
    REJECT,
    WAIT,
    orchestrate,
)

NOW = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)


def run(state: RunState = RunState.PENDING, **fields: Any) -> FlowRun:
    base = FlowRun(
        id="run-1",
        name="amber-otter",
        deployment="etl/daily",
        flow_name="etl",
        pool="local",
        queue="default",
        state=state,
        state_message=None,
        scheduled_time=0.0,
        parameters={},
        job_variables={},
        worker="w1",
        infrastructure_id=None,
        exit_code=None,
        created_at="2026-05-01T11:00:00+00:00",
        updated_at="2026-05-01T11:00:00+00:00",
        history=(StateChange(state, "2026-05-01T11:00:00+00:00"),),
    )
    return dataclasses.replace(base, **fields)


def running(run_count: int = 1, retries: int | None = None, delay: float = 0) -> FlowRun:
    policy = {"retries": retries, "retry_delay": delay} if retries is not None else None
    return run(
        RunState.RUNNING,
        run_count=run_count,
        empirical_policy=policy,
        start_time="2026-05-01T11:30:00+00:00",
        prefect_state={"id": "s1", "type": "RUNNING", "name": "Running", "state_details": {}},
    )


def state(state_type: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": state_type, "name": name, "state_details": {"transition_id": "t1"}, **extra}


def test_running_from_pending_is_accepted_counts_the_run_and_sets_the_start_time() -> None:
    result = orchestrate(run(RunState.PENDING), state("RUNNING", "Running"), NOW)

    assert result.status == ACCEPT
    assert result.details == {"type": "accept_details"}
    assert result.state["state_details"] == {"transition_id": "t1", "flow_run_id": "run-1"}
    assert result.state["id"] and result.state["timestamp"].startswith("2026-05-01T12:00:00")
    update = result.update
    assert update is not None
    assert (update.state, update.state_name, update.run_count) == (RunState.RUNNING, "Running", 1)
    assert update.start_time is not None and update.start_time.startswith("2026-05-01T12:00")


def test_running_from_scheduled_is_accepted_too() -> None:
    result = orchestrate(run(RunState.SCHEDULED), state("RUNNING"), NOW)
    assert result.status == ACCEPT and result.state["name"] == "Running"


def test_a_failure_within_the_retries_is_rejected_with_awaiting_retry_and_stays_running() -> None:
    result = orchestrate(
        running(run_count=1, retries=1, delay=30), state("FAILED", "Failed", message="boom"), NOW
    )

    assert result.status == REJECT
    assert result.details["type"] == "reject_details"
    assert (result.state["type"], result.state["name"]) == ("SCHEDULED", "AwaitingRetry")
    due = datetime.datetime.fromisoformat(result.state["state_details"]["scheduled_time"])
    assert due == NOW + datetime.timedelta(seconds=30)
    update = result.update
    assert update is not None
    assert (update.state, update.state_name) == (RunState.RUNNING, "AwaitingRetry")
    assert update.end_time is None


def test_running_again_after_awaiting_retry_waits_for_its_time_then_counts_the_rerun() -> None:
    retry = orchestrate(running(run_count=1, retries=1, delay=30), state("FAILED"), NOW).update
    assert retry is not None
    awaiting = dataclasses.replace(
        running(run_count=1, retries=1, delay=30),
        prefect_state=retry.prefect_state,
        state_name=retry.state_name,
    )

    early = orchestrate(awaiting, state("RUNNING"), NOW)
    assert early.status == WAIT
    assert early.details == {
        "type": "wait_details",
        "delay_seconds": 30,
        "reason": "Scheduled time is in the future",
    }
    assert early.update is None

    later = orchestrate(awaiting, state("RUNNING"), NOW + datetime.timedelta(seconds=31))
    assert later.status == ACCEPT
    assert later.update is not None and later.update.run_count == 2
    assert later.update.start_time == "2026-05-01T11:30:00+00:00"  # set once


def test_a_failure_past_the_retries_is_accepted_and_ends_the_run() -> None:
    result = orchestrate(running(run_count=2, retries=1), state("FAILED", message="boom"), NOW)

    assert result.status == ACCEPT
    update = result.update
    assert update is not None
    assert (update.state, update.state_name, update.message) == (RunState.FAILED, "Failed", "boom")
    assert update.end_time is not None
    assert update.history_message == "Failed: boom"


def test_timed_out_stays_failed_with_its_name() -> None:
    result = orchestrate(running(), state("FAILED", "TimedOut", message="too slow"), NOW)
    assert result.update is not None
    assert (result.update.state, result.update.state_name) == (RunState.FAILED, "TimedOut")


def test_completed_crashed_and_cancelled_end_the_run_as_such() -> None:
    for prefect_type, ours in (
        ("COMPLETED", RunState.COMPLETED),
        ("CRASHED", RunState.CRASHED),
        ("CANCELLED", RunState.CANCELLED),
    ):
        result = orchestrate(running(), state(prefect_type), NOW)
        assert result.status == ACCEPT and result.update is not None
        assert result.update.state is ours


def test_a_finished_run_aborts_every_proposal() -> None:
    done = run(RunState.COMPLETED)
    for proposal in ("RUNNING", "FAILED", "COMPLETED"):
        result = orchestrate(done, state(proposal), NOW)
        assert result.status == ABORT and result.update is None
        assert result.details["type"] == "abort_details"
        assert "already finished" in result.details["reason"]
        assert result.state["type"] == "COMPLETED"


def test_while_cancelling_running_is_aborted_and_a_final_state_becomes_cancelled() -> None:
    cancelling = run(RunState.CANCELLING, run_count=1)

    assert orchestrate(cancelling, state("RUNNING"), NOW).status == ABORT

    result = orchestrate(cancelling, state("COMPLETED"), NOW)
    assert result.status == REJECT
    assert (result.state["type"], result.state["name"]) == ("CANCELLED", "Cancelled")
    assert result.update is not None and result.update.state is RunState.CANCELLED


def test_pausing_is_rejected_and_the_current_state_kept() -> None:
    result = orchestrate(running(), state("PAUSED", "Suspended"), NOW)

    assert result.status == REJECT
    assert result.details == {"type": "reject_details", "reason": PAUSE_NOT_SUPPORTED}
    assert (result.state["type"], result.state["name"]) == ("RUNNING", "Running")
    assert result.update is None


def test_a_claimed_run_never_becomes_claimable_through_a_scheduled_or_pending_proposal() -> None:
    for proposal in ("SCHEDULED", "PENDING"):
        result = orchestrate(running(), state(proposal, "NotReady"), NOW)
        assert result.status == ACCEPT and result.update is not None
        assert result.update.state is RunState.RUNNING
        assert result.update.state_name == "NotReady"


def test_a_run_reconciler_moved_is_shown_with_its_own_state() -> None:
    result = orchestrate(run(RunState.CRASHED, state_message="worker died"), state("RUNNING"), NOW)
    assert result.state["type"] == "CRASHED" and result.state["message"] == "worker died"
