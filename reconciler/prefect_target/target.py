"""A Prefect server as the target of a plan: observe, then apply (reconciler/engine calls it
for `--store prefect+http(s)://...`).

The plan itself is the same pure planner as for our own store, run over the *Prefect view* of
the desired and observed objects (reconciler/prefect_target/mapping.py). One rule differs, and
`refuse_collisions` adds it: our store adopts an object made by hand when a file declares it,
but in a Prefect server that reconciler shares with `prefect deploy`, the UI and other tools,
declaring the name of an object reconciler did not make is an error naming it, unless the run
adopts (`reconcile adopt`, `--adopt`: the plan shows it as `adopt`, and apply writes the owner
marker). The one exception is a work queue of a pool reconciler owns (Prefect makes a pool's
`default` queue itself)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from reconciler.core.diagnostics import Diagnostic, Location, error
from reconciler.core.masking import Masker
from reconciler.desired.state import DesiredState
from reconciler.model.resources import Kind, Owner
from reconciler.plan.model import Action, Change, Plan
from reconciler.prefect_target.applier import Applier, PrefectApplyResult
from reconciler.prefect_target.automations import deployment_automations
from reconciler.prefect_target.client import PrefectClient
from reconciler.prefect_target.mapping import desired_view
from reconciler.prefect_target.reader import Observed, read_observed
from reconciler.prefect_target.url import PrefectTargetUrl

WORKER_HINT = "start Prefect's own worker instead: `prefect worker start --pool NAME`"


class PrefectTarget:
    def __init__(self, url: PrefectTargetUrl, client: PrefectClient | None = None) -> None:
        self.url = url
        self.client = client or PrefectClient.of(url)
        self._observed: Observed | None = None

    def close(self) -> None:
        self.client.close()

    def observe(self) -> Observed:
        self._observed = read_observed(self.client)
        return self._observed

    def apply(
        self,
        plan: Plan,
        masker: Masker,
        locate: Callable[[Owner | None, Kind, str], Location | None],
    ) -> PrefectApplyResult:
        assert self._observed is not None, "observe() before apply()"
        return Applier(self.client, self._observed, masker, locate).apply(plan)


def desired_in_prefect_view(desired: DesiredState) -> DesiredState:
    """The desired state as Prefect would hold it, pull steps pinned to each repository's
    commit, each deployment trigger an automation of its own."""
    commits = {scope.repo: scope.commit for scope in desired.scopes}
    resources = tuple(
        desired_view(r, commits.get(r.owner.repo) if r.owner else None) for r in desired.resources
    ) + tuple(a for r in desired.resources for a in deployment_automations(r))
    return replace(desired, resources=resources)


def refuse_collisions(
    plan: Plan,
    desired: DesiredState,
    locate: Callable[[Owner | None, Kind, str], Location | None] | None = None,
) -> Plan:
    """The plan without adoptions of objects made by hand: each is an error naming it, at the
    place `locate` finds for it (else its file)."""
    pools_ours = {
        c.key
        for c in plan.changes
        if c.kind is Kind.WORK_POOL
        and c.action is not Action.DELETE
        and (c.observed is None or c.observed.owner is not None)
    }
    kept: list[Change] = []
    problems: list[Diagnostic] = []
    for change in plan.changes:
        observed = change.observed
        adopting = (
            change.action in (Action.UPDATE, Action.ADOPT)
            and observed is not None
            and observed.owner is None
        )
        if adopting and change.kind is Kind.WORK_QUEUE:
            adopting = change.key.split("/", 1)[0] not in pools_ours and not _owned_pool(
                plan, desired, change.key.split("/", 1)[0]
            )
        if not adopting:
            kept.append(change)
            continue
        assert change.desired is not None
        problems.append(
            error(
                f'{change.kind.label} "{change.key}" already exists in Prefect and was not made '
                f"by reconciler (made by `prefect deploy`, the UI or another tool); "
                f"{change.desired.owner} declares it too",
                (locate or (lambda owner, _k, _n: desired.file_location(owner)))(
                    change.desired.owner, change.kind, change.key
                ),
                "rename it in the file, or take it over: `reconcile adopt REPO` (or --adopt) "
                "shows it as `adopt` first (reconciler never takes over an object unasked)",
            )
        )
    if not problems:
        return plan
    return replace(plan, changes=tuple(kept), diagnostics=(*plan.diagnostics, *problems))


def _owned_pool(plan: Plan, desired: DesiredState, pool: str) -> bool:
    return any(
        r.kind is Kind.WORK_POOL and r.key == pool and r.owner is not None
        for r in desired.resources
    ) and not any(
        c.kind is Kind.WORK_POOL
        and c.key == pool
        and c.observed is not None
        and c.observed.owner is None
        for c in plan.changes
    )


def refuse_type_changes(
    plan: Plan, locate: Callable[[Owner | None, Kind, str], Location | None]
) -> Plan:
    """The plan without changes of a work pool's type, each an error: Prefect keeps a pool's
    type for its life (its update takes no type), so such a change could never be applied."""
    kept: list[Change] = []
    problems: list[Diagnostic] = []
    for change in plan.changes:
        typed = [d for d in change.diffs if d.path == ("type",)]
        if change.kind is not Kind.WORK_POOL or change.action is not Action.UPDATE or not typed:
            kept.append(change)
            continue
        assert change.desired is not None
        problems.append(
            error(
                f'work pool "{change.key}" is of type {typed[0].before} in Prefect, which '
                f"cannot change a pool's type to {typed[0].after}",
                locate(change.desired.owner, change.kind, change.key),
                "give the pool a new name (and its deployments' work_pool), or delete it in "
                f"Prefect first (`prefect work-pool delete {change.key}`) and apply again",
            )
        )
    if not problems:
        return plan
    return replace(plan, changes=tuple(kept), diagnostics=(*plan.diagnostics, *problems))


def deployment_line(text: str, name: str) -> int | None:
    """The line where a deployment (or a pool, in work-pools.yaml) named `name` is declared
    in a file's text."""
    pattern = re.compile(
        r"^\s*(?:-\s*)?name\s*:\s*['\"]?" + re.escape(name) + r"['\"]?\s*(?:#.*)?$"
    )
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None
