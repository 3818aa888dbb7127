"""`reconcile work-pool ...` and `reconcile work-queue ...`: pools and queues by hand, as with
Prefect's `prefect work-pool` / `prefect work-queue`, plus their read commands.

Each write reads the store, lets reconciler/pools/manual.py decide (and refuse), and writes the
result in one transaction at the revision it read; if another writer got in between, it reads
and decides again. Objects a repository owns are refused: they change through git.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reconciler.cli import remote
from reconciler.cli.output import (
    echo_json,
    echo_table,
    inspect_output_option,
    open_for_reading,
    output_option,
    user_errors,
)
from reconciler.cli.read import owner_text, resource_json
from reconciler.cli.remote import refuse_both, server_option
from reconciler.core.errors import StaleStateError, UserError
from reconciler.core.terminal_text import printable
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Resource
from reconciler.pools import manual
from reconciler.pools.status import Worker, pool_status
from reconciler.prefect_rules.job_templates import POOL_TYPES
from reconciler.settings import settings_for_store
from reconciler.store.base import Store
from reconciler.store.url import store_exists

store_option = click.option("--store", "store_url", help="Store URL (default $RECONCILER_STORE).")
pool_name_option = click.option(
    "--pool", "-p", "pool", help="The queue's work pool (or write the queue as POOL/QUEUE)."
)
template_option = click.option(
    "--base-job-template",
    "template_file",
    type=click.Path(dir_okay=False),
    help="A JSON file with a whole base job template (job_configuration and variables).",
)
pool_limit_option = click.option(
    "--concurrency-limit",
    type=click.IntRange(min=0),
    help="At most this many runs Pending or Running at once in the pool.",
)
queue_limit_option = click.option(
    "--concurrency-limit",
    "--limit",
    "-l",
    "concurrency_limit",
    type=click.IntRange(min=0),
    help="At most this many runs Pending or Running at once from the queue.",
)
priority_option = click.option(
    "--priority",
    "-q",
    type=click.IntRange(min=1),
    help="1 is served first. Queues already at that priority move down, as in Prefect.",
)
description_option = click.option("--description", help="A description.")

_ATTEMPTS = 5


# --- shared ------------------------------------------------------------------------------------


def _apply(
    store_url: str | None, decide: Callable[[ObservedState], manual.Edit], *, create: bool = False
) -> None:
    """Decide on a snapshot and write the Edit in one transaction at that snapshot's revision.
    Only `create` makes a store that does not exist yet."""
    settings = settings_for_store(store_url)
    exists = store_exists(settings.store_url)
    store = settings.open_store() if create or exists else open_for_reading(store_url)
    try:
        edit = _decide_and_write(store, decide)
    finally:
        store.close()
    click.echo(printable(edit.message, keep_newlines=True))


def _decide_and_write(store: Store, decide: Callable[[ObservedState], manual.Edit]) -> manual.Edit:
    for _ in range(_ATTEMPTS):
        observed = store.observe()
        edit = decide(observed)
        if not edit.writes:
            return edit
        try:
            with store.transaction(expected_revision=observed.revision) as tx:
                for resource in edit.puts:
                    tx.put(resource)
                for kind, key in edit.deletes:
                    tx.delete(kind, key)
        except StaleStateError:
            continue  # another writer got in first: decide again on what it wrote
        return edit
    raise UserError(
        f"the store kept changing under this command ({_ATTEMPTS} attempts); nothing was written",
        "run it again",
    )


def _read_template(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(
            f"cannot read --base-job-template {path}: {exc.strerror or exc}",
            "give the path of a JSON file",
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"--base-job-template {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}",
            "the file must hold a JSON object with `job_configuration` and `variables`",
        ) from None
    if not isinstance(value, dict):
        raise UserError(
            f"--base-job-template {path} must hold a JSON object, not {type(value).__name__}",
            "the file must hold a JSON object with `job_configuration` and `variables`",
        )
    manual.check_template(value, f"--base-job-template {path}")
    return value


def _observe(store_url: str | None) -> ObservedState:
    store = open_for_reading(store_url)
    try:
        return store.observe()
    finally:
        store.close()


def _known_workers(store: Store, pool: str) -> list[Worker]:
    """The workers that have heartbeated for `pool` (online or not: `pool_status` decides)."""
    return list(store.workers(pool))


def _pool_json(resource: Resource, store: Store) -> dict[str, Any]:
    status = pool_status(resource.pool_spec(), _known_workers(store, resource.key))
    return {**resource_json(resource), "status": status}


# --- work-pool ---------------------------------------------------------------------------------


@click.group("work-pool")
def work_pool() -> None:
    """Work pools: list, inspect, and make or change them by hand.

    Pools declared in a repository's work-pools.yaml belong to it and change only through git;
    a reconcile never prunes a pool made here.
    """


@work_pool.command("create")
@click.argument("name")
@click.option(
    "--type", "-t", "pool_type", type=click.Choice(POOL_TYPES), required=True, help="Worker type."
)
@template_option
@description_option
@pool_limit_option
@click.option("--paused", is_flag=True, help="Create the pool paused (it hands out no runs).")
@store_option
@user_errors
def work_pool_create(
    name: str,
    pool_type: str,
    template_file: str | None,
    description: str | None,
    concurrency_limit: int | None,
    paused: bool,
    store_url: str | None,
) -> None:
    """Create a work pool, with Prefect's base job template for its type (or --base-job-template)
    and a `default` queue."""
    manual.check_name("work pool", name)
    template = _read_template(template_file) if template_file else None
    spec = manual.pool_spec(
        name,
        pool_type,
        description=description,
        paused=paused,
        concurrency_limit=concurrency_limit,
        base_job_template=template,
    )
    _apply(store_url, lambda observed: manual.create_pool(observed, spec), create=True)


@work_pool.command("ls")
@store_option
@server_option
@output_option
@user_errors
def work_pool_ls(store_url: str | None, output: str, server_url: str | None = None) -> None:
    """Work pools, with their status (PAUSED, READY, NOT_READY) and owner."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.work_pool_ls(server_url, output)
    store = open_for_reading(store_url)
    try:
        pools = store.list_resources(Kind.WORK_POOL)
        queues = store.list_resources(Kind.WORK_QUEUE)
        rows = [_pool_json(p, store) for p in pools]
    finally:
        store.close()
    if output == "json":
        echo_json(rows)
        return
    count = {p.key: sum(1 for q in queues if q.queue_spec().pool == p.key) for p in pools}
    echo_table(
        ["work pool", "type", "status", "concurrency", "queues", "owner"],
        [
            [
                p.key,
                p.pool_spec().type,
                row["status"],
                _limit(p.pool_spec().concurrency_limit),
                count[p.key],
                owner_text(p),
            ]
            for p, row in zip(pools, rows, strict=True)
        ],
    )


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


