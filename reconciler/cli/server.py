"""`reconcile server`: the web API and dashboard over a store, without the reconcile loop."""

from __future__ import annotations

import os
import sys

import click

from reconciler.cli.output import user_errors


@click.command("server")
@click.option("--store", "store_url", help="Store URL (default $RECONCILER_STORE).")
@click.option(
    "--listen",
    default="127.0.0.1:8421",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve the API (/api/v1) and the dashboard (/).",
)
@user_errors
def server(store_url: str | None, listen: str) -> None:
    """Serve the REST API and the dashboard for a store, without reconciling.

    Tokens come from RECONCILER_API_READ_TOKEN and RECONCILER_API_ADMIN_TOKEN (or the files
    named by their _FILE variables). With none, it serves on loopback only: reads are open,
    actions are off.
    """
    from reconciler.daemon import logs
    from reconciler.web.server import serve

    logs.configure("text")
    try:
        code = serve(store_url, listen, os.environ)
    except OSError as exc:
        click.secho(f"error: cannot listen on {listen}: {exc.strerror or exc}", fg="red", err=True)
        click.echo("  hint: pick another address with --listen", err=True)
        sys.exit(1)
    sys.exit(code)
