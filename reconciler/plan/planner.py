"""The planner: a pure function from desired and observed state to a Plan.

Rules (design.md, "Ownership"): objects are created, updated, or, when pruning, deleted only if
their owner is a file this run read (or would have read, had it not been deleted). Objects
made by hand are adopted when a file declares them, as an `adopt` change the plan shows;
objects owned by a repository outside this run are never touched, and declaring one is an
error, unless the run adopts (`adopt`: `reconcile adopt`, `--adopt`), which takes them over
as `adopt` changes too (docs/import.md). A plan that would delete every object of
an owner is refused unless `allow_empty`, because that is what a failed read looks like.
Queues that deployments use without a pools file declaring them are created when missing, as
Prefect does, and otherwise left alone: never updated, and never pruned while still used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from reconciler.core.diagnostics import Diagnostic, Location, error
from reconciler.desired.state import DesiredState
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Owner, Resource, queue_key
from reconciler.plan.model import Action, Change, Plan, SourceInfo, diff_values


@dataclass(frozen=True)
class PlanOptions:
    prune: bool = True
    allow_empty: bool = False
    adopt: bool = False
    """Take over objects owned by other repositories that the files declare."""


def make_plan(desired: DesiredState, observed: ObservedState, options: PlanOptions) -> Plan:
    changes: list[Change] = []
    problems: list[Diagnostic] = []
    unchanged = 0
    wanted = {r.ident: r for r in desired.resources}

    for resource in desired.resources:
        current = observed.get(resource.kind, resource.key)
        if current is None:
            changes.append(Change(Action.CREATE, resource.kind, resource.key, resource, None))
            continue
        if resource.ident in desired.implicit:
            if options.adopt and _foreign(current, desired):
                # Adopted with the deployment that names it, kept as it is otherwise.
                kept = replace(current, owner=resource.owner, source_commit=resource.source_commit)
                changes.append(Change(Action.ADOPT, resource.kind, resource.key, kept, current))
            else:
                unchanged += 1  # an implicit queue that already exists: leave it as it is
            continue
        foreign = _foreign(current, desired)
        if foreign and not options.adopt:
            assert current.owner is not None
            problems.append(_owned_elsewhere(desired, resource, current.owner))
            continue
        if current.hash == resource.hash and current.owner == resource.owner:
            unchanged += 1
            continue
        diffs = tuple(diff_values(current.spec, resource.spec))
        action = Action.ADOPT if foreign or current.owner is None else Action.UPDATE
        changes.append(Change(action, resource.kind, resource.key, resource, current, diffs))

    used: set[tuple[Kind, str]] | None = None  # found when first needed: reading every spec
    for ident, current in observed.resources.items():
        if ident in wanted or not desired.in_scope(current.owner):
            continue
        if used is None:
            used = _queues_used(desired)
        if ident in used:
            unchanged += 1  # a queue a declared deployment still runs on: keep it
        elif options.prune:
            changes.append(Change(Action.DELETE, current.kind, current.key, None, current))
    if options.prune and not options.allow_empty:
        problems.extend(_emptied_owners(desired, observed, changes))

    problems.extend(_dangling_references(desired, observed, changes))
    changes.sort(key=lambda c: c.sort_key)
    sources = tuple(
        SourceInfo(s.repo, s.location, s.ref, s.commit, s.files) for s in desired.scopes
    )
    return Plan(
        changes=tuple(changes),
        sources=sources,
        diagnostics=(*desired.diagnostics, *problems),
        observed_revision=observed.revision,
        unchanged=unchanged,
    )


def _foreign(current: Resource, desired: DesiredState) -> bool:
    """Owned by a repository outside this run."""
    return current.owner is not None and current.owner.repo not in desired.repos


def _queues_used(desired: DesiredState) -> set[tuple[Kind, str]]:
    """The queues desired deployments run on. Prune keeps them: Prefect would create a missing
    one again on deploy, so deleting it can only break the deployment."""
    used = (_queue_of(r) for r in desired.resources if r.kind is Kind.DEPLOYMENT)
    return {(Kind.WORK_QUEUE, key) for key in used if key is not None}


def _queue_of(deployment: Resource) -> str | None:
    """The key of the queue a deployment runs on (its pool's default queue when unnamed)."""
    spec = deployment.deployment_spec()
    if not spec.work_pool_name:
        return None
    return queue_key(spec.work_pool_name, spec.queue)


def _owned_elsewhere(desired: DesiredState, resource: Resource, owner: Owner) -> Diagnostic:
    declared = resource.owner
    return error(
        f'{resource.kind.label} "{resource.key}" already exists and belongs to {owner}; '
        f"{declared} declares it too",
        desired.file_location(declared),
        "remove it from one of the two repositories (reconciler never takes objects over from "
        "another repository unless told: `reconcile adopt REPO` or --adopt shows what it would "
        "take over)",
    )


def _emptied_owners(
    desired: DesiredState, observed: ObservedState, changes: list[Change]
) -> list[Diagnostic]:
    deleted: dict[Owner, list[Change]] = defaultdict(list)
    for change in changes:
        if change.action is Action.DELETE and change.observed and change.observed.owner:
            deleted[change.observed.owner].append(change)
    kept: set[Owner] = {r.owner for r in desired.resources if r.owner is not None}
    problems = []
    for owner, removed in sorted(deleted.items()):
        if owner in kept:
            continue
        names = ", ".join(f"{c.kind.label} {c.key}" for c in removed[:5])
        more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
        problems.append(
            error(
                f"the plan would delete every object of {owner} ({len(removed)}: {names}{more})",
                desired.file_location(owner),
                "this is what a file that failed to read looks like, so it is refused; if the "
                "file or its deployments were removed on purpose, run again with --allow-empty",
            )
        )
    return problems


def _dangling_references(
    desired: DesiredState, observed: ObservedState, changes: list[Change]
) -> list[Diagnostic]:
    """A pool or queue being deleted must not be used by a deployment that stays."""
    deleted = {(c.kind, c.key) for c in changes if c.action is Action.DELETE}
    if not deleted:
        return []
    remaining: dict[str, Resource] = {
        r.key: r
        for r in observed.of_kind(Kind.DEPLOYMENT)
        if (Kind.DEPLOYMENT, r.key) not in deleted
    }
    for resource in desired.resources:
        if resource.kind is Kind.DEPLOYMENT:
            remaining[resource.key] = resource
    problems = []
    for key, deployment in sorted(remaining.items()):
        pool = deployment.deployment_spec().work_pool_name
        queue = _queue_of(deployment)
        if pool and (Kind.WORK_POOL, pool) in deleted:
            where = desired.file_location(_owner_of(observed, Kind.WORK_POOL, pool))
            problems.append(_still_used("work-pool", pool, key, deployment.owner, where))
        elif queue and (Kind.WORK_QUEUE, queue) in deleted:
            where = desired.file_location(_owner_of(observed, Kind.WORK_QUEUE, queue))
            problems.append(_still_used("work-queue", queue, key, deployment.owner, where))
    return problems


def _owner_of(observed: ObservedState, kind: Kind, key: str) -> Owner | None:
    found = observed.get(kind, key)
    return found.owner if found is not None else None


def _still_used(
    label: str, name: str, deployment: str, owner: Owner | None, where: Location | None
) -> Diagnostic:
    by = f" ({owner})" if owner else " (made by hand)"
    return error(
        f'{label} "{name}" would be deleted but deployment "{deployment}"{by} still uses it',
        where,
        "move or delete that deployment in the same change, or keep the pool declared",
    )
