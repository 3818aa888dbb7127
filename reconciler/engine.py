"""The engine: one reconcile of one or more repositories, from sources to an applied plan.

    sources -> load + validate -> desired state -> plan -> (dry-run stops) -> apply

Used by the CLI (and later the daemon). Pure stages get their inputs from here; the store is
opened read-only for a dry-run, which therefore creates and changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.apply import ApplyResult, apply_plan
from reconciler.desired import DEFAULT_PREFECT_GLOB
from reconciler.diagnostics import Diagnostic
from reconciler.errors import ConfigError, SourceError, StaleStateError
from reconciler.masking import Masker, strings_in
from reconciler.model import Kind
from reconciler.plan.model import Plan, PlannedStep
from reconciler.plan.planner import PlanOptions, make_plan
from reconciler.sources.git import open_repository
from reconciler.spec.build import BuildOptions, BuildResult, DraftKey, RepoInput, build_desired
from reconciler.spec.default_pull import repository_directory_name
from reconciler.store import open_store
from reconciler.store.base import Fence, ObservedState, Store

if TYPE_CHECKING:  # the step machinery (Docker SDK, jinja2, asyncio) loads only when used
    from reconciler.build_steps import StepRecord, StepRun
    from reconciler.steps.runner import StepFailed, TemplateValues

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
    allow_install: bool = False
    step_output: Callable[[str], None] | None = None
    """Where the output of build and push steps goes, line by line (None: nowhere)."""
    quiet: bool = False
    schedule: bool = False
    """After an apply that changed deployments, run a scheduler tick at once (the daemon)."""
    fence: Fence | None = None
    """Apply only while this lease is held (the daemon's leadership)."""


@dataclass
class ReconcileOutcome:
    plan: Plan
    masker: Masker
    applied: ApplyResult | None = None
    attempts: int = 1
    steps: list[StepRecord] = field(default_factory=list)
    step_failures: list[StepFailed] = field(default_factory=list)
    """Repositories whose steps failed: nothing of them was applied; the others were."""
    scheduled: int = 0
    """Runs the scheduler created right after the apply (new or changed schedules)."""

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
            outcome, built, observed = _plan(store, inputs, request, env)
            outcome.attempts = attempt
            if request.dry_run and built.build_plans and not request.skip_build:
                steps, known = _preview_steps(built, inputs, store, observed, env)
                if known:  # unchanged builds: plan with their recorded outputs
                    outcome, built, observed = _plan(store, inputs, request, env, known)
                outcome.plan = replace(outcome.plan, steps=tuple(steps))
            if request.dry_run or outcome.errors:
                return outcome
            if built.build_plans and not request.skip_build:
                ran, failures = _run_steps(
                    built, inputs, store, observed, outcome.masker, request, env
                )
                applying = [i for i in inputs if i.snapshot.repo_id not in failures]
                if not applying:
                    raise next(iter(failures.values()))
                outcome, built, observed = _plan(store, applying, request, env, ran.outputs)
                outcome.attempts, outcome.steps = attempt, ran.records
                outcome.step_failures = list(failures.values())
                if outcome.errors:
                    return outcome
            try:
                outcome.applied = apply_plan(
                    store, outcome.plan, outcome.masker, fence=request.fence
                )
                if request.schedule and any(
                    c.kind is Kind.DEPLOYMENT for c in outcome.plan.changes
                ):
                    # New or changed schedules get their runs now, not at the next tick.
                    from reconciler.scheduling.scheduler import tick

                    outcome.scheduled = tick(store).created
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
    store: Store,
    inputs: list[RepoInput],
    request: ReconcileRequest,
    env: dict[str, str],
    step_outputs: Mapping[DraftKey, Mapping[str, Any]] | None = None,
) -> tuple[ReconcileOutcome, BuildResult, ObservedState]:
    observed = store.observe()
    built = build_desired(
        inputs,
        observed,
        BuildOptions(
            environ=env,
            strict=request.strict,
            build_outputs_known=request.skip_build,
            step_outputs=step_outputs or {},
        ),
    )
    masker = Masker(built.secrets)
    if built.desired is None:
        raise ConfigError([masker.diagnostic(d) for d in built.diagnostics])
    plan = make_plan(
        built.desired, observed, PlanOptions(prune=request.prune, allow_empty=request.allow_empty)
    )
    return ReconcileOutcome(plan, _hiding_replaced_secrets(plan, masker)), built, observed


def _preview_steps(
    built: BuildResult,
    inputs: list[RepoInput],
    store: Store,
    observed: ObservedState,
    env: dict[str, str],
) -> tuple[list[PlannedStep], dict[DraftKey, dict[str, Any]]]:
    """Which steps apply would run: hashes computed in a checkout, nothing run."""
    from reconciler.build_steps import preview_build_steps

    with _checkouts(built, inputs) as checkouts:
        return preview_build_steps(
            built.build_plans,
            checkouts,
            {item.snapshot.repo_id: item.snapshot.commit for item in inputs},
            store,
            environ=env,
            values=_template_values(observed),
        )


@contextlib.contextmanager
def _checkouts(built: BuildResult, inputs: list[RepoInput]) -> Iterator[dict[str, Path]]:
    """Each repository with steps, on disk at the planned commit, for as long as needed."""
    needed = {plan.draft[0] for plan in built.build_plans}
    with tempfile.TemporaryDirectory(prefix="reconciler-steps-") as scratch:
        # Named after the repository, as a clone would be: `dockerfile: auto` names its
        # WORKDIR (/opt/prefect/<name>) after the build context's directory.
        yield {
            item.snapshot.repo_id: item.snapshot.checkout(
                Path(scratch) / str(index) / repository_directory_name(item.snapshot.repo_id)
            )
            for index, item in enumerate(inputs)
            if item.snapshot.repo_id in needed
        }


def _template_values(observed: ObservedState) -> TemplateValues:
    from reconciler.steps.runner import TemplateValues

    return TemplateValues(
        variables=observed.variables,
        blocks=lambda slug, name: observed.blocks.get((slug, name)),
    )


def _run_steps(
    built: BuildResult,
    inputs: list[RepoInput],
    store: Store,
    observed: ObservedState,
    masker: Masker,
    request: ReconcileRequest,
    env: dict[str, str],
) -> tuple[StepRun, dict[str, StepFailed]]:
    """Build and push, in a checkout of each repository at the planned commit. A repository
    whose steps fail is left out (nothing of it is applied); the others go on."""
    from reconciler.build_steps import StepRun, run_build_steps
    from reconciler.steps.runner import StepFailed

    outputs: dict[DraftKey, dict[str, Any]] = {}
    records: list[StepRecord] = []
    failures: dict[str, StepFailed] = {}
    commits = {item.snapshot.repo_id: item.snapshot.commit for item in inputs}
    with _checkouts(built, inputs) as checkouts:
        for repo in dict.fromkeys(plan.draft[0] for plan in built.build_plans):
            try:
                ran = run_build_steps(
                    [plan for plan in built.build_plans if plan.draft[0] == repo],
                    checkouts,
                    commits,
                    store,
                    environ=env,
                    values=_template_values(observed),
                    masker=masker,
                    write=request.step_output,
                    quiet=request.quiet,
                    allow_install=request.allow_install,
                )
            except StepFailed as exc:
                failures[repo] = exc
                continue
            outputs.update(ran.outputs)
            records.extend(ran.records)
    return StepRun(outputs, records), failures


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
