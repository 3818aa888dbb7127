"""Deployment `triggers:` of prefect.yaml as Prefect automations, for the Prefect target
(`--store prefect+http(s)://...`): their Prefect view, read back from the server, and the
bodies of Prefect's `/automations` API.

`prefect deploy` makes each trigger of a deployment one automation: the trigger, and a single
`run-deployment` action (`source: selected`, the deployment's id, the trigger's `parameters`,
`job_variables` and `schedule_after`), named by the trigger's `name` or
`DEPLOYMENT__automation_N` (N from 1, its place in the list). Reconciler makes the same
automation, as an object of its own in the plan: `Kind.AUTOMATION` (the kind of our own
automations.yaml, which a Prefect target refuses, so no key is shared), keyed
`deployment-trigger:FLOW/DEPLOYMENT/NAME`, owned by the deployment's file. Its view holds the
deployment's key, not its id: a new deployment has no id until the applier makes it (the
applier resolves the key after the deployments' phase), and a plan reads the same view back
from the server by mapping the action's id to the deployment's key.

Ownership: a last line `[reconciler:owner=REPO::FILE]` of the automation's description,
which Prefect keeps through every update (as for pools and queues, reconciler/prefect_target/
mapping.py). An automation without it is never updated or pruned. Those that run a deployment
on the server (as `prefect deploy` makes them, or by hand) are read as made by hand, keyed by
that deployment and their name: a file declaring a trigger of the same name gets a collision
error, or with `--adopt` takes the automation over (`adopt` in the plan), instead of making a
second one that fires beside it. Any other automation is not read at all. Like `prefect deploy`, the
automation is created with `owner_resource: prefect.deployment.ID` (a `prefect deploy` of the
same deployment then deletes it; Prefect 3.9 does not delete it with the deployment: the
applier deletes it first).

The view is written one way (`trigger_view`): the trigger's type made explicit, every key of
Prefect's trigger present with its default, durations in seconds, label patterns as lists,
event names sorted; Prefect gives back what it was sent (plus ids, dropped here), so a trigger
applied and read back compares equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.core.diagnostics import Diagnostic, Location, error
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.prefect_rules.triggers import PROACTIVE_MINIMUM_SECONDS, parse_duration
from reconciler.prefect_target.mapping import description_with_owner, owner_of_description

KEY_PREFIX = "deployment-trigger:"
RUN_DEPLOYMENT = "run-deployment"


def automation_key(deployment: str, name: str) -> str:
    """The plan's key of a deployment trigger's automation (`deployment` is FLOW/NAME)."""
    return f"{KEY_PREFIX}{deployment}/{name}"


def trigger_name(deployment: str, index: int, raw: Mapping[str, Any]) -> str:
    """The automation's name: the trigger's `name`, else Prefect's `DEPLOYMENT__automation_N`."""
    return str(raw.get("name") or f"{deployment.split('/', 1)[-1]}__automation_{index + 1}")


# -- desired ---------------------------------------------------------------------------------


def deployment_automations(deployment: Resource) -> list[Resource]:
    """The automations of a desired deployment's `triggers:` (already checked by the build:
    reconciler/prefect_rules/triggers.py), in their Prefect view."""
    if deployment.kind is not Kind.DEPLOYMENT:
        return []
    raw_triggers = deployment.view().get("triggers")
    if not isinstance(raw_triggers, Sequence) or isinstance(raw_triggers, str):
        return []
    found: dict[str, Resource] = {}
    for index, raw in enumerate(raw_triggers):
        if not isinstance(raw, Mapping):
            continue
        name = trigger_name(deployment.key, index, raw)
        view = {
            "name": name,
            "description": str(raw.get("description") or "") or None,
            "enabled": raw.get("enabled", True) is not False,
            "deployment": deployment.key,
            "trigger": trigger_view(raw),
            "parameters": _mapping_or_none(raw.get("parameters")),
            "job_variables": _mapping_or_none(raw.get("job_variables")),
            "schedule_after": _seconds(raw.get("schedule_after")),
        }
        key = automation_key(deployment.key, name)
        found.setdefault(
            key,
            Resource.of(Kind.AUTOMATION, key, view, deployment.owner, deployment.source_commit),
        )
    return list(found.values())


def duplicate_names(deployment: Resource) -> list[str]:
    """Names two triggers of the deployment share (each would be one automation of the plan)."""
    raw_triggers = deployment.view().get("triggers") if deployment.kind is Kind.DEPLOYMENT else None
    if not isinstance(raw_triggers, Sequence) or isinstance(raw_triggers, str):
        return []
    seen: set[str] = set()
    twice: list[str] = []
    for index, raw in enumerate(raw_triggers):
        if isinstance(raw, Mapping):
            name = trigger_name(deployment.key, index, raw)
            if name in seen and name not in twice:
                twice.append(name)
            seen.add(name)
    return twice


