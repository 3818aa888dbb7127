"""The engine: one reconcile of one or more repositories, as an ordered list of stages.

    load -> validate + desired state -> plan -> (dry-run stops) -> steps -> apply

Each stage is a function whose input and output are frozen values (`Loaded`, `Desired`,
`Planned`, `Stepped`): nothing passes between stages any other way. Validation and the desired
state are one stage because spec/build.py checks and builds each file in one pass (per file, so
that files are shared between processes and a file's result can be cached by its git blob id:
`BuildCache`). Steps can change the desired state (their outputs are templated into it), so
after them the desired state and plan stages run again with the outputs; a plan that finds the
store changed under it (another writer) starts again from the desired state, up to
MAX_PLAN_ATTEMPTS times. The store is opened read-only for a dry-run, which therefore creates
and changes nothing; it is opened from the request's `Settings` (reconciler/settings.py).

Where the plan is applied is a `Target`: our own store (`StoreTarget`, here) or a Prefect
server (`PrefectPath`, reconciler/engine/prefect_path.py). A target observes, builds the desired
state, plans and applies in its own way; the run around them (`run_stages`: the dry-run's step
preview, the gate, the steps stage and planning again with their outputs, step failures) is
one piece of code for both. A target also names the store that keeps the step cache: our store
itself, or for a Prefect server, a store of ours kept for that alone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.apply.transaction import ApplyResult, apply_plan
from reconciler.core.diagnostics import Diagnostic
from reconciler.core.errors import ConfigError, PlanRefused, SourceError, StaleStateError
from reconciler.core.gc_pause import collector_paused
from reconciler.core.masking import Masker, strings_in
from reconciler.desired.build import (
    BuildOptions,
    BuildResult,
    DraftKey,
    RepoInput,
    build_desired,
)
from reconciler.desired.build_cache import BuildCache
from reconciler.desired.state import DEFAULT_PREFECT_GLOB, POOLS_FILE_NAME, matches_glob
from reconciler.engine.overrides import lay_overrides
from reconciler.model.observed import Fence, ObservedState
from reconciler.model.resources import Kind
from reconciler.plan.model import Plan, PlannedStep
from reconciler.plan.planner import PlanOptions, make_plan
from reconciler.prefect_rules.job_templates import WORKER_POOL_TYPES
from reconciler.prefect_target.url import is_prefect_url
from reconciler.settings import Settings
from reconciler.sources.git import open_repository
from reconciler.steps.default_pull import repository_directory_name
from reconciler.store.base import Store

if TYPE_CHECKING:  # the step machinery (Docker SDK, jinja2, asyncio) loads only when used
    from reconciler.engine.build_pass import StepRecord
    from reconciler.steps.runner import StepFailed, TemplateValues

MAX_PLAN_ATTEMPTS = 5
STAGES = ("load", "validate + desired state", "plan", "steps", "apply")
"""The stages, in order (the functions `load`, `desired_state`, `plan`, `steps`, `apply`)."""


@dataclass(frozen=True)
class ReconcileRequest:
    repositories: Sequence[str] = (".",)
    ref: str = "HEAD"
    worktree: bool = False
    prefect_glob: str = DEFAULT_PREFECT_GLOB
    settings: Settings = field(default_factory=Settings)
    """Where the store is (reconciler/settings.py)."""
    dry_run: bool = False
    strict: bool = False
    skip_build: bool = False
    prune: bool = True
    allow_empty: bool = False
    adopt: bool = False
    """Take over objects owned by other repositories that the files declare (`adopt` changes)."""
    expected_revision: int | None = None
    """Apply only a plan made at this store revision (the one shown before `reconcile adopt`
    asked): a store that changed since is refused, with nothing applied."""
    allow_install: bool = False
    step_output: Callable[[str], None] | None = None
    """Where the output of build and push steps goes, line by line (None: nowhere)."""
    quiet: bool = False
    schedule: bool = False
    """After an apply that changed deployments, run a scheduler tick at once (the daemon)."""
    fence: Fence | None = None
    """Apply only while this lease is held (the daemon's leadership)."""
    cache: BuildCache | None = None
    """Results of files already read, by git blob id (the daemon keeps one per repository)."""
    gate: Callable[[Planned], bool] | None = None
    """Asked with the plan before any step runs or anything is written (not for a dry-run):
    False stops there, nothing applied (`reconcile apply` asking for confirmation); it may
    raise (a saved plan that no longer matches)."""


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
    declined: bool = False
    """The request's gate said no: nothing was run or applied."""
    planned: Planned | None = field(default=None, repr=False)
    """The stage value the plan came from."""

    @functools.cached_property
    def fingerprint(self) -> str:
        """`fingerprint_of` what the plan was made against (for saved plans). Computed when
        first asked: a digest of every owned object costs ~30 ms per
        10,000, which a daemon's or a dry-run's plan does not need."""
        return "" if self.planned is None else fingerprint_of(self.planned)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.plan.diagnostics if d.is_error]


