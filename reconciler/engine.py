"""The engine: one reconcile of one or more repositories, from sources to an applied plan.

    sources -> load + validate -> desired state -> plan -> (dry-run stops) -> apply

Used by the CLI (and later the daemon). Pure stages get their inputs from here; the store is
opened read-only for a dry-run, which therefore creates and changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.apply import ApplyResult, apply_plan
from reconciler.desired import DEFAULT_PREFECT_GLOB
from reconciler.diagnostics import Diagnostic
from reconciler.errors import ConfigError, PlanRefused, SourceError, StaleStateError
from reconciler.masking import Masker, strings_in
from reconciler.plan.model import Plan
from reconciler.plan.planner import PlanOptions, make_plan
from reconciler.sources.git import open_repository
from reconciler.spec.build import BuildOptions, BuildResult, RepoInput, build_desired
from reconciler.store import open_store
from reconciler.store.base import Store

MAX_PLAN_ATTEMPTS = 5


@dataclass(frozen=True)
class ReconcileRequest:
    repositories: Sequence[str] = (".",)
    ref: str = "HEAD"
    worktree: bool = False
    prefect_glob: str = DEFAULT_PREFECT_GLOB
    store_url: str | None = None
    dry_run: bool = False
    strict: bool = False
    skip_build: bool = False
    prune: bool = True
    allow_empty: bool = False


@dataclass
class ReconcileOutcome:
    plan: Plan
    masker: Masker
    applied: ApplyResult | None = None
    attempts: int = 1

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.plan.diagnostics if d.is_error]


def reconcile(
    request: ReconcileRequest, environ: Mapping[str, str] | None = None
) -> ReconcileOutcome:
    """Plan (and unless dry-run, apply). Raises ConfigError for invalid files, SourceError for
    unreadable repositories; returns an outcome whose plan may carry refusals (errors)."""
    env = dict(os.environ if environ is None else environ)
    inputs = [
        RepoInput(
            open_repository(path, ref=request.ref, worktree=request.worktree),
            "worktree" if request.worktree else request.ref,
            request.prefect_glob,
        )
        for path in request.repositories
    ]
    _refuse_repeated_repositories(inputs)
    store = open_store(request.store_url, readonly=request.dry_run)
    try:
        for attempt in range(1, MAX_PLAN_ATTEMPTS + 1):
            outcome, built = _plan(store, inputs, request, env)
            outcome.attempts = attempt
            if request.dry_run or outcome.errors:
                return outcome
            _refuse_unbuilt(built, request)
            try:
                outcome.applied = apply_plan(store, outcome.plan, outcome.masker)
                return outcome
            except StaleStateError:
                continue  # another writer got there first: plan again from what it wrote
        raise StaleStateError(
            f"the store kept changing while planning ({MAX_PLAN_ATTEMPTS} attempts)",
            "try again when the other writers are done",
        )
    finally:
        store.close()


def _refuse_repeated_repositories(inputs: Sequence[RepoInput]) -> None:
    """One repository named twice (`repo` and `./repo/`, or two clones of one origin) would
    declare every object twice and point each error at itself."""
    seen: dict[str, str] = {}
    for item in inputs:
        snapshot = item.snapshot
        if snapshot.repo_id in seen:
            raise SourceError(
                f"{seen[snapshot.repo_id]} and {snapshot.display_root} are the same repository "
                f"({snapshot.repo_id})",
                "name each repository once",
            )
        seen[snapshot.repo_id] = snapshot.display_root


def _plan(
    store: Store, inputs: list[RepoInput], request: ReconcileRequest, env: dict[str, str]
) -> tuple[ReconcileOutcome, BuildResult]:
    observed = store.observe()
    built = build_desired(
        inputs,
        observed,
        BuildOptions(environ=env, strict=request.strict, build_outputs_known=request.skip_build),
    )
    masker = Masker(built.secrets)
    if built.desired is None:
        raise ConfigError([masker.diagnostic(d) for d in built.diagnostics])
    plan = make_plan(
        built.desired, observed, PlanOptions(prune=request.prune, allow_empty=request.allow_empty)
    )
    return ReconcileOutcome(plan, _hiding_replaced_secrets(plan, masker)), built


def _hiding_replaced_secrets(plan: Plan, masker: Masker) -> Masker:
    """A field that holds a secret now held one before, so its old value is hidden too: a
    rotated password must not show on the left of `old -> (sensitive value)`."""
    replaced = [
        text
        for change in plan.changes
        for diff in change.diffs
        if diff.before_json is not None
        and diff.after_json is not None
        and masker.hides_something_in(diff.after_json)
        for text in strings_in(diff.before)
    ]
    return masker.with_secrets(replaced) if replaced else masker


def _refuse_unbuilt(built: BuildResult, request: ReconcileRequest) -> None:
    if request.skip_build or not built.build_plans:
        return
    names = sorted({p.deployment for p in built.build_plans})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise PlanRefused(
        f"{len(names)} deployment(s) have build or push steps, which this version does not run "
        f"yet: {shown}",
        "run with --skip-build to apply without running them (values they would produce are "
        "left out, with a warning), or use --dry-run to see the plan",
    )
