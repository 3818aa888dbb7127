"""`reconcile event ls`: the events in the store, newest first (CLI: a read command over the
store). Events are the state changes of flow runs (`prefect.flow-run.<State>`), what flows emit
through the Prefect API, and what comes in by `POST /api/v1/events` and event webhooks; the
deployments' triggers read them (docs/triggers.md)."""

from __future__ import annotations

import click

from reconciler.cli.output import (
    echo_json,
    echo_table,
    open_for_reading,
    output_option,
    user_errors,
)
from reconciler.cli.read import store_option
from reconciler.cli.remote import refuse_both, server_option
from reconciler.store.run_events import list_events

HEADERS = ("OCCURRED", "EVENT", "RESOURCE", "ID")


@click.group("event")
def event() -> None:
    """Events: flow-run state changes, events flows emit, and events posted or sent by
    webhooks (what deployment triggers react to)."""


@event.command("ls")
@click.option("--event", "name", help="Only events with this name (`*` matches any text).")
@click.option("--resource", help="Only events about this resource id (`*` matches any text).")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="At most this many events (the newest).",
)
@output_option
@store_option
@server_option
@user_errors
def event_ls(
    name: str | None,
    resource: str | None,
    limit: int,
    output: str,
    store_url: str | None,
    server_url: str | None = None,
) -> None:
    """Events, newest first."""
    if server_url:
        refuse_both(store_url, server_url)
        from reconciler.cli import remote

        shown = remote.event_ls(server_url, name, resource, limit)
    else:
        store = open_for_reading(store_url)
        try:
            shown = [
                s.to_json() for s in list_events(store, event=name, resource=resource, limit=limit)
            ]
        finally:
            store.close()
    if output == "json":
        echo_json(shown)
        return
    echo_table(
        HEADERS,
        [
            (e["occurred"], e["event"], e["resource"].get("prefect.resource.id", ""), e["id"])
            for e in shown
        ],
    )