# -- the values between stages -----------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """Stage 1's output: each repository as a snapshot at its commit."""

    inputs: tuple[RepoInput, ...]
    environ: Mapping[str, str]


@dataclass(frozen=True)
class Desired:
    """Stage 2's output: the valid desired state, and the observed state it was built against."""

    built: BuildResult
    observed: ObservedState
    inputs: tuple[RepoInput, ...]


@dataclass(frozen=True)
class Planned:
    """Stage 3's output: the plan, and the masker that hides every secret it may show."""

    desired: Desired
    plan: Plan
    masker: Masker


@dataclass(frozen=True)
class Stepped:
    """Stage 4's output: what the build and push steps returned, and which repositories go on
    to apply (those whose steps all succeeded)."""

    outputs: Mapping[DraftKey, Mapping[str, Any]]
    records: tuple[StepRecord, ...]
    failures: Mapping[str, StepFailed]
    applying: tuple[RepoInput, ...]


# -- the run -------------------------------------------------------------------------------------


def reconcile(
    request: ReconcileRequest, environ: Mapping[str, str] | None = None
) -> ReconcileOutcome:
    """Plan (and unless dry-run, apply). Raises ConfigError for invalid files, SourceError for
    unreadable repositories; returns an outcome whose plan may carry refusals (errors).
    The cyclic collector waits until the pass is over (core/gc_pause.py)."""
    with collector_paused():
        return _reconcile(request, environ)


def _reconcile(request: ReconcileRequest, environ: Mapping[str, str] | None) -> ReconcileOutcome:
    loaded = load(request, dict(os.environ if environ is None else environ))
    target: Target
    if is_prefect_url(request.settings.store_url):
        from reconciler.engine.prefect_path import PrefectPath

        target = PrefectPath(request, loaded.environ)
    else:
        target = StoreTarget(request.settings.open_store(readonly=request.dry_run))
    try:
        return run_stages(loaded, target, request)
    finally:
        target.close()


class Target(Protocol):
    """Where plans are applied: the stages that differ between our store and a Prefect
    server. Each returns the same frozen values as the module's stage functions."""

    def desired_state(
        self,
        inputs: Sequence[RepoInput],
        request: ReconcileRequest,
        env: Mapping[str, str],
        step_outputs: Mapping[DraftKey, Mapping[str, Any]] | None = None,
    ) -> Desired: ...

    def plan(self, desired: Desired, request: ReconcileRequest) -> Planned: ...

    def apply(self, planned: Planned, request: ReconcileRequest) -> tuple[ApplyResult, int]:
        """Raises StaleStateError when the target changed since it was observed."""
        ...

    def step_cache(self) -> Store:
        """The store keeping the results of build and push steps (read-only for a dry-run)."""
        ...

    def close(self) -> None: ...