@work_pool.command("inspect")
@click.argument("name")
@inspect_output_option
@store_option
@user_errors
def work_pool_inspect(name: str, output: str, store_url: str | None) -> None:
    """Everything recorded about one work pool, with its status, as JSON."""
    store = open_for_reading(store_url)
    try:
        found = manual.get_pool(store.observe(), name)
        echo_json(_pool_json(found, store))
    finally:
        store.close()


@work_pool.command("preview")
@click.argument("name")
@click.option(
    "--hours",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="List the runs scheduled in the next HOURS hours (late ones too).",
)
@click.option(
    "--job-configuration",
    is_flag=True,
    help="Show the job configuration a run would start with instead (JSON).",
)
@click.option(
    "--deployment",
    "deployment_key",
    metavar="FLOW/DEPLOYMENT",
    help="With --job-configuration: lay this deployment's job variables over the defaults.",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="The scheduled runs as a table or JSON (the job configuration is always JSON).",
)
@store_option
@user_errors
def work_pool_preview(
    name: str,
    hours: float,
    job_configuration: bool,
    deployment_key: str | None,
    output: str,
    store_url: str | None,
) -> None:
    """What the pool's workers will run: the runs scheduled in the next --hours (as Prefect's
    preview), or with --job-configuration the job configuration a worker would start a run
    with (JSON; secrets and variables stay as placeholders)."""
    observed = _observe(store_url)
    pool = manual.get_pool(observed, name)
    if not job_configuration and deployment_key is None:
        _scheduled_runs(store_url, name, hours, output)
        return
    job_variables: dict[str, Any] = {}
    if deployment_key is not None:
        deployment = manual.get_deployment(observed, deployment_key)
        spec = deployment.deployment_spec()
        if spec.work_pool_name != name:
            raise UserError(
                f'deployment "{deployment_key}" runs on work pool '
                f'"{spec.work_pool_name}", not "{name}"',
                f"preview that pool: `reconcile work-pool preview "
                f"{spec.work_pool_name} --deployment {deployment_key}`",
            )
        job_variables = dict(spec.job_variables)
    preview = manual.job_configuration_preview(pool.pool_spec(), job_variables)
    echo_json({"work_pool": name, "deployment": deployment_key, **preview})


