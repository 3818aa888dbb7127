"""`reconcile variable set|ls|rm` and `reconcile secret set|ls|rm`: the values that
`{{ prefect.variables.NAME }}` and `{{ prefect.blocks.SLUG.NAME }}` placeholders resolve to.

Variables are plain (their values appear in plans). Secrets are block documents: their values
are never printed, and plans show the placeholder, not the value. With a Prefect server as the
store, variables are that server's own (reconciler/prefect_target/variables.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from reconciler.cli import remote
from reconciler.cli.output import (
    echo_json,
    echo_table,
    open_for_reading,
    output_option,
    user_errors,
)
from reconciler.cli.remote import refuse_both, server_option
from reconciler.core.errors import UserError
from reconciler.settings import settings_for_store

store_option = click.option(
    "--store",
    "store_url",
    help="Store URL (default $RECONCILER_STORE); for variables also a Prefect server "
    "(prefect+http(s)://HOST/api).",
)


def _prefect_target(store_url: str | None) -> str | None:
    """The Prefect server `--store` (or $RECONCILER_STORE) names, if it names one: variables
    then live in that server (reconciler/prefect_target/variables.py)."""
    from reconciler.store.url import is_prefect_store

    url = settings_for_store(store_url).store_url
    return url if is_prefect_store(url) else None


def _parse_value(text: str, as_json: bool) -> Any:
    if not as_json:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--json: the value is not valid JSON ({exc.msg} at {exc.pos})") from None


@click.group("variable")
def variable() -> None:
    """Variables for {{ prefect.variables.NAME }}."""


@variable.command("set")
@click.argument("name")
@click.argument("value")
@click.option("--json", "as_json", is_flag=True, help="VALUE is JSON (a number, list, mapping).")
@store_option
@user_errors
def variable_set(name: str, value: str, as_json: bool, store_url: str | None) -> None:
    """Set variable NAME to VALUE (a string, or JSON with --json)."""
    parsed = _parse_value(value, as_json)
    target = _prefect_target(store_url)
    if target is not None:
        from reconciler.prefect_target.variables import set_variable

        set_variable(target, name, parsed)
        click.echo(f'variable "{name}" set')
        return
    store = settings_for_store(store_url).open_store()
    try:
        with store.transaction() as tx:
            tx.set_variable(name, parsed)
    finally:
        store.close()
    click.echo(f'variable "{name}" set')


@variable.command("ls")
@output_option
@store_option
@server_option
@user_errors
def variable_ls(output: str, store_url: str | None, server_url: str | None = None) -> None:
    """Variables and their values."""
    if server_url:
        refuse_both(store_url, server_url)
        return remote.variable_ls(server_url, output)
    target = _prefect_target(store_url)
    if target is not None:
        from reconciler.prefect_target.variables import list_variables

        found = list_variables(target)
    else:
        store = open_for_reading(store_url)
        try:
            found = store.variables()
        finally:
            store.close()
    if output == "json":
        echo_json(found)
        return
    echo_table(["name", "value"], [[k, json.dumps(v)] for k, v in found.items()])


@variable.command("rm")
@click.argument("name")
@store_option
@user_errors
def variable_rm(name: str, store_url: str | None) -> None:
    """Remove variable NAME."""
    target = _prefect_target(store_url)
    if target is not None:
        from reconciler.prefect_target.variables import delete_variable

        existed = delete_variable(target, name)
    else:
        store = settings_for_store(store_url).open_store()
        try:
            with store.transaction() as tx:
                existed = tx.delete_variable(name)
        finally:
            store.close()
    if not existed:
        raise UserError(f'variable "{name}" does not exist', "`reconcile variable ls` lists them")
    click.echo(f'variable "{name}" removed')


def _split_ref(ref: str) -> tuple[str, str]:
    if "/" in ref:
        slug, name = ref.split("/", 1)
    else:
        slug, name = "secret", ref
    if not slug or not name or "." in name:
        raise UserError(
            f"{ref!r} is not a secret reference",
            "use NAME (a `secret` block) or SLUG/NAME; names cannot contain '.'",
        )
    return slug, name


@click.group("secret")
def secret() -> None:
    """Secrets (block documents) for {{ prefect.blocks.SLUG.NAME }}."""


@secret.command("set")
@click.argument("ref", metavar="[SLUG/]NAME")
@click.option("--value", help="The value. Default: read from standard input (safer).")
@click.option("--json", "as_json", is_flag=True, help="The value is JSON (e.g. credentials).")
@store_option
@user_errors
def secret_set(ref: str, value: str | None, as_json: bool, store_url: str | None) -> None:
    """Store a secret. `NAME` alone is a `secret` block: {{ prefect.blocks.secret.NAME }}."""
    slug, name = _split_ref(ref)
    text = value if value is not None else sys.stdin.read().rstrip("\n")
    parsed = _parse_value(text, as_json)
    data = parsed if isinstance(parsed, dict) else {"value": parsed}
    store = settings_for_store(store_url).open_store()
    try:
        with store.transaction() as tx:
            tx.set_block(slug, name, data)
    finally:
        store.close()
    click.echo(f'secret "{slug}/{name}" set')


@secret.command("ls")
@output_option
@store_option
@user_errors
def secret_ls(output: str, store_url: str | None) -> None:
    """Secret names only; values are never shown."""
    store = open_for_reading(store_url)
    try:
        found = store.blocks()
    finally:
        store.close()
    refs = [f"{b.type_slug}/{b.name}" for b in found]
    if output == "json":
        echo_json(refs)
        return
    echo_table(
        ["secret", "placeholder"],
        [[r, "{{ prefect.blocks." + r.replace("/", ".") + " }}"] for r in refs],
    )


@secret.command("rm")
@click.argument("ref", metavar="[SLUG/]NAME")
@store_option
@user_errors
def secret_rm(ref: str, store_url: str | None) -> None:
    """Remove a secret (`NAME`, or `SLUG/NAME` for another block type)."""
    slug, name = _split_ref(ref)
    store = settings_for_store(store_url).open_store()
    try:
        with store.transaction() as tx:
            existed = tx.delete_block(slug, name)
    finally:
        store.close()
    if not existed:
        raise UserError(
            f'secret "{slug}/{name}" does not exist', "`reconcile secret ls` lists them"
        )
    click.echo(f'secret "{slug}/{name}" removed')
