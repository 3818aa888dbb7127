"""Read commands: `deployment ls|inspect` and `history` (pools and queues: cli/pools.py).
Tables for people, `--output json` for scripts. They never create a store."""

from __future__ import annotations

from typing import Any

import click

from reconciler.cli import remote
from reconciler.cli.output import echo_json, echo_table, open_for_reading, user_errors
from reconciler.cli.remote import refuse_both, server_option
from reconciler.core.errors import UserError
from reconciler.model.resources import Kind, Resource
from reconciler.store.base import Store

store_option = click.option("--store", "store_url", help="Store URL (default $RECONCILER_STORE).")
output_option = click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True
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
    if server_url:
        refuse_both(store_url, server_url)
        return remote.deployment_ls(server_url, output)
    store = _store(store_url)
    try:
        rows = store.list_resources(Kind.DEPLOYMENT)
    finally:
        store.close()
    if output == "json":
        echo_json([resource_json(r) for r in rows])
        return
    table = []
    for r in rows:
        spec = r.deployment_spec()
        table.append(
            [
                r.key,
                f"{spec.work_pool_name}/{spec.work_queue_name}",
                "yes" if spec.paused else "no",
                len(spec.schedules),
                owner_text(r),
                (r.source_commit or "")[:8],
            ]
        )
    echo_table(["deployment", "pool/queue", "paused", "schedules", "owner", "commit"], table)


@deployment.command("inspect")
@click.argument("key", metavar="FLOW/DEPLOYMENT")
@store_option
@server_option
@user_errors
def deployment_inspect(key: str, store_url: str | None, server_url: str | None = None) -> None:
    """Everything recorded about one deployment, as JSON."""
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
