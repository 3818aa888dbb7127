"""`reconcile daemon` (the long-running loop) and `reconcile status` (what it last did)."""

from __future__ import annotations

import os
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
from reconciler.core.terminal_text import printable


@click.command("daemon")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The daemon's YAML config (schema: schemas/daemon.schema.json).",
)
@click.option("--store", "store_url", help="Store URL; overrides the file and RECONCILER_STORE.")
@click.option("--listen", help="HOST:PORT of the HTTP server (default 127.0.0.1:8420).")
@click.option("--cache-dir", help="Where clones of remote repositories are kept.")
@click.option("--drift-interval", help="How often to check for drift (e.g. 5m).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text or JSON (default: `log_format` of the config, else text).",
)
@user_errors
def daemon(
    config_path: str,
    store_url: str | None,
    listen: str | None,
    cache_dir: str | None,
    drift_interval: str | None,
    log_format: str | None,
) -> None:
    """Watch the repositories of --config and keep the store in step with them.

    Local repositories are applied as soon as a commit lands; remote ones on each poll and on
    webhooks (POST /hooks/NAME). GET /status, /healthz and /metrics report on it; the Prefect
    API that flow runs talk to is at /prefect/api. SIGTERM or SIGINT stops it cleanly.
    """
    from reconciler.daemon import logs
    from reconciler.daemon.config import Overrides, load_settings
    from reconciler.daemon.runner import Daemon

    settings = load_settings(
        config_path,
        os.environ,
        Overrides(
            store_url=store_url,
            listen=listen,
            cache_dir=cache_dir,
            drift_interval=drift_interval,
            log_format=log_format,
        ),
    )
    from reconciler.daemon.prefect_mount import prefect_api_mounts
    from reconciler.web.daemon_mount import web_for_daemon

    logs.configure(settings.log_format)
    mounts = prefect_api_mounts(settings.settings, settings.listen_host, os.environ)
    web = web_for_daemon(settings.settings, settings.listen_host, os.environ)
    try:
        runner = Daemon(settings, dict(os.environ), mounts=mounts, web=web)
    except OSError as exc:
        click.secho(
            f"error: cannot listen on {settings.listen_host}:{settings.listen_port}: "
            f"{exc.strerror or exc}",
            fg="red",
            err=True,
        )
        click.echo("  hint: pick another address with --listen or `listen:`", err=True)
        sys.exit(1)
    sys.exit(runner.run())


@click.command("status")
@store_option
@server_option
@output_option
@user_errors
def status(store_url: str | None, output: str, server_url: str | None = None) -> None:
    """What the daemon last did for each repository it watches."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.status(server_url, output)
    from reconciler.cli.operate import operator_notes

    store = open_for_reading(store_url)
    try:
        records = store.repo_statuses()
        notes = operator_notes(store) if output != "json" else []
    finally:
        store.close()
    if output == "json":
        echo_json([{**r.status, "updated_at": r.updated_at} for r in records])
        return
    if not records:
        click.echo("No repositories: no daemon has run against this store.")
        for line in notes:
            click.echo(line)
        return
    echo_table(
        ["repository", "state", "fetched", "applied", "last error", "next attempt"],
        [
            [
                r.name,
                r.status.get("state"),
                (r.status.get("fetched_commit") or "-")[:12],
                (r.status.get("applied_commit") or "-")[:12],
                _short(r.status.get("last_error"), r.status.get("last_error_at")),
                r.status.get("next_attempt_at") or "-",
            ]
            for r in records
        ],
    )
    for r in records:
        message = r.status.get("message")
        if message:
            click.echo(printable(f"{r.name}: {message}", keep_newlines=True))
        error = r.status.get("last_error")
        if error and _short(error, None) != error:  # the table cut it: here in full
            click.echo(printable(f"{r.name}: last error: {error}", keep_newlines=True))
        for item in r.status.get("drift") or []:
            click.echo(printable(f"  drift: {item}"))
    for line in notes:  # suspensions and operator actions (cli/operate.py)
        click.echo(line)


def _short(error: str | None, at: str | None) -> str:
    if not error:
        return "-"
    first = error.splitlines()[0]
    text = first if len(first) <= 60 else first[:57] + "..."
    return f"{at} {text}" if at else text
