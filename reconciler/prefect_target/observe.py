"""`reconcile import --from prefect+http(s)://HOST/api`: what a Prefect server holds, as the
`ObservedState` the import writer (reconciler/onboard/export.py) reads.

Read-only: the same reads as a plan against the server (reconciler/prefect_target/reader.py),
then each object's *Prefect view* (reconciler/prefect_target/mapping.py) turned into our spec
where the two differ, so that the files written plan back to the same view (the round trip):

- a deployment's schedules are written our way (reconciler/prefect_rules/schedules.py): the
  flat form `{type, cron, timezone, day_or, ...}`; a `UTC` time zone, Prefect's default, is
  left out (the view reads a missing one as UTC);
- everything else a deployment's view holds already has our spec's keys (`work_pool_name`,
  `work_queue_name`, `job_variables`, `pull_steps`, `tags` without the owner tag, ...);
- pools and queues: the view is our spec (the owner line is out of the description);
- the automations of deployment triggers (reconciler/prefect_target/automations.py: ours,
  and those `prefect deploy` made) go back into their deployment's `triggers:`, each named,
  without Prefect's defaults.

Objects reconciler did not make have `owner=None` (the owner marker is read as for a plan).
An unreachable server or a refused key is a `UserError` with a hint (the client's errors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Resource
from reconciler.prefect_rules.schedules import ScheduleError, normalize_schedule
from reconciler.prefect_target.client import PrefectClient
from reconciler.prefect_target.reader import read_observed
from reconciler.prefect_target.url import parse_prefect_url

_FLAT_KEYS = {
    "cron": ("cron", "timezone", "day_or"),
    "interval": ("interval_seconds", "anchor_date", "timezone"),
    "rrule": ("rrule", "timezone"),
}


def observe_url(url: str) -> ObservedState:
    """Everything the Prefect server at `url` holds, as our specs (read-only)."""
    target = parse_prefect_url(url)
    with PrefectClient.of(target) as client:
        client.health()
        observed = read_observed(client).state
    triggers: dict[str, list[dict[str, Any]]] = {}
    for resource in sorted(observed.of_kind(Kind.AUTOMATION), key=lambda r: r.key):
        view = resource.view()
        triggers.setdefault(str(view["deployment"]), []).append(trigger_entry(view))
    resources: dict[tuple[Kind, str], Resource] = {}
    for ident, resource in observed.resources.items():
        if resource.kind is Kind.AUTOMATION:
            continue  # written back into its deployment's `triggers:`
        if resource.kind is Kind.DEPLOYMENT:
            spec = deployment_spec(resource.spec)
            if resource.key in triggers:
                spec["triggers"] = triggers[resource.key]
            resource = Resource.of(resource.kind, resource.key, spec, resource.owner)
        resources[ident] = resource
    return ObservedState(revision=0, resources=resources, variables=observed.variables)


def deployment_spec(view: Mapping[str, Any]) -> dict[str, Any]:
    """Our spec of a deployment from its Prefect view."""
    spec = dict(view)
    spec["schedules"] = [schedule_spec(s) for s in view.get("schedules") or []]
    if not spec.get("concurrency_options"):
        spec.pop("concurrency_options", None)
    return spec


def trigger_entry(view: Mapping[str, Any]) -> dict[str, Any]:
    """A deployment trigger's automation (its view: reconciler/prefect_target/automations.py)
    as the entry of `triggers:` that applies back to the same view, without Prefect's
    defaults (always named: the name is the automation's key)."""
    entry: dict[str, Any] = {"name": view["name"]}
    if view.get("description"):
        entry["description"] = view["description"]
    if view.get("enabled") is False:
        entry["enabled"] = False
    entry.update(_trigger_fields(view.get("trigger") or {}))
    for key in ("parameters", "job_variables"):
        if view.get(key):
            entry[key] = view[key]
    if view.get("schedule_after"):
        entry["schedule_after"] = view["schedule_after"]
    return entry


def _trigger_fields(trigger: Mapping[str, Any]) -> dict[str, Any]:
    """A trigger's view without what is its default (and labels of one value unlisted)."""
    kind = trigger.get("type", "event")
    if kind in ("compound", "sequence"):
        fields: dict[str, Any] = {"type": kind}
        if kind == "compound":
            fields["require"] = trigger.get("require")
        if trigger.get("within") is not None:
            fields["within"] = trigger["within"]
        fields["triggers"] = [_trigger_fields(child) for child in trigger.get("triggers") or []]
        return fields
    fields = {}
    if trigger.get("match"):
        fields["match"] = _labels(trigger["match"])
    related = [_labels(r) for r in trigger.get("match_related") or []]
    if related:
        fields["match_related"] = related[0] if len(related) == 1 else related
    for key in ("after", "expect", "for_each"):
        if trigger.get(key):
            fields[key] = list(trigger[key])
    if trigger.get("posture", "Reactive") != "Reactive":
        fields["posture"] = trigger["posture"]
    if trigger.get("threshold", 1) != 1:
        fields["threshold"] = trigger["threshold"]
    if trigger.get("within"):
        fields["within"] = trigger["within"]
    return fields


def _labels(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        label: values[0] if isinstance(values, list) and len(values) == 1 else values
        for label, values in spec.items()
    }


def schedule_spec(view: Mapping[str, Any]) -> dict[str, Any]:
    """One schedule of a deployment's view in our stored form (as a prefect.yaml entry would
    give it), the view itself when it does not read as one."""
    kind = str(view.get("type"))
    entry: dict[str, Any] = {}
    for key in _FLAT_KEYS.get(kind, ()):
        value = view.get(key)
        if value is None or (key == "timezone" and value == "UTC"):
            continue
        entry["interval" if key == "interval_seconds" else key] = value
    entry["active"] = bool(view.get("active", True))
    if view.get("parameters"):
        entry["parameters"] = view["parameters"]
    if view.get("slug"):
        entry["slug"] = view["slug"]
    try:
        return normalize_schedule(entry)
    except ScheduleError:
        return dict(view)