def _scheduled_runs(store_url: str | None, pool: str, hours: float, output: str) -> None:
    import datetime
    import time

    from reconciler.model.runs import WAITING_STATES

    store = open_for_reading(store_url)
    try:
        horizon = time.time() + hours * 3600
        runs = [
            run
            for run in store.list_runs(pool=pool, states=WAITING_STATES, limit=10_000)
            if run.scheduled_time <= horizon
        ]
    finally:
        store.close()
    runs.sort(key=lambda run: run.scheduled_time)
    if output == "json":
        from reconciler.cli.runs import run_json

        echo_json([run_json(run) for run in runs])
        return
    if not runs:
        click.echo(f"No runs of work pool {pool!r} are scheduled in the next {hours:g} hour(s).")
        return
    echo_table(
        ["scheduled", "run", "deployment", "queue", "state"],
        [
            [
                datetime.datetime.fromtimestamp(run.scheduled_time, datetime.UTC).isoformat(
                    timespec="seconds"
                ),
                run.name,
                run.deployment,
                run.queue,
                run.state.value,
            ]
            for run in runs
        ],
    )


def _pool_update(store_url: str | None, name: str, changes: dict[str, Any], action: str) -> None:
    _apply(store_url, lambda observed: manual.update_pool(observed, name, changes, action))


@work_pool.command("pause")
@click.argument("name")
@store_option
@user_errors
def work_pool_pause(name: str, store_url: str | None) -> None:
    """Pause a work pool: its workers get no runs."""
    _pool_update(store_url, name, {"paused": True}, "pause")


@work_pool.command("resume")
@click.argument("name")
@store_option
@user_errors
def work_pool_resume(name: str, store_url: str | None) -> None:
    """Resume a paused work pool."""
    _pool_update(store_url, name, {"paused": False}, "resume")


@work_pool.command("update")
@click.argument("name")
@description_option
@pool_limit_option
@template_option
@store_option
@user_errors
def work_pool_update(
    name: str,
    description: str | None,
    concurrency_limit: int | None,
    template_file: str | None,
    store_url: str | None,
) -> None:
    """Change a hand-made work pool. A new base job template must still fit the job variables
    of the deployments that use the pool."""
    changes: dict[str, Any] = {}
    if description is not None:
        changes["description"] = description
    if concurrency_limit is not None:
        changes["concurrency_limit"] = concurrency_limit
    if template_file is not None:
        changes["base_job_template"] = _read_template(template_file)
    if not changes:
        raise UserError(
            "nothing to update",
            "give --description, --concurrency-limit or --base-job-template (pause, resume "
            "and clear-concurrency-limit are commands of their own)",
        )
    _pool_update(store_url, name, changes, "update")


@work_pool.command("set-concurrency-limit")
@click.argument("name")
@click.argument("limit", type=click.IntRange(min=0))
@store_option
@user_errors
def work_pool_set_limit(name: str, limit: int, store_url: str | None) -> None:
    """At most LIMIT runs Pending or Running at once in the pool."""
    _pool_update(store_url, name, {"concurrency_limit": limit}, "update")


@work_pool.command("clear-concurrency-limit")
@click.argument("name")
@store_option
@user_errors
def work_pool_clear_limit(name: str, store_url: str | None) -> None:
    """Remove the pool's concurrency limit."""
    _pool_update(store_url, name, {"concurrency_limit": None}, "update")


@work_pool.command("delete")
@click.argument("name")
@store_option
@user_errors
def work_pool_delete(name: str, store_url: str | None) -> None:
    """Delete a hand-made work pool and its queues. Refused while a deployment uses it."""
    _apply(store_url, lambda observed: manual.delete_pool(observed, name))


# --- work-queue --------------------------------------------------------------------------------


@click.group("work-queue")
def work_queue() -> None:
    """Work queues: list, inspect, and make or change them by hand.

    A queue is named QUEUE --pool POOL, or POOL/QUEUE; without a pool, a queue name that only
    one pool has.
    """


@work_queue.command("create")
@click.argument("name")
@click.option("--pool", "-p", "pool", required=True, help="The work pool to add the queue to.")
@priority_option
@queue_limit_option
@description_option
@store_option
@user_errors
def work_queue_create(
    name: str,
    pool: str,
    priority: int | None,
    concurrency_limit: int | None,
    description: str | None,
    store_url: str | None,
) -> None:
    """Create a queue in a hand-made work pool. Without --priority it takes the first free
    number."""
    _apply(
        store_url,
        lambda observed: manual.create_queue(
            observed,
            pool,
            name,
            priority=priority,
            concurrency_limit=concurrency_limit,
            description=description,
        ),
    )


