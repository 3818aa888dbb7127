"""What a Prefect server holds, as the `ObservedState` a plan reads.

Every work pool, work queue and deployment is read (their owners decide what a plan may touch:
an object without reconciler's marker is made by hand, and only its name matters, for the
collision error), with the ids the applier needs to change them, and the variables (for
`{{ prefect.variables.NAME }}`). Of the automations, only those reconciler made for deployment
triggers are read (reconciler/prefect_target/automations.py): any other is never touched."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Resource
from reconciler.prefect_target.automations import observed_automation
from reconciler.prefect_target.client import PrefectClient
from reconciler.prefect_target.mapping import observed_deployment, observed_pool, observed_queue


@dataclass(frozen=True)
class DeploymentIds:
    id: str
    flow_id: str
    schedule_ids: tuple[str, ...]


@dataclass
class Observed:
    """The observed state, and the server's ids behind it."""

    state: ObservedState
    deployments: dict[str, DeploymentIds] = field(default_factory=dict)
    flows: dict[str, str] = field(default_factory=dict)
    """flow name -> id"""
    automations: dict[str, str] = field(default_factory=dict)
    """our automations: key -> id"""


def segment(name: str) -> str:
    """A name as one path segment of a URL."""
    return quote(name, safe="")


def read_observed(client: PrefectClient) -> Observed:
    """Everything at once: the deployments' pages, pools, flows and variables concurrently
    (the server's answer time is what a no-op plan costs), then each pool's queues."""
    total = int(client.post("deployments/count", {}))
    calls: list[Callable[[], list[dict[str, Any]]]] = [
        lambda: client.filter_all("work_pools/filter"),
        lambda: client.filter_all("flows/filter"),
        lambda: client.filter_all("variables/filter"),
        lambda: client.filter_all("automations/filter"),
        *client.filter_pages("deployments/filter", total),
    ]
    pools, flows, variables, automations, *pages = client.gather(lambda call: call(), calls)
    deployments = _unique(raw for page in pages for raw in page)
    names = [str(p["name"]) for p in pools]
    queue_lists = client.gather(
        lambda pool: client.filter_all(f"work_pools/{segment(pool)}/queues/filter"), names
    )

    resources: dict[tuple[Kind, str], Resource] = {}
    for raw in pools:
        pool = observed_pool(raw)
        resources[pool.ident] = pool
    for name, queues in zip(names, queue_lists, strict=True):
        for raw in queues:
            queue = observed_queue(raw, name)
            resources[queue.ident] = queue
    flow_names = {str(f["id"]): str(f["name"]) for f in flows}
    ids: dict[str, DeploymentIds] = {}
    for raw in deployments:
        flow_name = flow_names.get(str(raw.get("flow_id")))
        if flow_name is None:
            continue  # its flow was deleted under it: not a deployment anyone can run
        deployment = observed_deployment(raw, flow_name)
        resources[deployment.ident] = deployment
        ids[deployment.key] = DeploymentIds(
            str(raw["id"]),
            str(raw["flow_id"]),
            tuple(str(s["id"]) for s in raw.get("schedules") or [] if s.get("id")),
        )
    keys = {deployment_ids.id: key for key, deployment_ids in ids.items()}
    automation_ids: dict[str, str] = {}
    for raw in automations:
        automation = observed_automation(raw, keys)
        if automation is None:
            continue
        if automation.ident in resources:  # ours twice (an apply cut short): the later is extra
            extra = f"{automation.key} [{raw['id']}]"
            automation = Resource.of(Kind.AUTOMATION, extra, automation.spec, automation.owner)
        resources[automation.ident] = automation
        automation_ids[automation.key] = str(raw["id"])
    values: dict[str, Any] = {str(v["name"]): v.get("value") for v in variables}
    return Observed(
        ObservedState(revision=0, resources=resources, variables=values),
        ids,
        {name: fid for fid, name in flow_names.items()},
        automation_ids,
    )


def _unique(deployments: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pages read at once may overlap when a deployment was made between them: once each."""
    return list({str(d["id"]): d for d in deployments}.values())
