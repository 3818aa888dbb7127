"""Apply a plan to a Prefect server, in a safe order, reporting exactly what was done.

Prefect has no transactions. The order keeps every state in between usable: work pools, then
work queues, then deployments, then the automations of their triggers (created or changed:
an automation names its deployment's id); then deletions, automations before their
deployments before their queues before their pools. Inside a phase, requests run
concurrently (bounded by the client). When a request fails, the phase finishes what it
started and the apply stops; the error names every change that was applied and every one that
was not, and the next run converges (a plan is made from what the server then holds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.diagnostics import Location
from reconciler.core.errors import UserError
from reconciler.core.masking import Masker
from reconciler.model.resources import Kind, Owner
from reconciler.plan.model import Action, Change, Plan
from reconciler.prefect_target.automations import automation_body
from reconciler.prefect_target.client import PrefectAuthError, PrefectClient, PrefectError
from reconciler.prefect_target.mapping import (
    deployment_body,
    pool_body,
    queue_body,
    schedule_body,
)
from reconciler.prefect_target.reader import Observed, segment

Locate = Callable[[Owner | None, Kind, str], Location | None]
WRITES = (Kind.WORK_POOL, Kind.WORK_QUEUE, Kind.DEPLOYMENT, Kind.AUTOMATION)
DELETIONS = (Kind.AUTOMATION, Kind.DEPLOYMENT, Kind.WORK_QUEUE, Kind.WORK_POOL)
BULK_DELETE_SIZE = 50
"""Deployments deleted by one `/deployments/bulk_delete` (the most Prefect's server takes)."""


@dataclass
class PrefectApplyResult:
    applied: list[Change] = field(default_factory=list)


class PrefectApplyError(UserError):
    """Some changes failed; `applied` were made, `failed` and `skipped` were not."""

    def __init__(
        self,
        failures: Sequence[tuple[Change, str]],
        applied: Sequence[Change],
        skipped: Sequence[Change],
        hint: str | None = None,
    ) -> None:
        lines = [f"{len(failures)} change(s) failed on the Prefect server:"]
        lines += [f"  {message}" for _, message in failures]
        lines.append(f"applied ({len(applied)}):" + ("" if applied else " none"))
        lines += [f"  {_line(c)}" for c in applied]
        if skipped:
            lines.append(f"not attempted ({len(skipped)}):")
            lines += [f"  {_line(c)}" for c in skipped]
        super().__init__(
            "\n".join(lines),
            hint
            or "fix the cause and run again: the next plan starts from what the server now holds",
        )
        self.failures = list(failures)
        self.applied = list(applied)
        self.skipped = list(skipped)


def _line(change: Change) -> str:
    return f"{change.action.symbol} {change.kind.label} {change.key}"


class Applier:
    def __init__(
        self, client: PrefectClient, observed: Observed, masker: Masker, locate: Locate
    ) -> None:
        self.client = client
        self.observed = observed
        self.masker = masker
        self.locate = locate
        self._flows = dict(observed.flows)
        self._deployment_ids = {key: ids.id for key, ids in observed.deployments.items()}
        """FLOW/NAME -> id, with the deployments this apply creates (for their automations)."""
        self._auth_hint: str | None = None
        """What to do about a refused key (401/403), when one was: the error's hint."""

    def apply(self, plan: Plan) -> PrefectApplyResult:
        changes = list(plan.changes)
        phases: list[list[Change]] = []
        for kind in WRITES:
            phases.append([c for c in changes if c.kind is kind and c.action is not Action.DELETE])
        for kind in DELETIONS:
            phases.append([c for c in changes if c.kind is kind and c.action is Action.DELETE])
        done: list[Change] = []
        # A pool that goes takes its queues with it (and Prefect refuses to delete a pool's
        # default queue on its own): those queue deletions are done by the pool's.
        queues = len(WRITES) + DELETIONS.index(Kind.WORK_QUEUE)
        pools_gone = {c.key for c in phases[len(WRITES) + DELETIONS.index(Kind.WORK_POOL)]}
        phases[queues] = [c for c in phases[queues] if c.key.split("/", 1)[0] not in pools_gone]
        for index, phase in enumerate(phases):
            if not phase:
                continue
            if phase[0].kind is Kind.DEPLOYMENT and phase[0].action is not Action.DELETE:
                failed = self._ensure_flows(phase)
                if failed:
                    raise PrefectApplyError(failed, done, [c for p in phases[index:] for c in p])
            if phase[0].kind is Kind.DEPLOYMENT and phase[0].action is Action.DELETE:
                outcomes = self._delete_deployments(phase)
            else:
                outcomes = self.client.gather(self._attempt, phase)
            failures = [(c, message) for c, message in zip(phase, outcomes, strict=True) if message]
            done.extend(c for c, message in zip(phase, outcomes, strict=True) if not message)
            if failures:
                skipped = [c for p in phases[index + 1 :] for c in p]
                raise PrefectApplyError(failures, done, skipped, self._auth_hint)
        return PrefectApplyResult(done)

    def _attempt(self, change: Change) -> str | None:
        """None when applied, else the message saying why not."""
        try:
            self._apply(change)
        except PrefectError as exc:
            return self._attempt_failed(change, exc)
        return None

    def _attempt_failed(self, change: Change, exc: PrefectError) -> str:
        """What to say of a change Prefect did not make."""
        if isinstance(exc, PrefectAuthError):  # the key, not the change: say so, and what to do
            self._auth_hint = exc.hint
            return self.masker(f"{_line(change)}: {exc.message}")
        if exc.status is None:  # no answer: nothing to say of the change's own values
            return self.masker(f"{_line(change)}: {exc.message}")
        found = self.locate(change.owner, change.kind, change.key)
        where = f"{found}: " if found else ""
        text = exc.detail or exc.message
        return self.masker(f"{where}{_line(change)}: Prefect refused it ({exc.status}): {text}")

    def _delete_deployments(self, phase: Sequence[Change]) -> list[str | None]:
        """Deployments pruned BULK_DELETE_SIZE to a request (`/deployments/bulk_delete`, as
        Prefect 3.9 has it): a prune of 500 is 10 requests, not 500. A server without that
        endpoint (404/405) gets one request per deployment, as does a lone deletion. Returns each
        change's failure message (None: deleted, or gone already)."""
        if len(phase) < 2:
            return self.client.gather(self._attempt, phase)
        outcomes: list[str | None] = []
        # One request after the other: each is one transaction over many rows, which a
        # SQLite-backed server would only refuse as busy (503) if they came at once.
        for start in range(0, len(phase), BULK_DELETE_SIZE):
            chunk = phase[start : start + BULK_DELETE_SIZE]
            ids = [self.observed.deployments[c.key].id for c in chunk]
            body = {"deployments": {"id": {"any_": ids}}, "limit": len(ids)}
            try:
                self.client.post("deployments/bulk_delete", body)
            except PrefectError as exc:
                if exc.status in (404, 405):  # no bulk endpoint: these one by one
                    outcomes += self.client.gather(self._attempt, chunk)
                else:
                    outcomes += [self._attempt_failed(c, exc) for c in chunk]
                continue
            outcomes += [None] * len(chunk)  # an id not deleted was gone already
        return outcomes

    def _ensure_flows(self, phase: Sequence[Change]) -> list[tuple[Change, str]]:
        wanted = sorted(
            {
                c.desired.view()["flow_name"]
                for c in phase
                if c.desired is not None and c.desired.view()["flow_name"] not in self._flows
            }
        )

        def make(name: str) -> str:
            return str(self.client.post("flows/", {"name": name})["id"])

        try:
            for name, flow_id in zip(wanted, self.client.gather(make, wanted), strict=True):
                self._flows[name] = flow_id
        except PrefectError as exc:
            return [(phase[0], f"creating the flows of the deployments: {exc.message}")]
        return []

    def _apply(self, change: Change) -> None:
        client = self.client
        if change.action is Action.DELETE:
            self._delete(change)
            return
        assert change.desired is not None
        view = change.desired.view()
        owner = change.desired.owner
        if change.kind is Kind.WORK_POOL:
            body = pool_body(view, owner)
            if change.action is Action.CREATE:
                try:
                    client.post("work_pools/", {"name": view["name"], "type": view["type"], **body})
                    return
                except PrefectError as exc:
                    if exc.status != 409:
                        raise
            client.patch(f"work_pools/{segment(view['name'])}", body)
        elif change.kind is Kind.WORK_QUEUE:
            body = queue_body(view, owner)
            pool = segment(view["pool"])
            if change.action is Action.CREATE:
                try:
                    client.post(f"work_pools/{pool}/queues", {"name": view["name"], **body})
                    return
                except PrefectError as exc:
                    if exc.status != 409:  # a pool's default queue: Prefect made it with the pool
                        raise
            client.patch(f"work_pools/{pool}/queues/{segment(view['name'])}", body)
        elif change.kind is Kind.AUTOMATION:
            self._put_automation(change, view, owner)
        else:
            self._put_deployment(change, view, owner)

    def _put_automation(self, change: Change, view: Any, owner: Owner | None) -> None:
        deployment_id = self._deployment_ids.get(view["deployment"])
        if deployment_id is None:  # made in this apply, but its id was not given back
            raise PrefectError(f'deployment "{view["deployment"]}" is not in the Prefect server')
        automation_id = self.observed.automations.get(change.key)
        if change.action is Action.CREATE or automation_id is None:
            body = automation_body(view, owner, deployment_id, create=True)
            self.client.post("automations/", body)
            return
        body = automation_body(view, owner, deployment_id, create=False)
        self.client.request("PUT", f"automations/{automation_id}", body)

    def _put_deployment(self, change: Change, view: Any, owner: Owner | None) -> None:
        body = deployment_body(view, owner)
        schedules = [schedule_body(s) for s in view.get("schedules") or []]
        ids = self.observed.deployments.get(change.key)
        if change.action is Action.CREATE or ids is None:
            flow_id = self._flows[view["flow_name"]]
            made = self.client.post(
                "deployments/",
                {"name": view["name"], "flow_id": flow_id, "schedules": schedules, **body},
            )
            if isinstance(made, dict) and made.get("id"):
                self._deployment_ids[change.key] = str(made["id"])
            return
        self.client.patch(f"deployments/{ids.id}", body)
        if any(d.path and d.path[0] == "schedules" for d in change.diffs):
            for schedule_id in ids.schedule_ids:
                self.client.delete(f"deployments/{ids.id}/schedules/{schedule_id}")
            if schedules:
                self.client.post(f"deployments/{ids.id}/schedules", schedules)

    def _delete(self, change: Change) -> None:
        assert change.observed is not None
        view = change.observed.view()
        try:
            if change.kind is Kind.DEPLOYMENT:
                ids = self.observed.deployments[change.key]
                self.client.delete(f"deployments/{ids.id}")
            elif change.kind is Kind.AUTOMATION:
                self.client.delete(f"automations/{self.observed.automations[change.key]}")
            elif change.kind is Kind.WORK_QUEUE:
                pool, name = segment(view["pool"]), segment(view["name"])
                self.client.delete(f"work_pools/{pool}/queues/{name}")
            else:
                self.client.delete(f"work_pools/{segment(view['name'])}")
        except PrefectError as exc:
            if exc.status != 404:  # already gone: what a delete wants
                raise