@work_queue.command("ls")
@pool_name_option
@store_option
@server_option
@output_option
@user_errors
def work_queue_ls(
    pool: str | None, store_url: str | None, output: str, server_url: str | None = None
) -> None:
    """Work queues, with their pool, priority and owner."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.work_queue_ls(server_url, pool, output)
    store = open_for_reading(store_url)
    try:
        if pool is not None and store.get(Kind.WORK_POOL, pool) is None:
            manual.get_pool(store.observe(), pool)  # raises "not found", with a suggestion
        rows = [
            r
            for r in store.list_resources(Kind.WORK_QUEUE)
            if not pool or r.queue_spec().pool == pool
        ]
    finally:
        store.close()
    if output == "json":
        echo_json([resource_json(r) for r in rows])
        return
    echo_table(
        ["pool", "queue", "priority", "paused", "concurrency", "owner"],
        [
            [
                spec.pool,
                spec.name,
                spec.priority,
                "yes" if spec.paused else "no",
                _limit(spec.concurrency_limit),
                owner_text(r),
            ]
            for r in rows
            for spec in (r.queue_spec(),)
        ],
    )


@work_queue.command("inspect")
@click.argument("name", metavar="QUEUE")
@pool_name_option
@inspect_output_option
@store_option
@user_errors
def work_queue_inspect(name: str, pool: str | None, output: str, store_url: str | None) -> None:
    """Everything recorded about one work queue, as JSON."""
    observed = _observe(store_url)
    echo_json(resource_json(manual.find_queue(observed, name, pool)))


def _queue_update(
    store_url: str | None, name: str, pool: str | None, changes: dict[str, Any], action: str
) -> None:
    def decide(observed: ObservedState) -> manual.Edit:
        queue = manual.find_queue(observed, name, pool)
        return manual.update_queue(observed, queue, changes, action)

    _apply(store_url, decide)


@work_queue.command("pause")
@click.argument("name", metavar="QUEUE")
@pool_name_option
@store_option
@user_errors
def work_queue_pause(name: str, pool: str | None, store_url: str | None) -> None:
    """Pause a work queue: its runs wait."""
    _queue_update(store_url, name, pool, {"paused": True}, "pause")


@work_queue.command("resume")
@click.argument("name", metavar="QUEUE")
@pool_name_option
@store_option
@user_errors
def work_queue_resume(name: str, pool: str | None, store_url: str | None) -> None:
    """Resume a paused work queue."""
    _queue_update(store_url, name, pool, {"paused": False}, "resume")


@work_queue.command("update")
@click.argument("name", metavar="QUEUE")
@pool_name_option
@priority_option
@queue_limit_option
@description_option
@store_option
@user_errors
def work_queue_update(
    name: str,
    pool: str | None,
    priority: int | None,
    concurrency_limit: int | None,
    description: str | None,
    store_url: str | None,
) -> None:
    """Change a hand-made work queue."""
    changes: dict[str, Any] = {}
    if priority is not None:
        changes["priority"] = priority
    if concurrency_limit is not None:
        changes["concurrency_limit"] = concurrency_limit
    if description is not None:
        changes["description"] = description
    if not changes:
        raise UserError(
            "nothing to update",
            "give --priority, --concurrency-limit or --description (pause, resume and "
            "clear-concurrency-limit are commands of their own)",
        )
    _queue_update(store_url, name, pool, changes, "update")


@work_queue.command("set-concurrency-limit")
@click.argument("name", metavar="QUEUE")
@click.argument("limit", type=click.IntRange(min=0))
@pool_name_option
@store_option
@user_errors
def work_queue_set_limit(name: str, limit: int, pool: str | None, store_url: str | None) -> None:
    """At most LIMIT runs Pending or Running at once from the queue."""
    _queue_update(store_url, name, pool, {"concurrency_limit": limit}, "update")


@work_queue.command("clear-concurrency-limit")
@click.argument("name", metavar="QUEUE")
@pool_name_option
@store_option
@user_errors
def work_queue_clear_limit(name: str, pool: str | None, store_url: str | None) -> None:
    """Remove the queue's concurrency limit."""
    _queue_update(store_url, name, pool, {"concurrency_limit": None}, "update")


@work_queue.command("delete")
@click.argument("name", metavar="QUEUE")
@pool_name_option
@store_option
@user_errors
def work_queue_delete(name: str, pool: str | None, store_url: str | None) -> None:
    """Delete a hand-made work queue. Refused for a pool's `default` queue and while a
    deployment uses it."""

    def decide(observed: ObservedState) -> manual.Edit:
        return manual.delete_queue(observed, manual.find_queue(observed, name, pool))

    _apply(store_url, decide)
