"""How the CLI talks to people: diagnostics and errors on stderr, never a traceback for a
user error, tables and JSON on stdout."""

from __future__ import annotations

import datetime
import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import click

from reconciler.core.diagnostics import Diagnostic, sorted_diagnostics
from reconciler.core.errors import ConfigError, ReconcilerError
from reconciler.core.terminal_text import printable
from reconciler.settings import settings_for_store
from reconciler.store.base import Store
from reconciler.store.url import sqlite_path, store_exists

P = ParamSpec("P")
R = TypeVar("R")


DEPLOYMENT_COLUMNS = (
    "deployment",
    "pool/queue",
    "paused",
    "schedules",
    "last run",
    "next run",
    "owner",
    "commit",
)
"""The table of `deployment ls`, read from the store or through --server."""
output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for scripts (never cut; times in ISO 8601 UTC).",
)
"""`-o table|json` of every read command that lists."""
inspect_output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["json"]),
    default="json",
    show_default=True,
    help="Inspect prints JSON (accepted for scripts that pass -o json everywhere).",
)
"""`-o json` of every `inspect`: JSON is all it prints, and scripts may say so."""


def echo_diagnostics(
    diagnostics: Sequence[Diagnostic], mask: Callable[[str], str] = str, *, quiet: bool = False
) -> None:
    for diag in sorted_diagnostics(diagnostics):
        if quiet and not diag.is_error:
            continue
        color = "red" if diag.is_error else "yellow"
        text = diag.render(mask)
        head, _, rest = text.partition("\n")
        click.secho(head, fg=color, err=True)
        if rest:
            click.echo(rest, err=True)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn ReconcilerError into a clean message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            echo_diagnostics(exc.diagnostics)
            message = printable(exc.message, keep_newlines=True)
            click.secho(f"error: {message}; nothing was applied", fg="red", err=True)
            sys.exit(1)
        except ReconcilerError as exc:
            message = printable(exc.message, keep_newlines=True)
            click.secho(f"error: {message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {printable(exc.hint, keep_newlines=True)}", err=True)
            sys.exit(1)

    return wrapper


def open_for_reading(url: str | None) -> Store:
    """The store, read-only and never created. A store that does not exist reads as empty, so
    say so: a mistyped --store, or the default path run from another directory, looks the
    same as a store with nothing in it."""
    store = settings_for_store(url).open_store(readonly=True)
    if not store_exists(store.url):
        click.secho(
            f"warning: there is no store at {sqlite_path(store.url)}; nothing has been applied "
            "there yet (check --store / RECONCILER_STORE)",
            fg="yellow",
            err=True,
        )
    return store


def iso_time(timestamp: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC, as every other time the CLI prints (milliseconds)."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


def with_iso_times(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    """`record` with its epoch-seconds `fields` (default: `scheduled_time`) as ISO 8601 UTC
    text: the CLI's JSON has no epoch floats."""
    out = dict(record)
    for name in fields or ("scheduled_time",):
        value = out.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = iso_time(float(value))
    return out


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell; every cell escaped (values come from the store)."""
    cells = [[("" if v is None else printable(str(v))) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
