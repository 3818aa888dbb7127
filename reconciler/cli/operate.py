"""Operator commands (CLI: parse -> web API or store -> render): plans of a pull request's
ref through the daemon, sync now, suspend and resume the automatic sync, rollback.

    reconcile plan --server URL --repository NAME --ref REF [-o text|json|markdown]
    reconcile sync NAME --server URL
    reconcile suspend|resume NAME (--server URL | --store URL)
    reconcile rollback NAME --to COMMIT|HISTORY_ID --server URL

What needs the daemon (planning one of its repositories at a ref, syncing now, rolling back)
goes through its web API (`--server`, token from $RECONCILER_TOKEN): the daemon holds the
repository and the lease. Suspending and resuming are also possible with `--store` alone:
the daemon reads the suspension from the store before each attempt, so writing it there is
the same request; a resume written to the store is caught up with at the next poll, commit or
drift check (through `--server` it is caught up with at once). Every action is recorded in
the store's audit log, with the API's actor or `cli (USER@HOST)`.
"""

from __future__ import annotations

import getpass
import socket
from typing import Any
from urllib.parse import quote

import click

from reconciler.cli.output import echo_json, user_errors
from reconciler.cli.read import store_option
from reconciler.cli.remote import ApiClient, refuse_both, server_option
from reconciler.core.errors import UserError
from reconciler.core.terminal_text import printable


def _client(server_url: str | None, what: str) -> ApiClient:
    if not server_url:
        raise UserError(
            f"{what} needs the daemon: give --server URL",
            "the daemon's address (e.g. --server http://127.0.0.1:8420), with its admin token "
            "in RECONCILER_TOKEN",
        )
    return ApiClient(server_url)


def _name(name: str) -> str:
    return quote(name, safe="")


def plan_on_server(
    server_url: str, repository: str, ref: str, output: str, detailed_exitcode: bool
) -> int:
    """Ask the daemon at `server_url` for the plan of `ref` of `repository`; print it in
    `output` form; return the exit code (1 for invalid files, 2 for changes with
    `detailed_exitcode`, else 0). Raises UserError for a refusal of the server."""
    answer = fetch_plan(server_url, repository, ref)
    if output == "json":
        echo_json(answer)
    elif output == "markdown":
        click.echo(answer["markdown"])
    elif answer["valid"]:
        click.echo(answer["text"])
    if not answer["valid"]:
        for line in answer["errors"]:  # each is a rendered diagnostic: "FILE:L:C: error: ..."
            click.secho(printable(line, keep_newlines=True), fg="red", err=True)
        click.secho(
            f"error: {repository} at {answer['commit'][:12]} cannot be applied",
            fg="red",
            err=True,
        )
        return 1
    if detailed_exitcode and answer["has_changes"]:
        return 2
    return 0


def fetch_plan(server_url: str, repository: str, ref: str) -> dict[str, Any]:
    """The daemon's answer to a plan request (see reconciler/daemon/ref_plans.py)."""
    answer: dict[str, Any] = ApiClient(server_url).get(
        f"/repositories/{_name(repository)}/plan", ref=ref
    )
    return answer


def server_plan_request(
    server_url: str | None, repository: str | None, ref: str | None
) -> tuple[str, str, str]:
    """The daemon, repository and ref of `reconcile plan --server URL --repository NAME
    --ref REF` (the command is `plan` in reconciler/cli/main.py), or the UserError saying
    what is missing. For pull requests: CI needs the daemon's read token
    (RECONCILER_TOKEN), not the store's credentials."""
    if not server_url:
        raise UserError(
            "`reconcile plan --repository` plans through the daemon: give --server URL",
            "to plan a local repository, run `reconcile plan [PATH]` "
            "(the same as `reconcile --dry-run`)",
        )
    missing = [flag for flag, value in (("--repository", repository), ("--ref", ref)) if not value]
    if missing:
        raise UserError(
            f"reconcile plan --server needs {' and '.join(missing)}",
            "for example: reconcile plan --server URL --repository flows --ref my-branch",
        )
    assert repository is not None and ref is not None
    return server_url, repository, ref


@click.command("sync")
@click.argument("name")
@server_option
@store_option
@user_errors
def sync(name: str, server_url: str | None, store_url: str | None) -> None:
    """Sync repository NAME now (even while its automatic sync is suspended)."""
    if store_url:
        raise UserError(
            "reconcile sync needs the daemon, not the store: give --server URL",
            "only the daemon that watches the repository can fetch and apply it",
        )
    answer = _client(server_url, "reconcile sync").post(f"/repositories/{_name(name)}/sync")
    click.echo(f"sync of {printable(answer['repository'])} started")


def _suspend(name: str, suspended: bool, server_url: str | None, store_url: str | None) -> None:
    verb = "suspend" if suspended else "resume"
    if server_url:
        refuse_both(store_url, server_url)
        answer = ApiClient(server_url).post(f"/repositories/{_name(name)}/{verb}")
    else:
        answer = _in_store(
            store_url, lambda service, who: service.set_suspended(name, suspended, who)
        )
    state = "suspended" if suspended else "resumed"
    if answer["changed"]:
        click.echo(f"automatic sync of {printable(name)} {state}")
    else:
        click.echo(f"automatic sync of {printable(name)} was already {state}")


