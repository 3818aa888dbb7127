"""`reconcile flow-run inspect|logs` and `reconcile task-run ls`: what a run recorded (CLI:
read commands over the store).

A run of a Prefect flow records, through the Prefect API the worker serves, its task runs
(state, start, end, retries used, cache hit), its subflow runs (runs of their own, linked to
the parent's task run), Prefect's log records with their time and level, and its artifacts.
"""

from __future__ import annotations

import logging
import sys

import click

from reconciler.cli import remote
from reconciler.cli.output import (
    echo_json,
    echo_table,
    open_for_reading,
    output_option,
    user_errors,
)
from reconciler.cli.read import store_option
from reconciler.cli.remote import refuse_both, server_option
from reconciler.cli.runs import _one, _watch, flow_run, run_json
from reconciler.core.terminal_text import printable
from reconciler.model.prefect_records import FlowRunFilter, TaskRunRecord
from reconciler.model.runs import FlowRun, RunLogLine
from reconciler.store import Store

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@click.group("task-run")
def task_run() -> None:
    """Task runs of Prefect flows (recorded from the events their engine sends)."""


@task_run.command("ls")
@click.option("--flow-run", "flow_run_id", required=True, help="The flow run (id or prefix).")
@output_option
@store_option
@server_option
@user_errors
def task_run_ls(
    flow_run_id: str, output: str, store_url: str | None, server_url: str | None = None
) -> None:
    """The task runs of one flow run, in the order they started."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.task_run_ls(server_url, flow_run_id, output)
    store = open_for_reading(store_url)
    try:
        run = _one(store, flow_run_id)
        tasks = store.task_runs(run.id)
    finally:
        store.close()
    if output == "json":
        echo_json([task_json(task) for task in tasks])
        return
    echo_table(TASK_HEADERS, [task_row(task) for task in tasks])


@flow_run.command("inspect")
@click.argument("run_id")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["json", "table"]),
    default="json",
    show_default=True,
    help="JSON (everything), or a summary and the task runs as a table.",
)
@store_option
@server_option
@user_errors
def flow_run_inspect(
    run_id: str, output: str, store_url: str | None, server_url: str | None = None
) -> None:
    """A flow run (by id, id prefix or name): its state and history, task runs, subflow runs
    and artifacts; JSON unless -o table."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.flow_run_inspect(server_url, run_id, output)
    store = open_for_reading(store_url)
    try:
        run = _one(store, run_id)
        details = run_details(store, run)
        tasks = store.task_runs(run.id)
    finally:
        store.close()
    if output == "json":
        echo_json(details)
        return
    click.echo(f"{run.name} ({run.id})")
    click.echo(f"  flow:       {run.flow_name}")
    click.echo(f"  deployment: {run.deployment or '-'}")
    state = run.state.value + (f" ({run.state_name})" if run.state_name else "")
    click.echo(f"  state:      {state}")
    if run.state_message:
        click.echo(f"  message:    {run.state_message.splitlines()[0]}")
    if details["parent_flow_run_id"]:
        click.echo(f"  parent:     {details['parent_flow_run_id']}")
    for child in subflow_runs(store_url, tasks):
        click.echo(f"  subflow:    {child.name} ({child.id}) {child.state.value}")
    if tasks:
        click.echo("")
        echo_table(TASK_HEADERS, [task_row(task) for task in tasks])


@flow_run.command("logs")
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@click.option(
    "--level",
    type=click.Choice(LEVELS, case_sensitive=False),
    help="Only Prefect's log records at this level or above (no process output).",
)
@store_option
@server_option
@user_errors
def flow_run_logs(
    run_id: str,
    follow: bool,
    level: str | None,
    store_url: str | None,
    server_url: str | None = None,
) -> None:
    """The run's log on stdout, one line each: `TIME stdout|stderr LINE` for its process's
    output, `TIME LEVEL LINE` for Prefect's log records."""
    if server_url:
        refuse_both(store_url, server_url)
        sys.exit(remote.flow_run_logs(server_url, run_id, follow, level))
    min_level = logging.getLevelName(level.upper()) if level else None
    store = open_for_reading(store_url)
    try:
        run = _one(store, run_id)
        if not follow:
            for line in store.run_logs(run.id, min_level=min_level):
                echo_log_line(line)
    finally:
        store.close()
    if follow:
        sys.exit(_watch(store_url, run.id, min_level))


def echo_log_line(line: RunLogLine) -> None:
    """One line of a run's log, on stdout (a pipe gets all of it, in order)."""
    click.echo(log_line_text(line.at, line.stream, line.level, line.line))


def log_line_text(at: str, stream: str, level: int | None, text: str) -> str:
    """`TIME MARKER TEXT`: the time (ISO 8601 UTC) and, for the process's output, its
    stream (`stdout`, `stderr`), for Prefect's records their level (`INFO`...). Each stored
    line is one line here: a control character or a line break inside it is escaped."""
    marker = stream if level is None else str(logging.getLevelName(level))
    return f"{at} {marker:<8} {printable(text)}"


TASK_HEADERS = ["name", "state", "start", "end", "retries used", "cache hit"]


def task_row(task: TaskRunRecord) -> list[object]:
    state = task.state_type or "-"
    if task.state_name and task.state_name.upper() != state:
        state += f" ({task.state_name})"
    return [
        task.name,
        state,
        task.start_time or "-",
        task.end_time or "-",
        task.retries_used,
        "yes" if task.cache_hit else "no",
    ]


def task_json(task: TaskRunRecord) -> dict[str, object]:
    return {
        "id": task.id,
        "flow_run_id": task.flow_run_id,
        "name": task.name,
        "task_key": task.task_key,
        "dynamic_key": task.dynamic_key,
        "state": task.state_type,
        "state_name": task.state_name,
        "state_message": task.state_message,
        "start_time": task.start_time,
        "end_time": task.end_time,
        "run_count": task.run_count,
        "retries_used": task.retries_used,
        "cache_hit": task.cache_hit,
    }


def children_of(store: Store, tasks: list[TaskRunRecord]) -> list[FlowRun]:
    """The subflow runs whose placeholder task runs are among `tasks`."""
    if not tasks:
        return []
    wanted = FlowRunFilter(parent_task_run_ids=tuple(t.id for t in tasks), newest_first=False)
    return store.filter_flow_runs(wanted)


def subflow_runs(store_url: str | None, tasks: list[TaskRunRecord]) -> list[FlowRun]:
    store = open_for_reading(store_url)
    try:
        return children_of(store, tasks)
    finally:
        store.close()


def run_details(store: Store, run: FlowRun) -> dict[str, object]:
    """The run's JSON, with its task runs, subflow runs, parent and artifacts."""
    tasks = store.task_runs(run.id)
    children = children_of(store, tasks)
    parent_id = None
    if run.parent_task_run_id:
        placeholder = store.get_task_run(run.parent_task_run_id)
        parent_id = placeholder.flow_run_id if placeholder else None
    return {
        **run_json(run),
        "parent_flow_run_id": parent_id,
        "task_runs": [task_json(task) for task in tasks],
        "subflow_runs": [
            {"id": c.id, "name": c.name, "flow_name": c.flow_name, "state": c.state.value}
            for c in children
        ],
        "artifacts": [
            {
                "id": a.id,
                "key": a.key,
                "type": a.type,
                "description": a.description,
                "data": a.data,
                "task_run_id": a.task_run_id,
                "created_at": a.created_at,
            }
            for a in store.artifacts(run.id)
        ],
    }
