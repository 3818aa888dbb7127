"""The engine's path for a Prefect server as the target (`--store prefect+http(s)://...`).

The same stages as for our own store (reconciler/engine/stages.py): load, validate + desired
state, plan (the same pure planner, over the Prefect view of each object), then apply, here
through Prefect's REST API (reconciler/prefect_target). What differs: the observed state is
read from the server; declaring an object made by hand is an error (`refuse_collisions`)
unless the run adopts (`reconcile adopt`, `--adopt`: the plan shows it as `adopt` first);
there is no store revision to check (Prefect has no transactions: the applier orders its
requests and reports what it did); build and push steps are not run by this path (run them in
CI and apply with --skip-build); operator overrides live in our own store only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from reconciler.apply.transaction import ApplyResult
from reconciler.core.diagnostics import Diagnostic, Location, error, warning
from reconciler.core.errors import ConfigError, UserError
from reconciler.core.masking import Masker
from reconciler.desired.build import BuildOptions, RepoInput, build_desired
from reconciler.desired.state import DesiredState
from reconciler.model.resources import Kind, Owner
from reconciler.plan.planner import PlanOptions, make_plan
from reconciler.prefect_target.target import (
    PrefectTarget,
    deployment_line,
    desired_in_prefect_view,
    refuse_collisions,
)
from reconciler.prefect_target.url import parse_prefect_url

if TYPE_CHECKING:
    from reconciler.engine.stages import Loaded, ReconcileOutcome, ReconcileRequest


def reconcile_prefect(
    loaded: Loaded, request: ReconcileRequest, environ: Mapping[str, str]
) -> ReconcileOutcome:
    from reconciler.engine.stages import ReconcileOutcome

    target = PrefectTarget(parse_prefect_url(request.settings.store_url, environ))
    try:
        observed = target.observe()
        built = build_desired(
            loaded.inputs,
            observed.state,
            BuildOptions(
                environ=loaded.environ,
                strict=request.strict,
                build_outputs_known=request.skip_build,
                cache=request.cache,
            ),
        )
        if built.desired is None:
            masker = Masker(built.secrets)
            raise ConfigError([masker.diagnostic(d) for d in built.diagnostics])
        if built.build_plans and not request.skip_build and not request.dry_run:
            raise UserError(
                "build and push steps are not run when the store is a Prefect server",
                "run them in CI, then apply with --skip-build",
            )
        desired = desired_in_prefect_view(built.desired)
        plan = make_plan(
            desired,
            observed.state,
            PlanOptions(prune=request.prune, allow_empty=request.allow_empty, adopt=request.adopt),
        )
        locate = _locator(desired, loaded.inputs)
        if not request.adopt:  # `reconcile adopt` / --adopt: shown as `adopt`, then taken over
            plan = refuse_collisions(plan, desired, locate)
        if unsupported := _not_applied_to_prefect(built.desired, locate):
            plan = replace(plan, diagnostics=(*plan.diagnostics, *unsupported))
        masker = Masker(built.secrets)
        outcome = ReconcileOutcome(plan, masker)
        if request.dry_run or outcome.errors or not plan.has_changes:
            if not request.dry_run and not outcome.errors:
                outcome.applied = ApplyResult(0, None)
            return outcome
        target.apply(plan, masker, locate)
        outcome.applied = ApplyResult(0, None)
        return outcome
    finally:
        target.close()


def _not_applied_to_prefect(desired: DesiredState, locate: _Locate) -> list[Diagnostic]:
    """What this path does not write into Prefect, said rather than dropped: automations of
    automations.yaml (an error: nothing of the plan is applied) and deployment `triggers:`
    (a warning: Prefect keeps them as automations of its own, which `prefect deploy` makes)."""
    found: list[Diagnostic] = []
    for resource in desired.resources:
        where = locate(resource.owner, resource.kind, resource.key)
        if resource.kind is Kind.AUTOMATION:
            found.append(
                error(
                    f'automation "{resource.key}" cannot be applied to a Prefect server',
                    where,
                    "automations.yaml is run by reconciler's own daemon and workers; with a "
                    "Prefect server, make the automation in Prefect (UI or its API) and remove "
                    "it from automations.yaml, or apply to a reconciler store",
                )
            )
        elif resource.kind is Kind.DEPLOYMENT and resource.deployment_spec().triggers:
            found.append(
                warning(
                    f'the triggers of deployment "{resource.key}" are not applied to the '
                    "Prefect server",
                    where,
                    "Prefect runs deployment triggers as its own automations: `prefect deploy` "
                    "makes them from the same file",
                )
            )
    return found


def _locator(desired: DesiredState, inputs: tuple[RepoInput, ...]) -> _Locate:
    return _Locate(desired, {i.snapshot.repo_id: i for i in inputs})


class _Locate:
    """Where an object is declared: its file, and for a deployment the line of its name."""

    def __init__(self, desired: DesiredState, inputs: Mapping[str, RepoInput]) -> None:
        self.desired = desired
        self.inputs = inputs

    def __call__(self, owner: Owner | None, kind: Kind, key: str) -> Location | None:
        where = self.desired.file_location(owner)
        if where is None or owner is None or kind is not Kind.DEPLOYMENT:
            return where
        source = self.inputs.get(owner.repo)
        if source is None:
            return where
        try:
            text = source.snapshot.read(owner.file).decode("utf-8", errors="replace")
        except (OSError, KeyError, ValueError):
            return where
        line = deployment_line(text, key.split("/", 1)[1])
        return replace(where, line=line) if line else where