def _in_store(store_url: str | None, action: Any) -> dict[str, Any]:
    """Run a web service action directly on the store: same checks, same audit entry."""
    from reconciler.settings import settings_for_store
    from reconciler.store.url import store_exists
    from reconciler.web.errors import WebError
    from reconciler.web.service import WebService

    settings = settings_for_store(store_url)
    if not store_exists(settings.store_url):
        raise UserError(
            f"there is no store at {settings.store_url}",
            "give --store (or RECONCILER_STORE) the store the daemon uses, or --server",
        )
    service = WebService(settings.open_store)
    try:
        result: dict[str, Any] = action(service, cli_actor())
        return result
    except WebError as error:
        raise UserError(error.message, error.hint) from None
    finally:
        service.close()


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli ({user}@{socket.gethostname()})"


@click.command("suspend")
@click.argument("name")
@server_option
@store_option
@user_errors
def suspend(name: str, server_url: str | None, store_url: str | None) -> None:
    """Suspend the automatic sync of repository NAME (Flux's suspend): the daemon applies
    nothing of it until `reconcile resume NAME`; `reconcile sync NAME` still works."""
    _suspend(name, True, server_url, store_url)


@click.command("resume")
@click.argument("name")
@server_option
@store_option
@user_errors
def resume(name: str, server_url: str | None, store_url: str | None) -> None:
    """Resume the automatic sync of repository NAME (after suspend or rollback)."""
    _suspend(name, False, server_url, store_url)


@click.command("rollback")
@click.argument("name")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="COMMIT|HISTORY_ID",
    help="A commit applied before from NAME, or an applied plan's id (`reconcile history`).",
)
@server_option
@store_option
@user_errors
def rollback(name: str, target: str, server_url: str | None, store_url: str | None) -> None:
    """Apply an earlier applied commit of repository NAME now, and suspend its automatic sync
    until `reconcile resume NAME` (Argo CD's rollback)."""
    if store_url:
        raise UserError(
            "reconcile rollback needs the daemon, not the store: give --server URL",
            "the daemon that watches the repository applies the earlier commit",
        )
    answer = _client(server_url, "reconcile rollback").post(
        f"/repositories/{_name(name)}/rollback", {"to": target}
    )
    click.echo(
        f"rollback of {printable(name)} to {answer['commit'][:12]} started; automatic sync "
        f"is suspended until `reconcile resume {printable(name)}`"
    )


RECENT_ACTIONS = 5


def operator_notes(store: Any) -> list[str]:
    """For `reconcile status`: suspended repositories and the latest operator actions."""
    from reconciler.store.overrides import overrides

    lines = [
        f"{hold.name}: automatic sync suspended since {hold.suspended_at} by {hold.actor} "
        f"(`reconcile resume {hold.name}` resumes it)"
        for hold in store.suspended_syncs()
    ]
    lines += [
        f"override: deployment {o.deployment} paused since {o.at} by {o.actor} "
        f"(`reconcile deployment resume {o.deployment}` removes it)"
        for o in overrides(store)
    ]
    recent = [
        e for e in store.audit_log(limit=100) if e.action.startswith(("repository.", "override."))
    ][:RECENT_ACTIONS]
    if recent:
        lines.append("Recent operator actions:")
    for entry in recent:
        outcome = entry.detail.get("outcome", "")
        lines.append(f"  {entry.at}  {entry.action} {entry.target}: {outcome} ({entry.actor})")
    return [printable(line) for line in lines]


def _override(key: str, paused: bool, store_url: str | None) -> None:
    from reconciler.engine import overrides
    from reconciler.settings import settings_for_store
    from reconciler.store.url import store_exists

    settings = settings_for_store(store_url)
    if not store_exists(settings.store_url):
        raise UserError(
            f"there is no store at {settings.store_url}",
            "give --store (or RECONCILER_STORE) the store the deployment is in",
        )
    store = settings.open_store()
    action = "override.pause" if paused else "override.resume"
    try:  # a refusal (UserError) writes nothing, not even to the audit log
        if paused:
            message = overrides.pause(store, key, cli_actor())
        else:
            message = overrides.resume(store, key)
        store.record_audit(cli_actor(), action, key, {"outcome": message})
    finally:
        store.close()
    click.echo(printable(message))


@click.command("pause")
@click.argument("key", metavar="FLOW/NAME")
@store_option
@user_errors
def deployment_pause(key: str, store_url: str | None) -> None:
    """Pause a git-owned deployment now, by an operator override (an emergency stop).

    Its scheduled runs are removed and no new ones are made. Plans and the daemon keep it
    paused, and say so (an override, not drift), until `reconcile deployment resume`.
    """
    _override(key, True, store_url)


@click.command("resume")
@click.argument("key", metavar="FLOW/NAME")
@store_option
@user_errors
def deployment_resume(key: str, store_url: str | None) -> None:
    """Remove the override of `reconcile deployment pause`: the deployment's file decides
    again whether it is paused."""
    _override(key, False, store_url)
