"""`reconcile plan`, `reconcile apply` and `reconcile validate` on a local repository (CLI:
parse -> engine -> render).

    reconcile validate [PATH]            the files only: every error at once, no store
    reconcile plan [PATH] [-out FILE]    the plan (a dry-run); -out saves it
    reconcile apply [PATH]               plan, ask at a terminal (unless -y), apply
    reconcile apply FILE                 apply exactly a saved plan, if nothing moved since
    reconcile [PATH]                     plan and apply without asking (scripts, as always)

PATH defaults to the root of the git repository the current directory is in. Hints that
are not part of the plan (uncommitted edits it does not include, a store that does not exist
yet) go to stderr, so that `-o json` stays clean.

A saved plan is JSON: the plan, the repositories with their ref and commit, the options it
was made with, the store's URL (without credentials) and a fingerprint of what the store
held for those repositories (`fingerprint_of` in reconciler/engine/stages.py). Applying it
plans again at the same commits and applies only if the store still has that fingerprint
and the plan is the same: what you reviewed is what is applied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.output import echo_diagnostics, echo_json
from reconciler.core.errors import ConfigError, ReconcilerError, UserError
from reconciler.core.repo_root import repository_root
from reconciler.core.terminal_text import printable
from reconciler.core.url_credentials import strip_credentials
from reconciler.steps.default_pull import UNCOMMITTED_WARNING
from reconciler.store.url import sqlite_path, store_exists

if TYPE_CHECKING:
    from reconciler.core.masking import Masker
    from reconciler.engine.stages import Planned, ReconcileOutcome, ReconcileRequest
    from reconciler.plan.model import Plan

SAVED_PLAN_FORMAT = "reconciler-saved-plan"
SAVED_PLAN_VERSION = 1
CONFIRM_PROMPT = "Apply these changes? Only 'yes' is accepted"


# -- which repositories ------------------------------------------------------------------------


def default_repositories(paths: Sequence[str]) -> tuple[str, ...]:
    """The paths given, else the root of the repository the current directory is in (as a
    path relative to it, so that messages name files as the user sees them), else `.` (for
    git's own "not a git repository")."""
    if paths:
        return tuple(paths)
    root = repository_root()
    if root is None:
        return (".",)
    return (os.path.relpath(root),)


# -- plan and apply ----------------------------------------------------------------------------


def _request(
    repositories: Sequence[str], options: dict[str, Any], **extra: Any
) -> ReconcileRequest:
    from reconciler.engine.stages import ReconcileRequest
    from reconciler.settings import resolve_settings

    fields: dict[str, Any] = {
        "repositories": default_repositories(repositories),
        "ref": options.get("ref") or "HEAD",
        "worktree": options["worktree"],
        "prefect_glob": options["prefect_glob"],
        "settings": resolve_settings(
            flags={"store": options["store_url"], "step_cache": options.get("step_cache_url")}
        ),
        "dry_run": options["dry_run"],
        "strict": options["strict"],
        "skip_build": options["skip_build"],
        "prune": not options["no_prune"],
        "allow_empty": options["allow_empty"],
        "adopt": options.get("adopt", False),
        "allow_install": options["allow_install"],
        "quiet": options["quiet"],
    }
    fields.update(extra)
    return ReconcileRequest(**fields)


def run(
    repositories: Sequence[str],
    options: dict[str, Any],
    *,
    ask: bool,
    out: str | None,
    step_output: Callable[[str], None],
    expected_revision: int | None = None,
    show_plan: bool = True,
) -> ReconcileOutcome:
    """Plan (and unless a dry-run, apply) as the options say; print; exit with the code
    when it is not 0, else return the outcome. `expected_revision`: apply only at that store
    revision (the plan `reconcile adopt` showed); `show_plan=False`: print it not again."""
    from reconciler.engine.stages import reconcile

    if out and options["worktree"]:
        raise UserError(
            "a saved plan needs a commit: -out cannot be used with --worktree",
            "commit the changes, then run `reconcile plan -out FILE`",
        )
    shown = False

    def confirm(planned: Planned) -> bool:
        nonlocal shown
        _show_plan(planned.plan, planned.masker, options)
        _uncommitted_hint(request, planned.plan)  # before the question, where it matters
        shown = True
        if not planned.plan.has_changes:
            return True
        answer = click.prompt(
            f"\n{CONFIRM_PROMPT}", default="", show_default=False, err=True
        ).strip()
        return answer == "yes"

    request = _request(
        repositories,
        options,
        step_output=step_output,
        gate=confirm if ask else None,
        expected_revision=expected_revision,
    )
    existed = store_exists(request.settings.store_url)
    if options["dry_run"] and not existed:
        _hint(
            f"planning against an empty store at {_store_shown(request.settings.store_url)}: "
            "every object shows as new (check --store / RECONCILER_STORE)"
        )
    outcome = reconcile(request)
    if not shown:
        _uncommitted_hint(request, outcome.plan)
    if outcome.declined:
        click.secho("error: apply cancelled; nothing was applied", fg="red", err=True)
        sys.exit(1)
    if not shown and show_plan:
        _show_plan(outcome.plan, outcome.masker, options)
    _finish(outcome, options, out=out, request=request)
    return outcome


def _show_plan(plan: Plan, mask: Masker, options: dict[str, Any]) -> None:
    echo_diagnostics(plan.diagnostics, mask, quiet=options["quiet"])
    output = options["output"]
    if output == "json":
        from reconciler.plan.render_json import render_json

        click.echo(render_json(plan, mask=mask))
    elif output == "markdown":
        from reconciler.plan.render_markdown import render_markdown  # imports jinja2

        click.echo(render_markdown(plan, mask=mask))
    elif options["quiet"]:
        from reconciler.plan.render_text import NO_CHANGES_TEXT, footer_text

        click.echo(
            footer_text(plan.summary, plan.unchanged) if plan.has_changes else NO_CHANGES_TEXT
        )
    else:
        from reconciler.plan.render_text import render_text

        color = not options["no_color"] and sys.stdout.isatty()
        click.echo(render_text(plan, color=color, mask=mask), color=color)


def _finish(
    outcome: ReconcileOutcome,
    options: dict[str, Any],
    *,
    out: str | None,
    request: ReconcileRequest,
) -> None:
    plan, mask = outcome.plan, outcome.masker
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
    if out:
        _save_plan(out, outcome, request)
        click.echo(f"Saved the plan to {out}: apply it with `reconcile apply {out}`", err=True)
    if options["detailed_exitcode"] and plan.has_changes:
        sys.exit(2)


# -- hints on stderr ---------------------------------------------------------------------------


def _hint(text: str) -> None:
    click.secho(f"hint: {printable(text, keep_newlines=True)}", fg="yellow", err=True)


def _store_shown(url: str) -> str:
    if url.startswith("sqlite:///") or "://" not in url:
        return os.path.abspath(sqlite_path(url))
    return strip_credentials(url)


def _uncommitted_hint(request: ReconcileRequest, plan: Plan) -> None:
    """Edits not committed to the files the plan read (or new files matching the glob) are
    not in a plan of HEAD: say so, or "No changes." reads as "my edit is fine"."""
    if request.worktree or request.ref != "HEAD":
        return
    for source in plan.sources:
        try:
            changed = uncommitted_files(source.location, source.files, request.prefect_glob)
        except (OSError, subprocess.SubprocessError):
            continue
        if changed:
            names = ", ".join(changed)
            _hint(
                f"{len(changed)} uncommitted change(s) in {names} are not in this plan; "
                "use --worktree to plan them"
            )


def uncommitted_files(location: str, read: Sequence[str], prefect_glob: str) -> list[str]:
    """Files of the repository at `location`, relative to its root, that differ from HEAD
    (changed, staged, deleted or new and not ignored) and that the plan reads: one of `read`,
    or a new file matching `prefect_glob`."""
    done = subprocess.run(
        ["git", "-C", location, "status", "--porcelain=v1", "-z", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return []
    entries = done.stdout.split("\0")
    changed: list[str] = []
    skip = False
    for entry in entries:
        if skip:
            skip = False
            continue
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        if status[0] in "RC":
            skip = True  # the next entry is the old name
        pattern = prefect_glob if "/" in prefect_glob else f"*{prefect_glob}"
        if path in read or fnmatch(path, pattern) or fnmatch(os.path.basename(path), prefect_glob):
            changed.append(path)
    return sorted(set(changed))


# -- saved plans -------------------------------------------------------------------------------


def saved_plan_argument(arguments: Sequence[str]) -> str | None:
    """The saved plan's file when the one argument is a file (a repository is a directory)."""
    if len(arguments) == 1 and os.path.isfile(arguments[0]):
        return arguments[0]
    return None


def _save_plan(out: str, outcome: ReconcileOutcome, request: ReconcileRequest) -> None:
    from reconciler.plan.render_json import render_json

    plan = outcome.plan
    document = {
        "format": SAVED_PLAN_FORMAT,
        "version": SAVED_PLAN_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "store": strip_credentials(request.settings.store_url),
        "fingerprint": outcome.fingerprint,
        "sources": [
            {
                "repo": source.repo,
                "location": os.path.abspath(source.location),
                "ref": source.ref,
                "commit": source.commit,
            }
            for source in plan.sources
        ],
        "options": {
            "prefect_glob": request.prefect_glob,
            "strict": request.strict,
            "skip_build": request.skip_build,
            "prune": request.prune,
            "allow_empty": request.allow_empty,
            "allow_install": request.allow_install,
        },
        "plan": json.loads(render_json(plan, mask=outcome.masker)),
    }
    try:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True, ensure_ascii=False)
            handle.write("\n")
    except OSError as exc:
        raise UserError(f"cannot write the plan to {out}: {exc.strerror}") from None


def _read_saved(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{path} is not a saved plan ({exc})",
            "give a repository directory, or a file written by `reconcile plan -out FILE`",
        ) from None
    if not isinstance(document, dict) or document.get("format") != SAVED_PLAN_FORMAT:
        raise UserError(
            f"{path} is not a saved plan",
            "give a repository directory, or a file written by `reconcile plan -out FILE`",
        )
    if document.get("version") != SAVED_PLAN_VERSION:
        raise UserError(
            f"{path} is a saved plan of format version {document.get('version')}; this "
            f"reconcile reads version {SAVED_PLAN_VERSION}",
            "plan again with this version",
        )
    shapes = {"sources": list, "fingerprint": str, "options": dict, "plan": dict, "store": str}
    broken = [key for key, kind in shapes.items() if not isinstance(document.get(key), kind)]
    if broken or not document["sources"]:
        raise UserError(
            f"{path} is a damaged saved plan ({', '.join(broken) or 'no repositories'})",
            "plan again: reconcile plan -out FILE",
        )
    return document


def _stale(path: str, reason: str) -> UserError:
    return UserError(
        f"the saved plan {path} is stale: {reason}; nothing was applied",
        "plan again (reconcile plan -out FILE), review it, and apply the new file",
    )


def apply_saved(path: str, options: dict[str, Any]) -> None:
    """Apply the plan saved in `path`, only if the commits and the store are as they were."""
    from reconciler.engine.stages import fingerprint_of, reconcile
    from reconciler.sources.git import open_repository

    document = _read_saved(path)
    given = [f"--{name}" for name in ("worktree", "ref") if options.get(name)]
    if given:
        raise UserError(
            f"a saved plan is applied as it was made: {' and '.join(given)} cannot be given "
            "with it",
            f"run `reconcile apply {path}` alone",
        )
    sources = document["sources"]
    refs = {source["ref"] for source in sources}
    if len(refs) != 1:
        raise UserError(f"{path}: the saved plan's repositories were read at different refs")
    ref = refs.pop()
    for source in sources:
        now = open_repository(source["location"], ref=ref).commit
        if now != source["commit"]:
            raise _stale(
                path,
                f"{source['location']} was at {str(source['commit'])[:12]} when planned; "
                f"{ref} is now {str(now)[:12]}",
            )
    from reconciler.plan.render_json import render_json

    saved_store = document["store"]

    def check(planned: Planned) -> bool:
        if fingerprint_of(planned) != document["fingerprint"]:
            raise _stale(
                path, "the store changed since it was planned (another apply or the daemon)"
            )
        commits = {os.path.abspath(s.location): s.commit for s in planned.plan.sources}
        for source in sources:
            if commits.get(source["location"]) != source["commit"]:
                raise _stale(path, f"{source['location']} moved while applying")
        if not planned.desired.built.build_plans:
            now = json.loads(render_json(planned.plan, mask=planned.masker))
            if _comparable(now) != _comparable(document["plan"]):
                raise _stale(path, "planning again at the same commit gives another plan")
        return True

    saved_options = document["options"]
    request = _request(
        tuple(source["location"] for source in sources),
        {
            **options,
            **saved_options,
            "ref": ref,
            "dry_run": False,
            "no_prune": not saved_options["prune"],
        },
        gate=check,
        prune=saved_options["prune"],
    )
    current_store = strip_credentials(request.settings.store_url)
    if not _same_store(current_store, saved_store):
        raise UserError(
            f"the saved plan {path} was made against the store {saved_store}; this apply "
            f"would write to {current_store}",
            "give the same --store (or RECONCILER_STORE) as when planning",
        )
    outcome = reconcile(request)
    _show_plan(outcome.plan, outcome.masker, options)
    _finish(outcome, {**options, "detailed_exitcode": False}, out=None, request=request)


def _same_store(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        if url.startswith("sqlite:///") or "://" not in url:
            return os.path.realpath(sqlite_path(url))
        return url

    return norm(a) == norm(b)


def _comparable(plan_json: dict[str, Any]) -> Any:
    """What must be equal between a saved plan and the plan made again to apply it: the
    changes and their summary (not the revision, which every write moves, nor how the
    repositories were named)."""
    return {key: plan_json.get(key) for key in ("changes", "summary", "unchanged")}


# -- validate ----------------------------------------------------------------------------------


def validate(
    paths: Sequence[str],
    *,
    ref: str | None,
    prefect_glob: str,
    strict: bool,
    output: str,
    store_url: str | None = None,
) -> None:
    """Read and check every file of the repositories (working copy unless `ref`): all the
    errors at once. Objects the files use but do not declare (a pool made by hand) are
    looked up in the store when there is one (read-only, never created); without one they
    are reported missing. Exit 1 on any error."""
    from reconciler.engine.stages import ReconcileRequest, validate_files
    from reconciler.model.observed import ObservedState
    from reconciler.settings import resolve_settings

    request = ReconcileRequest(
        repositories=default_repositories(paths),
        ref=ref or "HEAD",
        worktree=ref is None,  # the files as they are on disk
        prefect_glob=prefect_glob,
        strict=strict,
    )
    settings = resolve_settings(flags={"store": store_url})
    observed = ObservedState(revision=0)
    if store_exists(settings.store_url):
        try:
            store = settings.open_store(readonly=True)
            try:
                observed = store.observe()
            finally:
                store.close()
        except ReconcilerError as exc:
            _hint(f"the store could not be read ({exc.message}); checking the files alone")
    try:
        diagnostics, files = validate_files(request, observed)
    except ConfigError as exc:
        diagnostics, files = list(exc.diagnostics), []
    # Validating plans no run: "runs will clone the default branch, since the files are
    # uncommitted" is for a plan of the working copy, not for checking it.
    diagnostics = [d for d in diagnostics if d.message != UNCOMMITTED_WARNING]
    errors = [d for d in diagnostics if d.is_error]
    if output == "json":
        echo_json(
            {
                "valid": not errors,
                "files": files,
                "diagnostics": [d.to_json() for d in diagnostics],
            }
        )
    else:
        echo_diagnostics(diagnostics)
    if errors:
        count = len(errors)
        click.secho(
            f"error: {count} error{'s' if count != 1 else ''}; the files are not valid",
            fg="red",
            err=True,
        )
        sys.exit(1)
    if output == "text":
        noun = "file" if len(files) == 1 else "files"
        click.echo(f"Valid: {len(files)} {noun} ({', '.join(files)}).")
