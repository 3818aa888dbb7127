"""`reconcile deployment run`, `reconcile flow-run ls|cancel` and `reconcile worker start`
(`flow-run inspect|logs` and `task-run ls`: reconciler/cli/run_records.py)."""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path

import click

from reconciler.cli import remote
from reconciler.cli.output import (
    echo_json,
    echo_table,
    open_for_reading,
    output_option,
    user_errors,
    with_iso_times,
)
from reconciler.cli.read import store_option
from reconciler.cli.remote import refuse_both, server_option
from reconciler.core.errors import UserError
from reconciler.core.terminal_text import printable
from reconciler.model.runs import FlowRun, RunState
from reconciler.settings import settings_for_store
from reconciler.store import Store
from reconciler.store.url import is_prefect_store

WATCH_POLL_SECONDS = 0.1
UPCOMING_CAP = 100_000
"""`--all`: every scheduled run (a bound, not a page)."""

scheduled_option = click.option(
    "--scheduled",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="How many of the next scheduled runs to list after the past ones.",
)
all_option = click.option(
    "--all", "show_all", is_flag=True, help="List every scheduled run (not only the next 5)."
)


@click.command("run")
@click.argument("key", metavar="FLOW/DEPLOYMENT")
@click.option("--param", "params", multiple=True, help="NAME=VALUE (JSON values are parsed).")
@click.option("--params", "params_json", help="All parameters as a JSON object.")
@click.option("--job-variable", "job_variables", multiple=True, help="NAME=VALUE override.")
@click.option("--watch", is_flag=True, help="Follow the run's logs until it ends.")
@store_option
@server_option
@output_option
@user_errors
def deployment_run(
    key: str,
    params: tuple[str, ...],
    params_json: str | None,
    job_variables: tuple[str, ...],
    watch: bool,
    store_url: str | None,
    output: str = "table",
    server_url: str | None = None,
) -> None:
    """Create a flow run of a deployment, now (`-o json`: the run as JSON)."""
    from reconciler.worker.create_run import create_run, parse_assignments, parse_json_object

    parameters = {
        **parse_json_object(params_json, "--params"),
        **parse_assignments(params, "--param"),
    }
    overrides = parse_assignments(job_variables, "--job-variable")
    if server_url:
        refuse_both(store_url, server_url)
        made = remote.deployment_run(server_url, key, parameters, overrides)
        if output == "json":
            echo_json(with_iso_times(made))
        else:
            click.echo(
                printable(
                    f"Created flow run {made['name']!r} ({made['id']}) of {key} in "
                    f"{made['work_pool']}/{made['work_queue']}."
                )
            )
        if watch:
            sys.exit(remote.flow_run_logs(server_url, made["id"], True, None))
        return
    store = settings_for_store(store_url).open_store()
    try:
        run = create_run(store, key, parameters=parameters, job_variables=overrides)
    finally:
        store.close()
    if output == "json":
        echo_json(run_json(run))
    else:
        click.echo(
            printable(
                f"Created flow run {run.name!r} ({run.id}) of {key} in {run.pool}/{run.queue}."
            )
        )
    if watch:
        sys.exit(_watch(store_url, run.id))


def _watch(store_url: str | None, run_id: str, min_level: int | None = None) -> int:
    from reconciler.cli.run_records import echo_log_line

    seen = 0
    store = settings_for_store(store_url).open_store(readonly=True)
    try:
        while True:
            run = store.get_run(run_id)
            for line in store.run_logs(run_id, after=seen, min_level=min_level):
                echo_log_line(line)
                seen = line.seq
            if run is None or run.state.is_final:
                break
            time.sleep(WATCH_POLL_SECONDS)
    finally:
        store.close()
    assert run is not None
    click.echo(
        printable(
            f"Flow run {run.name!r} ended {run.state.value}: {run.state_message or ''}".rstrip(
                ": "
            ),
            keep_newlines=True,
        )
    )
    return 0 if run.state is RunState.COMPLETED else 1


@click.group("flow-run")
def flow_run() -> None:
    """Flow runs: list, inspect, read logs, cancel."""


@flow_run.command("ls")
@click.option("--deployment", help="Only runs of FLOW/DEPLOYMENT.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in RunState]),
    help="Only runs in these states.",
)
@click.option("--limit", default=50, show_default=True, help="At most this many past runs.")
@scheduled_option
@all_option
@store_option
@server_option
@output_option
@user_errors
def flow_run_ls(
    deployment: str | None,
    states: tuple[str, ...],
    limit: int,
    scheduled: int,
    show_all: bool,
    store_url: str | None,
    output: str,
    server_url: str | None = None,
) -> None:
    """Flow runs: the most recent past ones first, then the next scheduled ones (5 unless
    --scheduled N or --all)."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.list_runs(
            server_url,
            output,
            deployment=deployment,
            states=states,
            limit=limit,
            upcoming=None if show_all else scheduled,
        )
    _list_runs(
        store_url,
        output,
        deployment=deployment,
        states=states,
        limit=limit,
        upcoming=None if show_all else scheduled,
    )


@flow_run.command("cancel")
@click.argument("run_id")
@store_option
@server_option
@user_errors
def flow_run_cancel(run_id: str, store_url: str | None, server_url: str | None = None) -> None:
    """Cancel a flow run (by id, id prefix or name): a running one is stopped by its worker."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.flow_run_cancel(server_url, run_id)
    store = settings_for_store(store_url).open_store()
    try:
        run = _one(store, run_id)
        if run.state.is_final:
            raise UserError(f"flow run {run.id} already ended {run.state.value}")
        after = store.cancel_run(run.id)
    finally:
        store.close()
    assert after is not None
    if after.state is RunState.CANCELLING:
        click.echo(f"Flow run {after.id} is CANCELLING: its worker stops it.")
    else:
        click.echo(f"Flow run {after.id} is {after.state.value}.")


