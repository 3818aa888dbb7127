"""`reconcile`: plan and apply prefect.yaml from git. `reconcile [PATH...]` is `reconcile apply`
(without asking); `plan`, `apply` and `validate` are in reconciler/cli/local_plan.py."""

from __future__ import annotations

import atexit
import difflib
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
    local_plan,
    onboard,
    operate,
    pools,
    read,
    run_records,
    runs,
    server,
    values,
)
from reconciler.cli.output import user_errors
from reconciler.core.terminal_text import printable
from reconciler.desired.state import DEFAULT_PREFECT_GLOB

if TYPE_CHECKING:
    pass

OUTPUTS = ("text", "json", "markdown")


SYNONYMS = {
    "diff": "plan",
    "preview": "plan",
    "dry-run": "plan",
    "check": "validate",
    "lint": "validate",
    "verify": "validate",
    "up": "apply",
    "deploy": "apply",
    "run": "apply",
    "logs": "flow-run logs",
    "ls": "deployment ls",
    "list": "deployment ls",
}
"""Words people try (from Terraform, kubectl, Prefect): what to suggest for each."""


class DefaultCommandGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to `apply` (scripts
    run `reconcile [PATH]`); a word that is neither a command nor an existing path is
    refused, with the command it most likely meant."""

    default_command = "apply"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if (
            args
            and not ctx.resilient_parsing  # shell completion parses partial command lines
            and args[0] not in self.commands
            and not args[0].startswith("-")
        ):
            _refuse_unknown_word(args[0], sorted(self.commands))
        if not args and ctx.resilient_parsing:
            pass  # completing the first word: offer the commands, not apply's arguments
        elif not args or (
            args[0] not in self.commands and args[0] not in ("--help", "-h", "--version")
        ):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def _refuse_unknown_word(word: str, commands: list[str]) -> None:
    """`reconcile diff`: not a command; a path only if it exists. What looks like a path
    (`./x`, `a/b`) goes on, to be refused as a path that does not exist."""
    if os.path.lexists(word) or "/" in word or os.sep in word or word.startswith((".", "~")):
        return
    guess = SYNONYMS.get(word.lower())
    if guess is None:
        close = difflib.get_close_matches(word, commands, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f" (did you mean {guess}?)" if guess else ""
    raise click.UsageError(
        f"no such command or repository path: {printable(word)}{hint}\n"
        "  commands: " + ", ".join(commands)
    )


@click.group(cls=DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
def cli() -> None:
    """Make git the source of truth for Prefect deployments and work pools.

    \b
    reconcile validate [PATH]       check the files (no store needed)
    reconcile plan [PATH]           show what would change (touches nothing)
    reconcile apply [PATH]          plan, ask at a terminal, and apply to the store
    reconcile plan -out FILE        save the plan; `reconcile apply FILE` applies exactly it
    reconcile [PATH]                plan and apply without asking (for scripts)

    PATH defaults to the git repository the current directory is in (any subdirectory).
    The default store is `.reconciler/state.db` at that repository's root.
    """


def plan_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options `plan` and `apply` share (one list: both read the files the same way)."""
    options = [
        click.option("--ref", default=None, help="Commit, branch or tag to read [default: HEAD]."),
        click.option(
            "--worktree", is_flag=True, help="Read uncommitted files from the working copy."
        ),
        click.option(
            "--prefect-file",
            "prefect_glob",
            default=DEFAULT_PREFECT_GLOB,
            show_default=True,
            help="Glob naming the prefect.yaml files (a bare name matches in every directory).",
        ),
        click.option(
            "--store",
            "store_url",
            metavar="URL",
            help="Store URL (default $RECONCILER_STORE, else "
            "sqlite:///<repository root>/.reconciler/state.db), or a Prefect server to apply "
            "into: prefect+https://HOST/api (docs/prefect-target.md).",
        ),
        click.option(
            "--output",
            "-o",
            type=click.Choice(OUTPUTS),
            default="text",
            show_default=True,
            help="How to print the plan.",
        ),
        click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes."),
        click.option("--strict", is_flag=True, help="Unknown keys and warnings are errors."),
        click.option(
            "--skip-build", is_flag=True, help="Apply without running build and push steps."
        ),
        click.option(
            "--step-cache",
            "step_cache_url",
            metavar="URL",
            help="With a Prefect server as --store: the store keeping the results of build "
            "and push steps (default $RECONCILER_STEP_CACHE, else "
            "sqlite:///<repository root>/.reconciler/state.db).",
        ),
        click.option(
            "--allow-install", is_flag=True, help="Let a step install the packages it `requires`."
        ),
        click.option("--no-prune", is_flag=True, help="Never delete objects that left the files."),
        click.option("--allow-empty", is_flag=True, help="Allow deleting every object of a file."),
        click.option(
            "--adopt",
            is_flag=True,
            help="Take over objects of other repositories that the files declare (shown as adopt).",
        ),
        click.option("--no-color", is_flag=True, help="Plain text output."),
        click.option(
            "--quiet", "-q", is_flag=True, help="Print only the summary line (and errors)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command("apply")
@click.argument("repositories", nargs=-1, metavar="[PATH]... | PLANFILE")
@click.option("--dry-run", is_flag=True, help="Plan only: run no step, write nothing.")
@click.option(
    "--auto-approve",
    "-y",
    is_flag=True,
    help="Apply without asking (asked only when stdin is a terminal).",
)
@plan_options
@user_errors
def apply_command(repositories: tuple[str, ...], **options: Any) -> None:
    """Plan the repository (default: the one the current directory is in) and apply the plan.

    At a terminal, the plan is shown and applied only after you answer `yes` (skip with -y);
    when stdin is not a terminal (CI, scripts), it is applied without asking. Given a file
    saved by `reconcile plan -out FILE`, applies exactly that plan, refused if the store or
    the commit moved since.
    """
    saved = local_plan.saved_plan_argument(repositories)
    if saved is not None:
        local_plan.apply_saved(saved, options)
        return
    ask = not options["dry_run"] and not options.pop("auto_approve") and sys.stdin.isatty()
    local_plan.run(repositories, options, ask=ask, out=None, step_output=_to_stderr())


@cli.command("plan")
@click.argument("repositories", nargs=-1, metavar="[PATH]...")
@click.option(
    "--out",
    "-out",
    "out",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True),
    help="Save the plan to FILE, for `reconcile apply FILE` (applies exactly it).",
)
@click.option(
    "--server",
    "server_url",
    metavar="URL",
    help="Plan through the daemon at URL (with --repository and --ref): for pull requests.",
)
@click.option("--repository", metavar="NAME", help="With --server: a repository it watches.")
@plan_options
@user_errors
def plan_command(repositories: tuple[str, ...], **options: Any) -> None:
    """Show what `apply` would change; run no step, write nothing (= `reconcile --dry-run`).

    With --server URL --repository NAME --ref REF: plan a ref of a repository the daemon
    watches, against the live store, with only the daemon's token (RECONCILER_TOKEN) in CI.
    """
    server_url, repository = options.pop("server_url"), options.pop("repository")
    if server_url or repository:
        from reconciler.cli.operate import plan_on_server, server_plan_request

        server_url, repository, ref = server_plan_request(server_url, repository, options["ref"])
        sys.exit(
            plan_on_server(
                server_url, repository, ref, options["output"], options["detailed_exitcode"]
            )
        )
    out = options.pop("out")
    options["dry_run"] = True
    local_plan.run(repositories, options, ask=False, out=out, step_output=_to_stderr())


@cli.command("validate")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option("--ref", default=None, help="Validate this commit instead of the working copy.")
@click.option(
    "--prefect-file",
    "prefect_glob",
    default=DEFAULT_PREFECT_GLOB,
    show_default=True,
    help="Glob naming the prefect.yaml files (a bare name matches in every directory).",
)
@click.option("--strict", is_flag=True, help="Unknown keys and warnings are errors.")
@click.option(
    "--output",
    "-o",
    type=click.Choice(("text", "json")),
    default="text",
    show_default=True,
    help="text: FILE:LINE:COL lines on stderr; json: the diagnostics on stdout.",
)
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="Where to look up objects the files use but do not declare, when it exists "
    "(read-only; default as for plan).",
)
@user_errors
def validate_command(
    paths: tuple[str, ...],
    ref: str | None,
    prefect_glob: str,
    strict: bool,
    output: str,
    store_url: str | None,
) -> None:
    """Check the files of the repository (default: the one the current directory is in):
    every error, with FILE:LINE:COL, in one pass. Reads the working copy (uncommitted
    edits too) unless --ref. Needs no store (one that exists is read, never written, for
    objects the files use but do not declare). Exit 1 on any error."""
    local_plan.validate(
        paths,
        ref=ref,
        prefect_glob=prefect_glob,
        strict=strict,
        output=output,
        store_url=store_url,
    )


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
    shown = local_plan.run(repositories, options, ask=False, out=None, step_output=_to_stderr())
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
    local_plan.run(
        repositories,
        {**options, "dry_run": False},
        ask=False,
        out=None,
        step_output=_to_stderr(),
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