class StoreTarget:
    """Our own store as the target: the stage functions below, over one open store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def desired_state(
        self,
        inputs: Sequence[RepoInput],
        request: ReconcileRequest,
        env: Mapping[str, str],
        step_outputs: Mapping[DraftKey, Mapping[str, Any]] | None = None,
    ) -> Desired:
        return desired_state(inputs, self.store, request, env, step_outputs)

    def plan(self, desired: Desired, request: ReconcileRequest) -> Planned:
        return plan(desired, request)

    def apply(self, planned: Planned, request: ReconcileRequest) -> tuple[ApplyResult, int]:
        return apply(planned, self.store, request)

    def step_cache(self) -> Store:
        return self.store

    def close(self) -> None:
        self.store.close()


def run_stages(loaded: Loaded, target: Target, request: ReconcileRequest) -> ReconcileOutcome:
    """desired state -> plan -> (dry-run: the steps it would run) -> gate -> steps -> desired
    state and plan again with their outputs -> apply, into `target`."""
    env = loaded.environ
    for attempt in range(1, MAX_PLAN_ATTEMPTS + 1):
        planned = target.plan(target.desired_state(loaded.inputs, request, env), request)
        outcome = _outcome(planned, attempt)
        if request.dry_run:
            return _previewed(planned, target, request, env, attempt)
        if outcome.errors:
            return outcome
        _refuse_other_revision(planned, request)
        if request.gate is not None and not request.gate(planned):
            outcome.declined = True
            return outcome
        if planned.desired.built.build_plans and not request.skip_build:
            ran = steps(planned, target.step_cache(), request, env)
            if not ran.applying:
                raise next(iter(ran.failures.values()))
            again = target.desired_state(ran.applying, request, env, ran.outputs)
            planned = target.plan(again, request)
            outcome = _outcome(planned, attempt)
            outcome.steps = list(ran.records)
            outcome.step_failures = list(ran.failures.values())
            if outcome.errors:
                return outcome
        try:
            outcome.applied, outcome.scheduled = target.apply(planned, request)
            return outcome
        except StaleStateError:
            continue  # another writer got there first: plan again from what it wrote
    raise StaleStateError(
        f"the store kept changing while planning ({MAX_PLAN_ATTEMPTS} attempts)",
        "try again when the other writers are done",
    )


def _outcome(planned: Planned, attempt: int) -> ReconcileOutcome:
    return ReconcileOutcome(planned.plan, planned.masker, attempts=attempt, planned=planned)


def fingerprint_of(planned: Planned) -> str:
    """A digest of what the store held, for the plan's repositories, when it was planned:
    every object they own and every object the plan touches (kind, key, content, owner,
    commit), and the variables and blocks files can read. Two plans made against the same
    digest at the same commits are the same plan; a saved plan is refused when it moved."""
    observed = planned.desired.observed
    repos = {source.repo for source in planned.plan.sources}
    touched = {(change.kind, change.key) for change in planned.plan.changes}
    digest = hashlib.sha256()
    for (kind, key), resource in sorted(
        observed.resources.items(), key=lambda i: (i[0][0].value, i[0][1])
    ):
        owned = resource.owner is not None and resource.owner.repo in repos
        if owned or (kind, key) in touched:
            owner = str(resource.owner) if resource.owner else ""
            fields = (kind.value, key, resource.hash, owner, resource.source_commit or "")
            digest.update(json.dumps(fields).encode())
    values = {"variables": dict(observed.variables), "blocks": sorted(map(list, observed.blocks))}
    digest.update(json.dumps(values, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _previewed(
    planned: Planned,
    target: Target,
    request: ReconcileRequest,
    env: Mapping[str, str],
    attempt: int,
) -> ReconcileOutcome:
    """A dry-run's outcome: the plan, with the steps apply would run (none is run)."""
    built = planned.desired.built
    if not built.build_plans or request.skip_build:
        return _outcome(planned, attempt)
    previewed, known = _preview_steps(planned.desired, target.step_cache(), env)
    if known:  # unchanged builds: plan with their recorded outputs
        again = target.desired_state(planned.desired.inputs, request, env, known)
        planned = target.plan(again, request)
    outcome = _outcome(planned, attempt)
    outcome.plan = replace(outcome.plan, steps=tuple(previewed))
    return outcome