def _one(store: Store, run_id: str) -> FlowRun:
    run = store.get_run(run_id)
    if run is not None:
        return run
    found = store.find_runs(run_id) if len(run_id) >= 4 else []  # id prefix, or name
    if len(found) == 1:
        return found[0]
    if found:
        raise UserError(f"{run_id!r} matches several flow runs", "give more of the id")
    raise UserError(
        f"no flow run {run_id!r} (by id, id prefix or name)", "`reconcile flow-run ls` lists them"
    )


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds")


def run_json(run: FlowRun) -> dict[str, object]:
    """A run as the CLI prints it in JSON: times as ISO 8601 UTC (no epoch seconds)."""
    return with_iso_times(run.to_json())


@click.group("worker")
def worker() -> None:
    """Run flow runs of a work pool."""


@worker.command("start")
@click.option("--pool", "-p", required=True, help="The work pool to take runs from.")
@click.option("--work-queue", "-q", "queues", multiple=True, help="Only these queues.")
@click.option("--name", "-n", help="Worker name (default: host name and a random suffix).")
@click.option("--limit", "-l", type=click.IntRange(min=1), help="Runs at once (default: no limit).")
@click.option("--run-once", is_flag=True, help="Claim once, wait for those runs, exit.")
@click.option(
    "--prefetch-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="Claim runs scheduled up to this many seconds ahead (to start them on time).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=0.1,
    show_default=True,
    help="Seconds between looks for runs to claim.",
)
@click.option(
    "--heartbeat-seconds",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between heartbeats (3 missed: the worker shows OFFLINE).",
)
@click.option(
    "--cancel-grace-seconds",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds a cancelled run gets to stop after SIGTERM, before SIGKILL.",
)
@click.option(
    "--work-dir", type=click.Path(file_okay=False), help="Where runs get their directories."
)
@click.option(
    "--max-log-bytes",
    type=click.IntRange(min=1),
    default=10 * 1024 * 1024,
    show_default=True,
    help="Output stored per run; the rest is counted, and a last line says how much.",
)
@click.option("--no-schedule", is_flag=True, help="Leave turning schedules into runs to others.")
@click.option("--with-healthcheck", is_flag=True, help="Serve GET /health.")
@click.option(
    "--healthcheck-listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where --with-healthcheck serves GET /health.",
)
@click.option(
    "--python",
    "python",
    help="The Python that runs Prefect flows whose job sets no `command` "
    "(default: this worker's own interpreter).",
)
@click.option(
    "--prefect-api-url",
    help="Give runs this Prefect API (a daemon's http://HOST:PORT/prefect/api) instead of "
    "serving one on 127.0.0.1. Its token comes from RECONCILER_PREFECT_API_TOKEN.",
)
@click.option(
    "--prefect-api-listen",
    metavar="HOST:PORT",
    help="Serve this worker's Prefect API on HOST:PORT instead of a free port on 127.0.0.1, "
    "for containers on bridge or user-defined networks (e.g. the Docker gateway "
    "172.17.0.1:4300, or 0.0.0.0:4300, reached as host.docker.internal). A random token "
    "guards it.",
)
@click.option(
    "--no-forkserver",
    is_flag=True,
    help="Start each Prefect flow in a fresh interpreter (slower: Prefect is imported each time).",
)
@store_option
@user_errors
def worker_start(**options: object) -> None:
    """Claim and execute runs of a pool, as processes (process pools) or containers (docker)."""
    import logging

    from reconciler.daemon.config import parse_listen
    from reconciler.daemon.logs import configure
    from reconciler.worker.loop import Worker, WorkerOptions, default_worker_name

    if options["prefect_api_listen"] and options["prefect_api_url"]:
        raise UserError(
            "--prefect-api-listen and --prefect-api-url exclude each other",
            "serve the worker's own API (--prefect-api-listen) or use another one "
            "(--prefect-api-url), not both",
        )
    resolved = settings_for_store(options["store_url"])  # type: ignore[arg-type]
    if is_prefect_store(resolved.store_url):
        raise UserError(
            f"`reconcile worker` runs flows from reconciler's own store, and {resolved.store_url} "
            "is a Prefect server: its runs are Prefect's",
            f"start Prefect's own worker instead: `prefect worker start --pool {options['pool']}`",
        )
    configure("text")
    logging.getLogger("reconciler").setLevel(logging.INFO)
    settings = WorkerOptions(
        pool=str(options["pool"]),
        settings=resolved,
        queues=tuple(options["queues"]),  # type: ignore[arg-type]
        name=str(options["name"] or default_worker_name()),
        schedule=not options["no_schedule"],
        limit=options["limit"],  # type: ignore[arg-type]
        run_once=bool(options["run_once"]),
        prefetch_seconds=float(options["prefetch_seconds"]),  # type: ignore[arg-type]
        poll_interval=float(options["poll_interval"]),  # type: ignore[arg-type]
        heartbeat_interval=float(options["heartbeat_seconds"]),  # type: ignore[arg-type]
        cancel_grace_seconds=float(options["cancel_grace_seconds"]),  # type: ignore[arg-type]
        max_log_bytes=int(options["max_log_bytes"]),  # type: ignore[call-overload]
        work_dir=Path(str(options["work_dir"])) if options["work_dir"] else None,
        with_healthcheck=bool(options["with_healthcheck"]),
        healthcheck_address=parse_listen(
            str(options["healthcheck_listen"]), "--healthcheck-listen"
        ),
        python=str(options["python"]) if options["python"] else None,
        prefect_api_url=str(options["prefect_api_url"]) if options["prefect_api_url"] else None,
        prefect_api_token=os.environ.get("RECONCILER_PREFECT_API_TOKEN") or None,
        prefect_api_listen=(
            parse_listen(str(options["prefect_api_listen"]), "--prefect-api-listen")
            if options["prefect_api_listen"]
            else None
        ),
        forkserver=not options["no_forkserver"],
    )
    sys.exit(Worker(settings, dict(os.environ)).run())


