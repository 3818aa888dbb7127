"""Plans of any ref of a watched repository, for pull requests (daemon: fetch -> plan, no apply).

`reconcile plan --server URL --repository NAME --ref REF` and the GitHub Action ask the daemon
through `GET /api/v1/repositories/{name}/plan?ref=REF`: the daemon resolves the ref in its
repository (a local one) or fetches it into its cache (a remote one: a branch, a tag,
`refs/pull/N/head`, a commit), plans it as a dry-run against the live store and returns the
plan as JSON, text and Markdown. Nothing is written: not the store (opened read-only), not
the status, not the audit log. CI therefore needs the daemon's read token, not the store's
credentials.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from reconciler.core.errors import ConfigError, PlanRefused, SourceError, UserError
from reconciler.daemon.controller import RepoController
from reconciler.daemon.sources import RemoteSource
from reconciler.engine.stages import ReconcileRequest, reconcile

_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}$")


def check_ref(ref: str) -> str:
    """A ref as given by a user: a branch, tag, `refs/...` name or commit id. Refuses what git
    would read as an option or a revision expression."""
    if not _REF.match(ref) or ".." in ref or ref.endswith((".lock", "/", ".")):
        raise UserError(
            f"{ref!r} is not a ref this daemon plans",
            "give a branch, a tag, refs/pull/N/head or a commit id (letters, digits, . _ / -)",
        )
    return ref


def resolve_ref(controller: RepoController, ref: str) -> str:
    """The commit `ref` names in the repository, fetched first for a remote one."""
    source = controller.source
    if isinstance(source, RemoteSource):
        return source.remote.fetch_ref(ref)
    done = subprocess.run(
        ["git", "-C", source.location, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise SourceError(
            f"ref {ref!r} does not exist in repository {controller.config.name!r}",
            "push the branch first, or give a branch, tag or commit id that exists",
        )
    return done.stdout.strip()


def plan_ref(controller: RepoController, ref: str) -> dict[str, Any]:
    """The plan of `ref` against the live store, in every form. Invalid files are not an
    error of the request: the answer carries them (`errors`), so that a pull request shows
    them. Raises UserError for an unknown ref or an unreachable remote."""
    from reconciler.plan.render_json import render_json
    from reconciler.plan.render_markdown import render_markdown
    from reconciler.plan.render_text import render_text

    name = controller.config.name
    commit = resolve_ref(controller, check_ref(ref))
    answer: dict[str, Any] = {"repository": name, "ref": ref, "commit": commit}
    request = ReconcileRequest(
        repositories=(controller.source.location,),
        ref=commit,
        prefect_glob=controller.config.prefect_glob,
        settings=controller.runtime.settings.plan_settings,
        dry_run=True,
        prune=controller.config.prune,
        allow_empty=controller.config.allow_empty,
    )
    try:
        with controller.runtime.planning_lock:
            outcome = reconcile(request, environ=controller.runtime.environ)
    except ConfigError as exc:
        errors = [d.render() for d in exc.diagnostics if d.is_error]
        return {**answer, **_refused(name, commit, errors)}
    except PlanRefused as exc:
        return {**answer, **_refused(name, commit, [exc.message])}
    plan, mask = outcome.plan, outcome.masker
    summary = plan.summary
    return {
        **answer,
        "valid": not outcome.errors,
        "errors": [mask(d.render()) for d in outcome.errors],
        "has_changes": plan.has_changes,
        "summary": {"add": summary.add, "change": summary.change, "destroy": summary.destroy},
        "plan": json.loads(render_json(plan, mask=mask)),
        "text": render_text(plan, color=False, mask=mask),
        "markdown": render_markdown(plan, mask=mask),
    }


def _refused(name: str, commit: str, errors: list[str]) -> dict[str, Any]:
    body = "\n".join(errors)
    fence = "```"
    while fence in body:
        fence += "`"
    markdown = (
        f"**{len(errors)} error{'s' if len(errors) != 1 else ''}** in `{name}` at "
        f"`{commit[:7]}`: nothing would be applied.\n\n{fence}\n{body}\n{fence}"
    )
    return {
        "valid": False,
        "errors": errors,
        "has_changes": False,
        "summary": {"add": 0, "change": 0, "destroy": 0},
        "plan": None,
        "text": body,
        "markdown": markdown,
    }
