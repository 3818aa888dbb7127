"""Read commands: `deployment ls|inspect` and `history` (pools and queues: cli/pools.py).
Tables for people, `--output json` for scripts. They never create a store."""

from __future__ import annotations

import time
from typing import Any

import click

from reconciler.cli import remote
from reconciler.cli.output import (
    DEPLOYMENT_COLUMNS,
    echo_json,
    echo_table,
    inspect_output_option,
    iso_time,
    open_for_reading,
    output_option,
    user_errors,
)
from reconciler.cli.remote import refuse_both, server_option
from reconciler.core.errors import UserError
from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import FlowRun
from reconciler.store.base import Store

store_option = click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="Store URL (default $RECONCILER_STORE, else .reconciler/state.db at the root of the "
    "git repository the current directory is in).",
)


def _store(url: str | None) -> Store:
    return open_for_reading(url)


def resource_json(resource: Resource) -> dict[str, Any]:
    return {
        "kind": resource.kind.value,
        "key": resource.key,
        "owner": resource.owner.to_json() if resource.owner else None,
        "source_commit": resource.source_commit,
        "content_hash": resource.hash,
        "spec": resource.spec,
    }


def owner_text(resource: Resource) -> str:
    return str(resource.owner) if resource.owner else "(made by hand)"


def inspect_resource(kind: Kind, key: str, store_url: str | None) -> None:
    store = _store(store_url)
    try:
        found = store.get(kind, key)
        if found is None and kind is Kind.DEPLOYMENT and "/" not in key:
            named = [r for r in store.list_resources(kind) if r.key.split("/", 1)[-1] == key]
            if len(named) > 1:
                raise UserError(
                    f'several deployments are named "{key}": ' + ", ".join(r.key for r in named),
                    "give FLOW/DEPLOYMENT",
                )
            found = named[0] if named else None
        if found is None:
            keys = [r.key for r in store.list_resources(kind)]
            from reconciler.prefect_rules.validation import did_you_mean

            raise UserError(
                f'{kind.label} "{key}" not found in {store.url}',
                did_you_mean(key, keys) or f"`reconcile {kind.label} ls` lists them",
            )
        echo_json(resource_json(found))
    finally:
        store.close()


@click.group("deployment")
def deployment() -> None:
    """Deployments in the store."""


@deployment.command("ls")
@store_option
@server_option
@output_option
@user_errors
def deployment_ls(store_url: str | None, output: str, server_url: str | None = None) -> None:
    """Deployments, with their pool, owner, last run and next scheduled run."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.deployment_ls(server_url, output)
    store = _store(store_url)
    try:
        rows = store.list_resources(Kind.DEPLOYMENT)
        runs = {r.key: last_and_next_run(store, r.key) for r in rows}
    finally:
        store.close()
    if output == "json":
        echo_json([{**resource_json(r), **runs[r.key]} for r in rows])
        return
    table = []
    for r in rows:
        spec = r.deployment_spec()
        last, upcoming = runs[r.key]["last_run"], runs[r.key]["next_run"]
        table.append(
            [
                r.key,
                f"{spec.work_pool_name}/{spec.work_queue_name}",
                "yes" if spec.paused else "no",
                len(spec.schedules),
                f"{last['state']} {last['scheduled_time'][:19]}+00:00" if last else "-",
                f"{upcoming['scheduled_time'][:19]}+00:00" if upcoming else "-",
                owner_text(r),
                (r.source_commit or "")[:8],
            ]
        )
    echo_table(
        DEPLOYMENT_COLUMNS,
        table,
    )


def last_and_next_run(store: Store, key: str) -> dict[str, dict[str, Any] | None]:
    """The deployment's most recent run scheduled up to now, and its next waiting one after
    now (id, name, state, scheduled_time in ISO 8601 UTC), or None."""
    last, upcoming = store.last_and_next_runs(key, time.time())  # as the web API's

    def brief(run: FlowRun | None) -> dict[str, Any] | None:
        if run is None:
            return None
        return {
            "id": run.id,
            "name": run.name,
            "state": run.state.value,
            "scheduled_time": iso_time(run.scheduled_time),
        }

    return {"last_run": brief(last), "next_run": brief(upcoming)}


@deployment.command("inspect")
@click.argument("key", metavar="FLOW/DEPLOYMENT")
@store_option
@server_option
@inspect_output_option
@user_errors
def deployment_inspect(
    key: str, store_url: str | None, output: str = "json", server_url: str | None = None
) -> None:
    """Everything recorded about one deployment (FLOW/DEPLOYMENT, or its name alone when
    only one flow has it), as JSON."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.deployment_inspect(server_url, key)
    inspect_resource(Kind.DEPLOYMENT, key, store_url)


@click.command("history")
@click.argument("plan_id", type=int, required=False)
@click.option("--limit", default=20, show_default=True, help="How many applied plans to list.")
@store_option
@server_option
@output_option
@user_errors
def history(
    plan_id: int | None,
    limit: int,
    store_url: str | None,
    output: str,
    server_url: str | None = None,
) -> None:
    """Applied plans, newest first; with PLAN_ID, that plan in full (JSON)."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.history(server_url, plan_id, limit, output)
    store = _store(store_url)
    try:
        if plan_id is not None:
            record = store.applied_plan(plan_id)
            if record is None:
                raise UserError(f"no applied plan {plan_id}", "`reconcile history` lists them")
            echo_json(record.plan)
            return
        records = store.history(limit)
    finally:
        store.close()
    if output == "json":
        echo_json(
            [
                {
                    "id": r.id,
                    "applied_at": r.applied_at,
                    "revision": r.revision,
                    "sources": r.sources,
                    "summary": r.summary,
                }
                for r in records
            ]
        )
        return
    echo_table(
        ["id", "applied at", "repositories", "add", "change", "destroy"],
        [
            [
                r.id,
                r.applied_at,
                ", ".join(f"{s['repo']}@{(s.get('commit') or 'worktree')[:8]}" for s in r.sources),
                r.summary.get("add", 0),
                r.summary.get("change", 0),
                r.summary.get("destroy", 0),
            ]
            for r in records
        ],
    )
