"""Apply: the only code that writes reconciled objects to the store.

One transaction for the whole plan, opened at the revision the plan was made from (so a plan
made from a store that has since changed is refused, and the engine plans again). Deletes run
first, deployments before queues before pools; then creates, updates and adoptions (an adopted
object is written with its new owner, and its diffs), pools first. A
deployment deleted, paused or whose schedules changed loses, in the same transaction, the
auto-scheduled runs that have not started (manual runs stay).
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.errors import PlanRefused
from reconciler.core.masking import Masker
from reconciler.model.observed import Fence
from reconciler.model.resources import Kind
from reconciler.plan.model import Action, Plan
from reconciler.scheduling.scheduler import active_schedule_ids
from reconciler.store.base import ResourceStore


@dataclass(frozen=True)
class ApplyResult:
    revision: int
    plan_id: int | None


def apply_plan(
    store: ResourceStore, plan: Plan, masker: Masker, fence: Fence | None = None
) -> ApplyResult:
    """Write the plan. With `fence`, only while that lease is still held (checked inside the
    transaction, so a deposed daemon can never write)."""
    if any(d.is_error for d in plan.diagnostics):
        raise PlanRefused("the plan has errors; nothing was applied")
    if not plan.has_changes and _commits_recorded(store, plan):
        return ApplyResult(store.revision(), None)  # nothing to write: the store stays as it is
    deletes = sorted(
        (c for c in plan.changes if c.action is Action.DELETE),
        key=lambda c: (-c.kind.order, c.key),
    )
    writes = [c for c in plan.changes if c.action is not Action.DELETE]
    plan_id = None
    with store.transaction(expected_revision=plan.observed_revision) as tx:
        if fence is not None:
            tx.check_fence(fence)
        for change in deletes:
            tx.delete(change.kind, change.key)
            if change.kind is Kind.DEPLOYMENT:
                tx.remove_scheduled_runs(change.key, ())
        for change in writes:
            assert change.desired is not None
            tx.put(change.desired)
            if change.kind is Kind.DEPLOYMENT and change.action in (Action.UPDATE, Action.ADOPT):
                # Runs of schedules that changed, or of a deployment now paused, go in this
                # same transaction; the scheduler makes the new ones right after.
                active = active_schedule_ids(change.desired.deployment_spec())
                tx.remove_scheduled_runs(change.key, active)
        for source in plan.sources:
            tx.record_repository(source.repo, source.location, source.commit)
        if plan.has_changes:
            # to_json() is a fresh value with text keys: with no secret, masking would copy it
            # unchanged, at the cost of a walk through every value of the plan
            record = plan.to_json()
            plan_id = tx.record_plan(record if masker.hides_nothing else masker.value(record))
    return ApplyResult(store.revision(), plan_id)


def _commits_recorded(store: ResourceStore, plan: Plan) -> bool:
    """Whether every repository of the plan is already recorded at the commit it was read at."""
    recorded = {r.repo: (r.location, r.last_commit) for r in store.repositories()}
    return all(recorded.get(s.repo) == (s.location, s.commit) for s in plan.sources)
