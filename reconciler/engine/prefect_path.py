"""The engine's target for a Prefect server (`--store prefect+http(s)://...`): `PrefectPath`.

The same stages as for our own store, run by the same code (reconciler/engine/stages.py
`run_stages`): load, validate + desired state, plan (the same pure planner, over the Prefect
view of each object), the build and push steps (the same `steps` stage, with their outputs
templated into a second plan), then apply, here through Prefect's REST API
(reconciler/prefect_target). What differs: the observed state is read from the server;
declaring an object made by hand is an error (`refuse_collisions`) unless the run adopts
(`reconcile adopt`, `--adopt`: the plan shows it as `adopt` first); there is no store revision
to check (Prefect has no transactions: the applier orders its requests and reports what it
did); the step cache, for which Prefect has no place, is kept in a store of ours
(`Settings.open_step_cache`: `--step-cache`, else the default `.reconciler/state.db`, or
the daemon's `store:`), opened only when the files have steps; operator overrides live in our
own store only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from reconciler.apply.transaction import ApplyResult
from reconciler.core.diagnostics import Diagnostic, Location, error
from reconciler.core.masking import Masker
from reconciler.desired.build import DraftKey, RepoInput
from reconciler.desired.state import DesiredState
from reconciler.engine.stages import (
    Desired,
    Planned,
    ReconcileRequest,
    build_valid,
    hiding_replaced_secrets,
)
from reconciler.model.resources import Kind, Owner
from reconciler.plan.planner import PlanOptions, make_plan
from reconciler.prefect_target.automations import trigger_problems
from reconciler.prefect_target.target import (
    PrefectTarget,
    deployment_line,
    desired_in_prefect_view,
    refuse_collisions,
    refuse_type_changes,
)
from reconciler.prefect_target.url import parse_prefect_url
from reconciler.store.base import Store


class PrefectPath:
    """A Prefect server as the target of `run_stages` (reconciler/engine/stages.py)."""

    def __init__(self, request: ReconcileRequest, environ: Mapping[str, str]) -> None:
        self.request = request
        self.target = PrefectTarget(parse_prefect_url(request.settings.store_url, environ))
        self._cache: Store | None = None

    def desired_state(
        self,
        inputs: Sequence[RepoInput],
        request: ReconcileRequest,
        env: Mapping[str, str],
        step_outputs: Mapping[DraftKey, Mapping[str, Any]] | None = None,
    ) -> Desired:
        """Read and validate every file against what the server holds now (observed again
        after the steps, which may take minutes)."""
        observed = self.target.observe().state
        # Prefect's workers run every type of pool: no warning for a type ours does not run.
        built = build_valid(inputs, observed, request, env, step_outputs, worker_types=None)
        return Desired(built, observed, tuple(inputs))

    def plan(self, desired: Desired, request: ReconcileRequest) -> Planned:
        """The plan over the Prefect view of the desired objects, with this target's refusals
        (objects made by hand, what Prefect does not take) as diagnostics."""
        assert desired.built.desired is not None  # desired_state refuses an invalid one
        view = desired_in_prefect_view(desired.built.desired)
        made = make_plan(
            view,
            desired.observed,
            PlanOptions(prune=request.prune, allow_empty=request.allow_empty, adopt=request.adopt),
        )
        locate = _locator(view, desired.inputs)
        if not request.adopt:  # `reconcile adopt` / --adopt: shown as `adopt`, then taken over
            made = refuse_collisions(made, view, locate)
        made = refuse_type_changes(made, locate)
        if unsupported := _not_applied_to_prefect(desired.built.desired, locate):
            made = replace(made, diagnostics=(*made.diagnostics, *unsupported))
        masker = hiding_replaced_secrets(made, Masker(desired.built.secrets))
        return Planned(desired, made, masker)

    def apply(self, planned: Planned, request: ReconcileRequest) -> tuple[ApplyResult, int]:
        """The plan through Prefect's REST API (Prefect makes the runs of new schedules
        itself: no runs are counted here)."""
        if planned.plan.has_changes:
            assert planned.desired.built.desired is not None
            view = desired_in_prefect_view(planned.desired.built.desired)
            locate = _locator(view, planned.desired.inputs)
            self.target.apply(planned.plan, planned.masker, locate)
        return ApplyResult(0, None), 0

    def step_cache(self) -> Store:
        """Our store that keeps the step results for this server, opened on first use."""
        if self._cache is None:
            settings = self.request.settings
            self._cache = settings.open_step_cache(readonly=self.request.dry_run)
        return self._cache

    def close(self) -> None:
        try:
            self.target.close()
        finally:
            if self._cache is not None:
                self._cache.close()


def _not_applied_to_prefect(desired: DesiredState, locate: _Locate) -> list[Diagnostic]:
    """What this path does not write into Prefect, said rather than dropped: automations of
    automations.yaml (an error: nothing of the plan is applied). Deployment `triggers:` are
    applied, as Prefect automations (reconciler/prefect_target/automations.py)."""
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
        found.extend(trigger_problems(resource, where))
    return found


def _locator(desired: DesiredState, inputs: tuple[RepoInput, ...]) -> _Locate:
    return _Locate(desired, {i.snapshot.repo_id: i for i in inputs})


class _Locate:
    """Where an object is declared: its file, and for a deployment or a pool the line of its
    name."""

    def __init__(self, desired: DesiredState, inputs: Mapping[str, RepoInput]) -> None:
        self.desired = desired
        self.inputs = inputs

    def __call__(self, owner: Owner | None, kind: Kind, key: str) -> Location | None:
        where = self.desired.file_location(owner)
        if where is None or owner is None or kind not in (Kind.DEPLOYMENT, Kind.WORK_POOL):
            return where
        source = self.inputs.get(owner.repo)
        if source is None:
            return where
        try:
            text = source.snapshot.read(owner.file).decode("utf-8", errors="replace")
        except (OSError, KeyError, ValueError):
            return where
        line = deployment_line(text, key.split("/", 1)[1] if kind is Kind.DEPLOYMENT else key)
        return replace(where, line=line) if line else where