# -- the stages ----------------------------------------------------------------------------------


def load(request: ReconcileRequest, environ: Mapping[str, str]) -> Loaded:
    """Stage 1: open each repository at its commit (or working copy)."""
    inputs = tuple(
        RepoInput(
            open_repository(path, ref=request.ref, worktree=request.worktree),
            "worktree" if request.worktree else request.ref,
            request.prefect_glob,
        )
        for path in request.repositories
    )
    _refuse_repeated_repositories(inputs)
    return Loaded(inputs, environ)


def desired_state(
    inputs: Sequence[RepoInput],
    store: Store,
    request: ReconcileRequest,
    env: Mapping[str, str],
    step_outputs: Mapping[DraftKey, Mapping[str, Any]] | None = None,
) -> Desired:
    """Stage 2: read and validate every file, build the desired state against what the store
    holds. Raises ConfigError (every problem, masked) when a file is invalid."""
    observed = store.observe()
    built = build_valid(inputs, observed, request, env, step_outputs)
    built = lay_overrides(built, store)  # operator overrides (reconciler/overrides.py)
    return Desired(built, observed, tuple(inputs))


def build_valid(
    inputs: Sequence[RepoInput],
    observed: ObservedState,
    request: ReconcileRequest,
    env: Mapping[str, str],
    step_outputs: Mapping[DraftKey, Mapping[str, Any]] | None = None,
    worker_types: frozenset[str] | None = BuildOptions.worker_types,
) -> BuildResult:
    """The files built against `observed` with the request's options (`worker_types`: the
    pool types the target's workers run; None: every type). Raises ConfigError (every
    problem, masked) when a file is invalid."""
    built = build_desired(
        inputs,
        observed,
        BuildOptions(
            environ=env,
            strict=request.strict,
            build_outputs_known=request.skip_build,
            step_outputs=step_outputs or {},
            cache=request.cache,
            worker_types=worker_types,
        ),
    )
    if built.desired is None:
        masker = Masker(built.secrets)
        raise ConfigError([masker.diagnostic(d) for d in built.diagnostics])
    return built


def plan(desired: Desired, request: ReconcileRequest) -> Planned:
    """Stage 3: the pure diff of the desired against the observed state."""
    assert desired.built.desired is not None  # desired_state refuses an invalid one
    made = make_plan(
        desired.built.desired,
        desired.observed,
        PlanOptions(prune=request.prune, allow_empty=request.allow_empty, adopt=request.adopt),
    )
    return Planned(desired, made, hiding_replaced_secrets(made, Masker(desired.built.secrets)))


def steps(
    planned: Planned, cache: Store, request: ReconcileRequest, env: Mapping[str, str]
) -> Stepped:
    """Stage 4: build and push, in a checkout of each repository at the planned commit; a
    step whose inputs `cache` has a result for is not run again. A repository whose steps
    fail is left out (nothing of it is applied); the others go on."""
    from reconciler.engine.build_pass import run_build_steps
    from reconciler.steps.runner import StepFailed

    desired = planned.desired
    built = desired.built
    outputs: dict[DraftKey, dict[str, Any]] = {}
    records: list[StepRecord] = []
    failures: dict[str, StepFailed] = {}
    commits = {item.snapshot.repo_id: item.snapshot.commit for item in desired.inputs}
    with _checkouts(built, desired.inputs) as checkouts:
        for repo in dict.fromkeys(step_plan.draft[0] for step_plan in built.build_plans):
            try:
                ran = run_build_steps(
                    [p for p in built.build_plans if p.draft[0] == repo],
                    checkouts,
                    commits,
                    cache,
                    environ=dict(env),
                    values=_template_values(desired.observed),
                    masker=planned.masker,
                    write=request.step_output,
                    quiet=request.quiet,
                    allow_install=request.allow_install,
                )
            except StepFailed as exc:
                failures[repo] = exc
                continue
            outputs.update(ran.outputs)
            records.extend(ran.records)
    applying = tuple(i for i in desired.inputs if i.snapshot.repo_id not in failures)
    return Stepped(outputs, tuple(records), failures, applying)