@click.command("runs")
@click.argument("key", metavar="FLOW/DEPLOYMENT")
@click.option("--limit", default=50, show_default=True, help="At most this many past runs.")
@scheduled_option
@all_option
@store_option
@server_option
@output_option
@user_errors
def deployment_runs(
    key: str,
    limit: int,
    scheduled: int,
    show_all: bool,
    store_url: str | None,
    output: str,
    server_url: str | None = None,
) -> None:
    """The runs of one deployment (scheduled and manual ones): the most recent past ones
    first, then the next scheduled ones (5 unless --scheduled N or --all)."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.list_runs(
            server_url,
            output,
            deployment=key,
            states=(),
            limit=limit,
            upcoming=None if show_all else scheduled,
        )
    _list_runs(
        store_url,
        output,
        deployment=key,
        states=(),
        limit=limit,
        upcoming=None if show_all else scheduled,
    )


def _list_runs(
    store_url: str | None,
    output: str,
    *,
    deployment: str | None,
    states: tuple[str, ...],
    limit: int,
    upcoming: int | None,
) -> None:
    """Past runs (scheduled up to now), most recent first, then the runs scheduled later,
    soonest first: `upcoming` of them (None: all); a line on stderr says how many more."""
    wanted = [RunState(s) for s in states] or None
    now = time.time()
    store = open_for_reading(store_url)
    try:
        past = store.list_runs(
            deployment=deployment, states=wanted, limit=limit, scheduled_until=now
        )
        later = store.list_runs(
            deployment=deployment,
            states=wanted,
            limit=UPCOMING_CAP if upcoming is None else upcoming + 1,
            scheduled_after=now,
            oldest_first=True,
        )
    finally:
        store.close()
    more = upcoming is not None and len(later) > upcoming
    if upcoming is not None:
        later = later[:upcoming]
    runs = [*past, *later]
    if output == "json":
        echo_json([run_json(run) for run in runs])
    else:
        echo_table(
            ["id", "name", "deployment", "state", "scheduled", "by", "worker"],
            [
                [
                    r.id,
                    r.name,
                    r.deployment,
                    r.state.value,
                    _when(r.scheduled_time),
                    "schedule" if r.schedule_id else "hand",
                    r.worker or "-",
                ]
                for r in runs
            ],
        )
    if more:
        click.echo(
            f"(more runs are scheduled after these {upcoming}: --scheduled N or --all lists them)",
            err=True,
        )


@worker.command("ls")
@click.option("--pool", "-p", help="Only the workers of this pool.")
@store_option
@server_option
@output_option
@user_errors
def worker_ls(
    pool: str | None, store_url: str | None, output: str, server_url: str | None = None
) -> None:
    """Workers that have heartbeated: ONLINE, or OFFLINE after 3 missed heartbeats."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.worker_ls(server_url, pool, output)
    store = open_for_reading(store_url)
    try:
        workers = store.workers(pool)
    finally:
        store.close()
    now = time.time()
    rows = [
        {
            "pool": w.pool,
            "name": w.name,
            "status": "ONLINE" if w.is_online(now) else "OFFLINE",
            "last_heartbeat": _when(w.heartbeat_at),
            "heartbeat_seconds": w.heartbeat_interval,
        }
        for w in workers
    ]
    if output == "json":
        echo_json(rows)
        return
    echo_table(
        ["pool", "name", "status", "last heartbeat"],
        [[r["pool"], r["name"], r["status"], r["last_heartbeat"]] for r in rows],
    )
