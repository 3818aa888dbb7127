"""Real Prefect flows, started as a worker starts them (`python -m prefect.engine` with
PREFECT__FLOW_RUN_ID), against our Prefect API served on 127.0.0.1: the run's final state
comes from Prefect's engine, and its task runs, logs, artifacts and subflows are recorded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reconciler.model.prefect_records import FlowRunFilter
from reconciler.model.runs import RunState
from tests.prefect_api.conftest import Harness

pytestmark = pytest.mark.prefect


def test_a_flow_with_tasks_a_subflow_logs_a_variable_a_secret_and_an_artifact(
    harness: Harness, tmp_path: Path
) -> None:
    check_the_pipeline_flow(harness, tmp_path)


@pytest.mark.postgres
def test_the_same_flow_recorded_in_postgresql(postgres_harness: Harness, tmp_path: Path) -> None:
    check_the_pipeline_flow(postgres_harness, tmp_path)


def check_the_pipeline_flow(harness: Harness, tmp_path: Path) -> None:
    with harness.store.transaction() as tx:
        tx.set_variable("greeting", "hello")
        tx.set_block("secret", "api-key", {"value": "s3cr3t-value"})
    deployment = harness.deploy("pipeline", "pipeline.py:pipeline")
    run = harness.claimed_run(deployment, "pipeline", count=3, marker=str(tmp_path / "m"))

    done = harness.run_engine(run.id)

    assert done.returncode == 0, done.output
    harness.settle()
    final = harness.store.get_run(run.id)
    assert final is not None
    assert (final.state, final.state_name, final.run_count) == (RunState.COMPLETED, "Completed", 1)
    assert final.start_time and final.end_time
    assert "Running" in [change.message for change in final.history]

    tasks = harness.store.task_runs(run.id)
    by_name = {task.name: task for task in tasks}
    doubles = [task for task in tasks if task.task_key.startswith("double")]
    assert len(doubles) == 3
    assert all(task.state_name == "Completed" for task in doubles)
    flaky = next(task for name, task in by_name.items() if name.startswith("flaky"))
    assert (flaky.state_name, flaky.run_count, flaky.retries_used) == ("Completed", 2, 1)
    history = [state.name for state in harness.store.task_run_states(flaky.id)]
    assert history == ["Pending", "Running", "Retrying", "Completed"]

    children = harness.store.filter_flow_runs(FlowRunFilter(parent_task_run_ids=None))
    subflows = [r for r in children if r.parent_task_run_id is not None]
    assert len(subflows) == 1
    subflow = subflows[0]
    assert (subflow.flow_name, subflow.state, subflow.worker) == (
        "child",
        RunState.COMPLETED,
        run.worker or "worker-1",
    )
    assert (subflow.deployment, subflow.pool, subflow.queue) == ("", "", "")
    placeholder = harness.store.get_task_run(subflow.parent_task_run_id or "")
    assert placeholder is not None and placeholder.flow_run_id == run.id

    logs = harness.store.run_logs(run.id)
    prefect_lines = [line for line in logs if line.stream == "prefect"]
    assert any("starting with 3" in line.line for line in prefect_lines)
    assert any(line.level == logging.WARNING and "a warning" in line.line for line in prefect_lines)
    assert any("greeting=hello secret-length=12" in line.line for line in prefect_lines)
    warnings = harness.store.run_logs(run.id, min_level=logging.WARNING)
    assert warnings and all((line.level or 0) >= logging.WARNING for line in warnings)
    assert any("child got 5" in line.line for line in harness.store.run_logs(subflow.id))

    (artifact,) = harness.store.artifacts(run.id)
    assert (artifact.key, artifact.type) == ("report", "markdown")
    assert "all good" in str(artifact.data)


def test_a_flow_that_raises_is_failed_though_the_process_exits_0(harness: Harness) -> None:
    run = harness.claimed_run(harness.deploy("broken", "pipeline.py:broken"), "broken")

    done = harness.run_engine(run.id)

    assert done.returncode == 0, done.output
    final = harness.store.get_run(run.id)
    assert final is not None and final.state is RunState.FAILED
    assert "the flow broke" in (final.state_message or "")


def test_flow_retries_fail_once_then_complete(harness: Harness, tmp_path: Path) -> None:
    run = harness.claimed_run(
        harness.deploy("second-time-lucky", "pipeline.py:second_time_lucky"), "second-time-lucky"
    )

    done = harness.run_engine(run.id, ATTEMPTS_FILE=str(tmp_path / "attempts"))

    assert done.returncode == 0, done.output
    final = harness.store.get_run(run.id)
    assert final is not None
    assert (final.state, final.run_count) == (RunState.COMPLETED, 2)
    names = [change.message or "" for change in final.history]
    assert any(name.startswith("AwaitingRetry") for name in names)


def test_a_flow_over_its_timeout_is_failed_timed_out(harness: Harness) -> None:
    run = harness.claimed_run(harness.deploy("too-slow", "pipeline.py:too_slow"), "too-slow")

    done = harness.run_engine(run.id)

    assert done.returncode == 0, done.output
    final = harness.store.get_run(run.id)
    assert final is not None
    assert (final.state, final.state_name) == (RunState.FAILED, "TimedOut")


def test_an_ad_hoc_flow_call_is_recorded_when_the_api_allows_it(adhoc_harness: Harness) -> None:
    done = adhoc_harness.run_python(["-c", "from pipeline import child; print(child(4))"])

    assert done.returncode == 0, done.output
    assert "8" in done.output.split()
    adhoc_harness.settle()
    (run,) = adhoc_harness.store.filter_flow_runs(FlowRunFilter())
    assert (run.flow_name, run.state, run.run_count) == ("child", RunState.COMPLETED, 1)
    assert (run.deployment, run.pool, run.worker, run.parent_task_run_id) == ("", "", None, None)
    (task,) = adhoc_harness.store.task_runs(run.id)
    assert task.task_key.startswith("double") and task.state_name == "Completed"
