"""`reconcile`: plan and apply prefect.yaml from git. `reconcile [REPO...]` is `reconcile apply`."""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from reconciler import __version__
from reconciler.cli import (
    daemon,
    events,
    onboard,
    operate,
    pools,
    read,
    run_records,
    runs,
    server,
    values,
)
from reconciler.cli.output import echo_diagnostics, user_errors
from reconciler.core.terminal_text import printable
from reconciler.desired.state import DEFAULT_PREFECT_GLOB

if TYPE_CHECKING:
    from reconciler.engine.stages import ReconcileOutcome

OUTPUTS = ("text", "json", "markdown")


class DefaultCommandGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to `apply`."""

    default_command = "apply"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "--version")):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
def cli() -> None:
    """Make git the source of truth for Prefect deployments and work pools.

    \b
    reconcile --dry-run [REPO...]   show what would change (touches nothing)
    reconcile [REPO...]             plan and apply to the store
    reconcile apply --help          every option of those two (output format, --ref, ...)
    """


@cli.command("apply")
@click.argument("repositories", nargs=-1, metavar="[REPO]...")
@click.option("--dry-run", is_flag=True, help="Plan only: run no step, write nothing.")
@click.option("--ref", default="HEAD", show_default=True, help="Commit, branch or tag to read.")
@click.option("--worktree", is_flag=True, help="Read uncommitted files from the working copy.")
@click.option(
    "--prefect-file",
    "prefect_glob",
    default=DEFAULT_PREFECT_GLOB,
    show_default=True,
    help="Glob naming the prefect.yaml files (a bare name matches in every directory).",
)
@click.option(
    "--store",
    "store_url",
    help="Store URL (default $RECONCILER_STORE or sqlite:///.reconciler/state.db), or a "
    "Prefect server to apply into: prefect+https://HOST/api (docs/prefect-target.md).",
)
@click.option("--output", "-o", type=click.Choice(OUTPUTS), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes.")
@click.option("--strict", is_flag=True, help="Unknown keys are errors, not warnings.")
@click.option("--skip-build", is_flag=True, help="Apply without running build and push steps.")
@click.option(
    "--allow-install", is_flag=True, help="Let a step install the packages it `requires`."
)
@click.option("--no-prune", is_flag=True, help="Never delete objects that left the files.")
@click.option("--allow-empty", is_flag=True, help="Allow deleting every object of a file.")
@click.option(
    "--adopt",
    is_flag=True,
    help="Take over objects of other repositories that the files declare (shown as adopt).",
)
@click.option("--no-color", is_flag=True, help="Plain text output.")
@click.option("--quiet", "-q", is_flag=True, help="Print errors only (and the plan).")
@user_errors
def apply_command(repositories: tuple[str, ...], **options: Any) -> None:
    """Plan the repositories (default: the current directory) and apply the plan."""
    run_apply(repositories, options)


def run_apply(
    repositories: tuple[str, ...],
    options: dict[str, Any],
    expected_revision: int | None = None,
    *,
    show_plan: bool = True,
) -> ReconcileOutcome:
    """`reconcile apply` with its options (also `reconcile adopt`): prints the plan, exits 1
    when it is refused; returns the outcome otherwise."""
    # Imported here: the read commands do not need the planning pipeline, and start faster.
    from reconciler.engine.stages import ReconcileRequest, reconcile
    from reconciler.settings import resolve_settings

    request = ReconcileRequest(
        repositories=repositories or (".",),
        ref=options["ref"],
        worktree=options["worktree"],
        prefect_glob=options["prefect_glob"],
        settings=resolve_settings(flags={"store": options["store_url"]}),
        dry_run=options["dry_run"],
        strict=options["strict"],
        skip_build=options["skip_build"],
        prune=not options["no_prune"],
        allow_empty=options["allow_empty"],
        adopt=options["adopt"],
        expected_revision=expected_revision,
        allow_install=options["allow_install"],
        step_output=_to_stderr(),
        quiet=options["quiet"],
    )
    outcome = reconcile(request)
    plan, mask = outcome.plan, outcome.masker
    echo_diagnostics(plan.diagnostics, mask, quiet=options["quiet"])
    color = not options["no_color"] and sys.stdout.isatty()
    if not show_plan:
        pass
    elif options["output"] == "json":
        from reconciler.plan.render_json import render_json

        click.echo(render_json(plan, mask=mask))
    elif options["output"] == "markdown":
        from reconciler.plan.render_markdown import render_markdown  # imports jinja2

        click.echo(render_markdown(plan, mask=mask))
    else:
        from reconciler.plan.render_text import render_text

        click.echo(render_text(plan, color=color, mask=mask), color=color)
    for record in outcome.steps:
        if not options["quiet"]:
            label = record.id or record.name.rsplit(".", 1)[-1]
            click.echo(f"step {label} ({record.file}): {record.status}", err=True)
    if outcome.errors:
        click.secho("error: the plan was refused; nothing was applied", fg="red", err=True)
        sys.exit(1)
    for failure in outcome.step_failures:
        click.secho(
            f"error: {printable(mask(failure.message), keep_newlines=True)}", fg="red", err=True
        )
        if failure.hint:
            click.echo(f"  hint: {printable(mask(failure.hint), keep_newlines=True)}", err=True)
    if outcome.applied is not None and plan.has_changes and options["output"] == "text":
        summary = plan.summary
        adopted = f"{summary.adopt} adopted, " if summary.adopt else ""
        click.echo(
            f"Apply complete! Resources: {adopted}{summary.add} added, {summary.change} changed, "
            f"{summary.destroy} destroyed.",
        )
    if outcome.step_failures:
        click.secho(
            "error: the repositories above were not applied (their steps failed); the others were",
            fg="red",
            err=True,
        )
        sys.exit(1)
    if options["detailed_exitcode"] and plan.has_changes:
        sys.exit(2)
    return outcome


@cli.command("adopt")
@click.argument("repositories", nargs=-1, metavar="[REPO]...")
@click.option("--ref", default="HEAD", show_default=True, help="Commit, branch or tag to read.")
@click.option(
    "--prefect-file",
    "prefect_glob",
    default=DEFAULT_PREFECT_GLOB,
    show_default=True,
    help="Glob naming the prefect.yaml files (a bare name matches in every directory).",
)
@click.option("--store", "store_url", help="Store URL (default $RECONCILER_STORE).")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--no-prune", is_flag=True, help="Never delete objects that left the files.")
@click.option("--no-color", is_flag=True, help="Plain text output.")
@user_errors
def adopt_command(
    repositories: tuple[str, ...],
    ref: str,
    prefect_glob: str,
    store_url: str | None,
    yes: bool,
    no_prune: bool,
    no_color: bool,
) -> None:
    """Take ownership of existing objects the repositories' files declare.

    Shows the plan first (objects to adopt as `=`, with any field that differs), then asks
    before applying it (-y: apply without asking). Objects made by hand or owned by another
    repository are adopted; afterwards they are updated and pruned like any object of the file.
    """
    from reconciler.core.errors import UserError

    options: dict[str, Any] = {
        "ref": ref,
        "worktree": False,
        "prefect_glob": prefect_glob,
        "store_url": store_url,
        "dry_run": True,
        "strict": False,
        "skip_build": False,
        "no_prune": no_prune,
        "allow_empty": False,
        "adopt": True,
        "allow_install": False,
        "quiet": False,
        "no_color": no_color,
        "output": "text",
        "detailed_exitcode": False,
    }
    shown = run_apply(repositories, options)
    plan = shown.plan
    if not plan.has_changes:
        return
    question = f"Apply this plan ({plan.summary.adopt} to adopt)?"
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(
                "nothing was applied: adopting asks for confirmation at a terminal",
                "read the plan above, then run again with -y to apply it",
            )
        if not click.confirm(question, default=False):
            click.echo("Nothing was applied.")
            return
    run_apply(
        repositories,
        {**options, "dry_run": False},
        expected_revision=plan.observed_revision,
        show_plan=False,
    )


cli.add_command(read.deployment)
cli.add_command(pools.work_pool)
cli.add_command(pools.work_queue)
cli.add_command(read.history)
cli.add_command(values.variable)
cli.add_command(values.secret)
cli.add_command(daemon.daemon)
cli.add_command(daemon.status)
cli.add_command(server.server)
cli.add_command(runs.flow_run)
cli.add_command(runs.worker)
cli.add_command(run_records.task_run)
cli.add_command(events.event)
read.deployment.add_command(runs.deployment_run)
read.deployment.add_command(runs.deployment_runs)
cli.add_command(operate.plan)  # `reconcile plan --server ...` (the PR workflow)
cli.add_command(operate.sync)
cli.add_command(operate.suspend)
cli.add_command(operate.resume)
cli.add_command(operate.rollback)
cli.add_command(onboard.import_command)  # `reconcile import` (issue 19)
read.deployment.add_command(operate.deployment_pause)
read.deployment.add_command(operate.deployment_resume)


def main() -> None:
    """Run the CLI. A usage error exits 1, not click's 2: with --detailed-exitcode, 2 means "the
    plan has changes", and a mistyped flag in CI must not read as that.

    The cyclic garbage collector is off: a run is one short process whose objects (parsed
    files, resources, plan) live until it exits, so the collector's full passes over them
    freed nothing and cost a third of a large plan's time (peak memory measured the same).
    Reference counting still frees everything else as usual. For the same reason the process
    ends without tearing those objects down one by one (`_leave`)."""
    gc.disable()
    try:
        _run()
    except SystemExit as exc:
        _leave(exc.code)
        raise
    _leave(0)


def _leave(code: object) -> None:
    """End the process now with `code`, as Python would end it (exit handlers run, output
    flushed), but without freeing every object first: that took 10% of a 1,000-deployment
    dry-run, 0.3 s at 10,000. Returns, for Python's usual exit, when another thread still runs,
    the code is a message, or the output cannot be flushed (a closed pipe is reported as
    usual)."""
    if not (code is None or isinstance(code, int)) or threading.active_count() > 1:
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code or 0)


def _to_stderr() -> Callable[[str], None]:
    """Writes step output lines to the real stderr, fixed now: while a Python step runs, its
    own prints are redirected into its output, and `sys.stderr` with them."""
    stderr = sys.stderr

    def write(line: str) -> None:
        click.echo(line, file=stderr)

    return write


def _run() -> None:
    try:
        cli.main(prog_name="reconcile", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