def trigger_view(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A trigger (prefect.yaml's, or Prefect's JSON) written one way, as Prefect's server takes
    it and gives it back (without ids)."""
    kind = raw.get("type")
    if kind is None:
        kind = "event"
        if "triggers" in raw:
            kind = "compound" if "require" in raw else "sequence"
    if kind in ("compound", "sequence"):
        children = raw.get("triggers") or []
        view: dict[str, Any] = {
            "type": kind,
            "triggers": [trigger_view(c) for c in children if isinstance(c, Mapping)],
        }
        if kind == "compound":
            view["require"] = raw.get("require")
        within = raw.get("within")
        view["within"] = None if within is None else _seconds(within)
        return view
    posture = raw.get("posture") or "Reactive"
    within = _seconds(raw.get("within"))
    if posture == "Proactive" and not within:
        within = PROACTIVE_MINIMUM_SECONDS  # Prefect's default for a Proactive trigger
    related = raw.get("match_related")
    related_list = related if isinstance(related, list) else [related]
    return {
        "type": "event",
        "match": _spec(raw.get("match")),
        "match_related": [s for s in (_spec(r) for r in related_list) if s],
        "after": _names(raw.get("after")),
        "expect": _names(raw.get("expect")),
        "for_each": _names(raw.get("for_each")),
        "posture": posture,
        "threshold": raw.get("threshold", 1),
        "within": within,
    }


def _spec(raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(label): [value] if isinstance(value, str) else list(value)
        for label, value in sorted(raw.items())
        if isinstance(value, str | list)
    }


def _names(raw: Any) -> list[str]:
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    return sorted({str(i) for i in items}) if isinstance(items, list) else []


def _seconds(raw: Any) -> float:
    if raw is None:
        return 0.0
    return float(parse_duration(raw) or 0.0)


def _mapping_or_none(raw: Any) -> dict[str, Any] | None:
    return dict(raw) if isinstance(raw, Mapping) else None


# -- from Prefect ----------------------------------------------------------------------------


def observed_automation(raw: Mapping[str, Any], deployments: Mapping[str, str]) -> Resource | None:
    """A deployment trigger's automation from Prefect's JSON (`deployments`: id -> FLOW/NAME):
    one `run-deployment` of a selected deployment; None for any other. One without our owner
    line (made by `prefect deploy`, or by hand) is read only when its deployment is on the
    server, without an owner: declaring a trigger of the same name for that deployment is then
    a collision, or an `adopt` with `--adopt`, rather than a second automation firing beside
    it; any other of its kind is never updated or pruned."""
    owner, description = owner_of_description(raw.get("description"))
    actions = raw.get("actions") or []
    if len(actions) != 1 or not isinstance(actions[0], Mapping):
        return None
    action = actions[0]
    if action.get("type") != RUN_DEPLOYMENT or action.get("source") != "selected":
        return None
    deployment_id = str(action.get("deployment_id"))
    if owner is None and deployment_id not in deployments:
        return None
    # Ours, of a deployment gone from the server (deleted by hand): a key of its own, so prune
    # removes it.
    deployment = deployments.get(deployment_id, f"?/{deployment_id}")
    trigger = raw.get("trigger")
    name = str(raw.get("name"))
    view = {
        "name": name,
        "description": description,
        "enabled": bool(raw.get("enabled", True)),
        "deployment": deployment,
        "trigger": trigger_view(_without_ids(trigger)) if isinstance(trigger, Mapping) else None,
        "parameters": _mapping_or_none(action.get("parameters")),
        "job_variables": _mapping_or_none(action.get("job_variables")),
        "schedule_after": _seconds(action.get("schedule_after")),
    }
    return Resource.of(Kind.AUTOMATION, automation_key(deployment, name), view, owner)


def _without_ids(trigger: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in trigger.items() if k != "id"}
    if isinstance(out.get("triggers"), list):
        out["triggers"] = [_without_ids(c) for c in out["triggers"] if isinstance(c, Mapping)]
    return out


# -- to Prefect ------------------------------------------------------------------------------


def automation_body(
    view: Mapping[str, Any], owner: Owner | None, deployment_id: str, *, create: bool
) -> dict[str, Any]:
    """The body of `POST /automations/` (`create`) or `PUT /automations/{id}` (which refuses
    `owner_resource`)."""
    body: dict[str, Any] = {
        "name": view["name"],
        "description": description_with_owner(view.get("description"), owner) or "",
        "enabled": bool(view.get("enabled", True)),
        "trigger": view["trigger"],
        "actions": [
            {
                "type": RUN_DEPLOYMENT,
                "source": "selected",
                "deployment_id": deployment_id,
                "parameters": view.get("parameters"),
                "job_variables": view.get("job_variables"),
                "schedule_after": view.get("schedule_after") or 0.0,
            }
        ],
    }
    if create:
        body["owner_resource"] = f"prefect.deployment.{deployment_id}"
    return body


def trigger_problems(deployment: Resource, where: Location | None) -> list[Diagnostic]:
    """Errors of a deployment's triggers that only a Prefect target has: two triggers of one
    deployment named alike (each is one automation, found by its name), and a Proactive
    `within` under 10 s (our evaluator takes it, Prefect's server refuses it)."""
    found = [
        error(
            f'two triggers of deployment "{deployment.key}" are named "{name}": each is an '
            "automation in Prefect, found by its name",
            where,
            "give each trigger of the deployment its own `name:`",
        )
        for name in duplicate_names(deployment)
    ]
    for automation in deployment_automations(deployment):
        short = _short_proactive(automation.view().get("trigger"))
        if short is not None:
            found.append(
                error(
                    f'trigger "{automation.view()["name"]}" of deployment "{deployment.key}" is '
                    f"Proactive with `within` {short:g} s: Prefect refuses under "
                    f"{PROACTIVE_MINIMUM_SECONDS:g} s",
                    where,
                    "set `within` to 10 s or more to apply it to a Prefect server",
                )
            )
    return found


def _short_proactive(trigger: Any) -> float | None:
    """The `within` of a Proactive event trigger (at any depth) that Prefect would refuse."""
    if not isinstance(trigger, Mapping):
        return None
    if trigger.get("type") == "event":
        within = float(trigger.get("within") or 0.0)
        if trigger.get("posture") == "Proactive" and within < PROACTIVE_MINIMUM_SECONDS:
            return within
        return None
    for child in trigger.get("triggers") or []:
        short = _short_proactive(child)
        if short is not None:
            return short
    return None