def apply(planned: Planned, store: Store, request: ReconcileRequest) -> tuple[ApplyResult, int]:
    """Stage 5: the plan in one transaction (StaleStateError when the store changed since it
    was observed); then, for the daemon, a scheduler tick when deployments changed. Returns
    the apply's result and the runs that tick created."""
    applied = apply_plan(store, planned.plan, planned.masker, fence=request.fence)
    scheduled = 0
    if request.schedule and any(c.kind is Kind.DEPLOYMENT for c in planned.plan.changes):
        # New or changed schedules get their runs now, not at the next tick.
        from reconciler.scheduling.policy import tick_with_stored_policy

        scheduled = tick_with_stored_policy(store).created
    return applied, scheduled


def _refuse_other_revision(planned: Planned, request: ReconcileRequest) -> None:
    expected = request.expected_revision
    if expected is not None and planned.plan.observed_revision != expected:
        raise PlanRefused(
            f"the store changed since the plan was shown (revision {expected}, now "
            f"{planned.plan.observed_revision}); nothing was applied",
            "run the command again to see the new plan",
        )


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


def _preview_steps(
    desired: Desired, cache: Store, env: Mapping[str, str]
) -> tuple[list[PlannedStep], dict[DraftKey, dict[str, Any]]]:
    """Which steps apply would run: hashes computed in a checkout and looked up in `cache`,
    nothing run."""
    from reconciler.engine.build_pass import preview_build_steps

    built, inputs = desired.built, desired.inputs
    with _checkouts(built, inputs) as checkouts:
        return preview_build_steps(
            built.build_plans,
            checkouts,
            {item.snapshot.repo_id: item.snapshot.commit for item in inputs},
            cache,
            environ=dict(env),
            values=_template_values(desired.observed),
        )


@contextlib.contextmanager
def _checkouts(built: BuildResult, inputs: Sequence[RepoInput]) -> Iterator[dict[str, Path]]:
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


def hiding_replaced_secrets(plan: Plan, masker: Masker) -> Masker:
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


def validate_files(
    request: ReconcileRequest, observed: ObservedState | None = None
) -> tuple[list[Diagnostic], list[str]]:
    """`reconcile validate`: read and check every file of the request's repositories, as a
    plan would, against `observed` (default: an empty store; no store is opened here):
    every diagnostic of every file, and the files read (`repo-location/file`). Raises
    SourceError for an unreadable repository."""
    loaded = load(request, dict(os.environ))
    on_prefect = is_prefect_url(request.settings.store_url)  # Prefect's workers run every type
    built = build_desired(
        loaded.inputs,
        observed or ObservedState(revision=0),
        BuildOptions(
            environ=loaded.environ,
            strict=request.strict,
            build_outputs_known=True,
            worker_types=None if on_prefect else frozenset(WORKER_POOL_TYPES),
        ),
    )
    files: list[str] = []
    for item in loaded.inputs:
        root = item.snapshot.display_root.rstrip("/")
        for name in item.snapshot.files():
            if matches_glob(name, item.prefect_glob) or matches_glob(name, POOLS_FILE_NAME):
                files.append(name if root in ("", ".") else f"{root}/{name}")
    masker = Masker(built.secrets)
    return [masker.diagnostic(d) for d in built.diagnostics], sorted(files)
