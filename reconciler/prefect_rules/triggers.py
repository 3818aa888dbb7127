"""Deployment triggers of prefect.yaml, by Prefect's rules (design notes: "Triggers"): what a
trigger may say, what it means, and the checks made at plan time. Pure: the evaluator that
applies them to stored events is reconciler/scheduling/triggers.py.

A trigger is an event trigger (`match`, `match_related`, `expect`, `after`, `for_each`,
`posture`, `threshold`, `within`) or a composite one: `compound` (`triggers`, `require`:
a number, "any" or "all", `within`) or `sequence` (`triggers` in order, `within`). Its type is
`type:` or, as Prefect infers it, `triggers` with `require` (compound), `triggers` alone
(sequence), else event. Deployment fields: `name`, `description`, `enabled`, `parameters`,
`job_variables`, `schedule_after`.

Resource patterns (Prefect's): a label's value is one string or a list; a value matches when
it equals the pattern, or starts with it when the pattern ends in `*`; a leading `!` negates.
Event names in `expect`/`after` match the same way (without `!`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reconciler.model.prefect_records import EventRecord

Path = tuple[str | int, ...]

EVENT_KEYS = frozenset(
    {
        "type",
        "match",
        "match_related",
        "after",
        "expect",
        "for_each",
        "posture",
        "threshold",
        "within",
    }
)
COMPOSITE_KEYS = frozenset({"type", "triggers", "require", "within"})
DEPLOYMENT_KEYS = frozenset(
    {"name", "description", "enabled", "parameters", "job_variables", "schedule_after"}
)
TYPES = ("event", "compound", "sequence")
PROACTIVE_MINIMUM_SECONDS = 10.0
"""Prefect refuses a Proactive `within` under 10 s; we accept down to 1 s with a warning."""


@dataclass(frozen=True)
class Problem:
    """A problem with a trigger: where (below the deployment), what, and what to do."""

    path: Path
    message: str
    hint: str | None = None
    is_error: bool = True


class TriggerError(ValueError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)


ResourceSpec = tuple[tuple[str, tuple[str, ...]], ...]
"""Label -> the patterns one of which its value must match (all labels must)."""


@dataclass(frozen=True)
class EventTrigger:
    match: ResourceSpec = ()
    match_related: tuple[ResourceSpec, ...] = ()
    after: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()
    for_each: tuple[str, ...] = ()
    posture: Literal["Reactive", "Proactive"] = "Reactive"
    threshold: int = 1
    within: float = 0.0

    @property
    def immediate(self) -> bool:
        return self.posture == "Reactive" and self.within == 0

    def covers(self, event: EventRecord) -> bool:
        """The event is one this trigger looks at (its name, its resource, its related)."""
        names = (*self.expect, *self.after)
        if names and not any(name_matches(p, event.event) for p in names):
            return False
        if not spec_matches(self.match, event.resource):
            return False
        return all(
            any(spec_matches(spec, related) for related in event.related) or not spec
            for spec in self.match_related
        )

    def starts_after(self, name: str) -> bool:
        return any(name_matches(p, name) for p in self.after)

    def expects(self, name: str) -> bool:
        return not self.expect or any(name_matches(p, name) for p in self.expect)

    def meets_threshold(self, count: int) -> bool:
        if self.posture == "Reactive":
            return count >= self.threshold
        return count < self.threshold

    def bucket_key(self, event: EventRecord) -> str:
        return json.dumps([label_of(event, label) or "" for label in self.for_each])


@dataclass(frozen=True)
class CompositeTrigger:
    kind: Literal["compound", "sequence"]
    triggers: tuple[EventTrigger | CompositeTrigger, ...]
    require: int
    within: float | None = None


TriggerNode = EventTrigger | CompositeTrigger


@dataclass(frozen=True)
class DeploymentTrigger:
    """One entry of a deployment's `triggers:`, checked."""

    id: str
    """Stable for the same deployment and the same text: a changed trigger is a new one."""
    index: int
    name: str
    trigger: TriggerNode
    enabled: bool = True
    description: str = ""
    parameters: Mapping[str, Any] | None = field(default=None, hash=False)
    job_variables: Mapping[str, Any] | None = field(default=None, hash=False)
    schedule_after: float = 0.0


# -- matching ---------------------------------------------------------------------------------


def value_matches(pattern: str, value: Any) -> bool:
    """Prefect's label match: `!` negates, a trailing `*` matches any ending."""
    if value is None:
        return False
    text = str(value)
    positive = not pattern.startswith("!")
    body = pattern if positive else pattern[1:]
    found = text.startswith(body[:-1]) if body.endswith("*") else text == body
    return found if positive else not found


def name_matches(pattern: str, name: str) -> bool:
    """An event name pattern of `expect`/`after`: exact, or a `*` for any characters."""
    if "*" not in pattern:
        return pattern == name
    regex = ".+".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, name) is not None


def spec_matches(spec: ResourceSpec, resource: Mapping[str, Any]) -> bool:
    return all(
        any(value_matches(p, resource.get(label)) for p in patterns) for label, patterns in spec
    )


def label_of(event: EventRecord, label: str) -> str | None:
    """A label of the event's resource, or `related:<role>:<label>` of its first related
    resource in that role (Prefect's `for_each` labels)."""
    if label.startswith("related:"):
        role, _, name = label[len("related:") :].partition(":")
        for related in event.related:
            if related.get("prefect.resource.role") == role and name in related:
                return str(related[name])
        return None
    value = event.resource.get(label)
    return None if value is None else str(value)


# -- parsing ----------------------------------------------------------------------------------


def parse_duration(value: Any) -> float | None:
    """Seconds from a number, `HH:MM[:SS]`, or an ISO 8601 duration (`PT30S`, `P1DT2H`);
    None when it is none of these, or negative."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    clock = re.fullmatch(r"(?:(\d+) days?,? )?(\d+):(\d{1,2})(?::(\d{1,2}(?:\.\d+)?))?", text)
    if clock:
        days, hours, minutes, seconds = clock.groups()
        return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds or 0)
    iso = re.fullmatch(
        r"P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
        r"(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?",
        text.upper(),
    )
    if iso and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        weeks, days, hours, minutes, seconds = (float(g or 0) for g in iso.groups())
        return weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + seconds
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number >= 0 else None


def _did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else None


class _Parser:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, path: Path, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(path, message, hint))

    def warn(self, path: Path, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(path, message, hint, is_error=False))

    def unknown(self, raw: Mapping[str, Any], known: frozenset[str], path: Path) -> None:
        for key in raw:
            if key not in known:
                self.problem(
                    (*path, str(key)),
                    f"unknown key `{key}` in a trigger",
                    _did_you_mean(str(key), sorted(known))
                    or f"a trigger's keys are {', '.join(sorted(known))}",
                )

    def names(self, raw: Any, path: Path) -> tuple[str, ...]:
        if raw is None:
            return ()
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            self.problem(path, f"`{path[-1]}` must be a string or a list of strings")
            return ()
        return tuple(sorted(set(items)))

    def resource_spec(self, raw: Any, path: Path) -> ResourceSpec:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            self.problem(path, f"`{path[-1]}` must be a mapping of resource labels to patterns")
            return ()
        found = []
        for label, value in sorted(raw.items()):
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                self.problem(
                    (*path, label), f"the pattern of `{label}` must be a string or strings"
                )
                continue
            found.append((str(label), tuple(values)))
        return tuple(found)

    def duration(self, raw: Any, path: Path) -> float | None:
        seconds = parse_duration(raw)
        if seconds is None:
            self.problem(
                path,
                f"`within` must be a duration; got {json.dumps(raw, default=str)}",
                "write seconds (30), HH:MM:SS (00:00:30) or ISO 8601 (PT30S); not negative",
            )
        return seconds

    def node(self, raw: Any, path: Path) -> TriggerNode | None:
        if not isinstance(raw, dict):
            self.problem(path, "a trigger must be a mapping")
            return None
        kind = raw.get("type")
        if kind is None:
            kind = "event"
            if "triggers" in raw:
                kind = "compound" if "require" in raw else "sequence"
        if kind == "metric" or raw.get("posture") == "Metric":
            self.problem(
                (*path, "type" if "type" in raw else "posture"),
                "metric triggers are not supported: reconciler keeps no metrics",
                "use an event trigger (Reactive or Proactive) instead",
            )
            return None
        if kind not in TYPES:
            self.problem(
                (*path, "type"),
                f"unknown trigger type {json.dumps(kind)}",
                _did_you_mean(str(kind), TYPES) or "use event, compound or sequence",
            )
            return None
        if kind == "event":
            return self.event(raw, path)
        return self.composite(raw, "compound" if kind == "compound" else "sequence", path)

    def event(self, raw: Mapping[str, Any], path: Path) -> EventTrigger | None:
        known = EVENT_KEYS | (DEPLOYMENT_KEYS if len(path) == 1 else frozenset())
        self.unknown(raw, known, path)
        posture = raw.get("posture", "Reactive")
        if posture not in ("Reactive", "Proactive"):
            self.problem(
                (*path, "posture"),
                f"`posture` must be Reactive or Proactive; got {json.dumps(posture)}",
                _did_you_mean(str(posture), ["Reactive", "Proactive"]),
            )
            posture = "Reactive"
        threshold = raw.get("threshold", 1)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            self.problem((*path, "threshold"), "`threshold` must be a whole number, 1 or more")
            threshold = 1
        within = 0.0
        if "within" in raw:
            within = self.duration(raw["within"], (*path, "within")) or 0.0
        if posture == "Proactive":
            if within == 0:
                within = PROACTIVE_MINIMUM_SECONDS
            elif within < 1:
                self.problem(
                    (*path, "within"), "a Proactive trigger's `within` must be 1 s or more"
                )
            elif within < PROACTIVE_MINIMUM_SECONDS:
                self.warn(
                    (*path, "within"),
                    f"Prefect refuses a Proactive `within` under 10 s; reconciler accepts "
                    f"{within:g} s",
                    "use 10 s or more if this file must also deploy with Prefect",
                )
        related_raw = raw.get("match_related")
        related: tuple[ResourceSpec, ...] = ()
        if isinstance(related_raw, list):
            related = tuple(
                self.resource_spec(item, (*path, "match_related", i))
                for i, item in enumerate(related_raw)
            )
        elif related_raw is not None:
            related = (self.resource_spec(related_raw, (*path, "match_related")),)
        return EventTrigger(
            match=self.resource_spec(raw.get("match"), (*path, "match")),
            match_related=tuple(spec for spec in related if spec),
            after=self.names(raw.get("after"), (*path, "after")),
            expect=self.names(raw.get("expect"), (*path, "expect")),
            for_each=self.names(raw.get("for_each"), (*path, "for_each")),
            posture=posture,
            threshold=threshold,
            within=within,
        )

    def composite(
        self, raw: Mapping[str, Any], kind: Literal["compound", "sequence"], path: Path
    ) -> CompositeTrigger | None:
        known = COMPOSITE_KEYS | (DEPLOYMENT_KEYS if len(path) == 1 else frozenset())
        if kind == "sequence":
            known = known - {"require"}
        self.unknown(raw, known, path)
        children_raw = raw.get("triggers")
        if not isinstance(children_raw, list) or not children_raw:
            self.problem((*path, "triggers"), f"a {kind} trigger needs a list of `triggers`")
            return None
        children = [
            self.node(child, (*path, "triggers", i)) for i, child in enumerate(children_raw)
        ]
        require = len(children)
        if kind == "compound":
            wanted = raw.get("require")
            if wanted == "any":
                require = 1
            elif wanted == "all":
                require = len(children)
            elif isinstance(wanted, int) and not isinstance(wanted, bool):
                if not 1 <= wanted <= len(children):
                    self.problem(
                        (*path, "require"),
                        f"`require` must be between 1 and {len(children)} (the number of "
                        f"triggers); got {wanted}",
                    )
                require = wanted
            else:
                self.problem(
                    (*path, "require"),
                    f'`require` must be a number, "any" or "all"; got {json.dumps(wanted)}',
                )
        within = None
        if raw.get("within") is not None:
            within = self.duration(raw["within"], (*path, "within"))
        if any(child is None for child in children):
            return None
        return CompositeTrigger(
            kind=kind,
            triggers=tuple(c for c in children if c is not None),
            require=require,
            within=within,
        )


def _templates(value: Any, path: Path, parser: _Parser) -> None:
    """Every Jinja template among the parameters must parse (sandboxed, as at firing)."""
    from jinja2 import TemplateSyntaxError

    if isinstance(value, dict):
        if value.get("__prefect_kind") == "jinja":
            _templates(str(value.get("template", "")), (*path, "template"), parser)
            return
        for key, item in value.items():
            _templates(item, (*path, str(key)), parser)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _templates(item, (*path, index), parser)
    elif isinstance(value, str) and is_template(value):
        try:
            _environment().parse(value)
        except TemplateSyntaxError as exc:
            parser.problem(path, f"the template does not parse: {exc.message}", value[:80])


def trigger_id(deployment: str, raw: Any) -> str:
    text = json.dumps([deployment, raw], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parse_triggers(
    deployment: str, raw: Sequence[Any] | None
) -> tuple[list[DeploymentTrigger], list[Problem]]:
    """The deployment's triggers and every problem found (paths below `triggers`)."""
    parser = _Parser()
    found: list[DeploymentTrigger] = []
    for index, item in enumerate(raw or ()):
        path: Path = (index,)
        node = parser.node(item, path)
        if node is None or not isinstance(item, dict):
            continue
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            parser.problem((index, "enabled"), "`enabled` must be true or false")
        schedule_after = 0.0
        if item.get("schedule_after") is not None:
            schedule_after = parser.duration(item["schedule_after"], (index, "schedule_after")) or 0
        for key in ("parameters", "job_variables"):
            if item.get(key) is not None and not isinstance(item.get(key), dict):
                parser.problem((index, key), f"`{key}` must be a mapping")
        _templates(item.get("parameters"), (index, "parameters"), parser)
        found.append(
            DeploymentTrigger(
                id=trigger_id(deployment, item),
                index=index,
                name=str(
                    item.get("name") or f"{deployment.split('/')[-1]}__automation_{index + 1}"
                ),
                trigger=node,
                enabled=enabled is not False,
                description=str(item.get("description") or ""),
                parameters=item.get("parameters")
                if isinstance(item.get("parameters"), dict)
                else None,
                job_variables=item.get("job_variables")
                if isinstance(item.get("job_variables"), dict)
                else None,
                schedule_after=schedule_after,
            )
        )
    return found, parser.problems


def checked_triggers(deployment: str, raw: Sequence[Any] | None) -> list[DeploymentTrigger]:
    """The triggers, or TriggerError with the errors (warnings are left out)."""
    found, problems = parse_triggers(deployment, raw)
    errors = [p for p in problems if p.is_error]
    if errors:
        raise TriggerError(errors)
    return found


# -- templates --------------------------------------------------------------------------------


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _environment() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(autoescape=False)


def event_context(event: EventRecord | None) -> dict[str, Any]:
    """What a parameter template sees: `event` (id, event, occurred, resource, related,
    payload), as in Prefect's `{{ event.resource.id }}`; `event.resource` also answers
    `event.resource.id` and `event.resource.name`."""
    if event is None:
        return {"event": None}
    resource = dict(event.resource)
    resource.setdefault("id", event.resource_id)
    resource.setdefault("name", event.resource.get("prefect.resource.name"))
    related = []
    for item in event.related:
        entry = dict(item)
        entry.setdefault("id", item.get("prefect.resource.id"))
        entry.setdefault("name", item.get("prefect.resource.name"))
        entry.setdefault("role", item.get("prefect.resource.role"))
        related.append(entry)
    return {
        "event": {
            "id": event.id,
            "event": event.event,
            "occurred": event.occurred,
            "resource": resource,
            "related": related,
            "payload": event.payload,
        }
    }


def render_parameters(parameters: Any, event: EventRecord | None) -> Any:
    """The trigger's parameters with every template rendered from the triggering event
    (sandboxed Jinja; strings with `{{`/`{%`, and `{"__prefect_kind": "jinja"}` values)."""
    environment = _environment()
    context = event_context(event)

    def render(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("__prefect_kind") == "jinja":
                return environment.from_string(str(value.get("template", ""))).render(context)
            return {key: render(item) for key, item in value.items()}
        if isinstance(value, list):
            return [render(item) for item in value]
        if isinstance(value, str) and is_template(value):
            return environment.from_string(value).render(context)
        return value

    return render(parameters)


# -- events from outside ----------------------------------------------------------------------


class EventShapeError(ValueError):
    """What is wrong with an event sent from outside (the message says what to send)."""


def event_from_json(raw: Any, *, now: str) -> EventRecord:
    """An event posted or made by a webhook's template, in Prefect's shape: `event` and
    `resource` with `prefect.resource.id` are required; `id` (default: a new uuid),
    `occurred` (default: `now`), `related` (a list of resources) and `payload` optional."""
    import datetime
    import uuid

    if not isinstance(raw, dict):
        raise EventShapeError("an event is a JSON object")
    name = raw.get("event")
    if not isinstance(name, str) or not name:
        raise EventShapeError("the event needs `event`, its name (e.g. acme.file.arrived)")
    resource = raw.get("resource")
    if not isinstance(resource, dict) or not isinstance(resource.get("prefect.resource.id"), str):
        raise EventShapeError('the event needs `resource` with "prefect.resource.id"')
    related = raw.get("related") or []
    if not isinstance(related, list) or not all(
        isinstance(r, dict) and isinstance(r.get("prefect.resource.id"), str) for r in related
    ):
        raise EventShapeError('`related` must be a list of resources with "prefect.resource.id"')
    payload = raw.get("payload") or {}
    if not isinstance(payload, dict):
        raise EventShapeError("`payload` must be a JSON object")
    occurred = raw.get("occurred") or now
    try:
        datetime.datetime.fromisoformat(str(occurred).replace("Z", "+00:00"))
    except ValueError:
        raise EventShapeError(f"`occurred` must be an ISO 8601 time, not {occurred!r}") from None
    return EventRecord(
        id=str(raw.get("id") or uuid.uuid4()),
        occurred=str(occurred),
        event=name,
        resource={str(k): str(v) for k, v in resource.items()},
        related=[{str(k): str(v) for k, v in r.items()} for r in related],
        payload=payload,
    )


def check_template(template: str) -> str | None:
    """None when the webhook template parses (sandboxed Jinja), else why not."""
    from jinja2 import TemplateSyntaxError

    try:
        _environment().parse(template)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return None


def webhook_event(
    template: str, body: bytes, headers: Mapping[str, str], *, now: str
) -> EventRecord:
    """The event a webhook's template makes of a request: the template (sandboxed Jinja)
    sees `body` (the JSON body, or None), `raw_body` (its text) and `headers`, and renders
    the event as JSON."""
    from jinja2 import TemplateError

    text = body.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    context = {"body": parsed, "raw_body": text, "headers": dict(headers)}
    try:
        rendered = _environment().from_string(template).render(context)
    except TemplateError as exc:
        raise EventShapeError(f"the webhook's template failed: {exc}") from None
    try:
        raw = json.loads(rendered)
    except ValueError as exc:
        raise EventShapeError(f"the webhook's template did not make JSON: {exc}") from None
    return event_from_json(raw, now=now)


# -- automations (automations.yaml) -----------------------------------------------------------

ACTION_NEEDS = {
    "run-deployment": "deployment",
    "pause-deployment": "deployment",
    "resume-deployment": "deployment",
    "pause-work-pool": "work_pool",
    "resume-work-pool": "work_pool",
    "send-notification": "body",
}
"""Each action type and the key it cannot do without."""


def automation_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with one automation of automations.yaml beyond its JSON Schema: its
    trigger by the rules of deployment triggers (no deployment keys), each action's required
    key and its templates."""
    parser = _Parser()
    parser.node(raw.get("trigger"), ("trigger",))
    for index, action in enumerate(raw.get("actions") or []):
        needed = ACTION_NEEDS.get(str(action.get("type")))
        if needed is not None and needed not in action:
            parser.problem(
                ("actions", index),
                f"a {action['type']} action needs `{needed}`",
            )
        for key in ("parameters", "subject", "body"):
            if key in action:
                _templates(action[key], ("actions", index, key), parser)
    return parser.problems


def automation_trigger(name: str, raw: Mapping[str, Any]) -> DeploymentTrigger | None:
    """The automation's trigger as the evaluator arms it (None when it does not parse)."""
    parser = _Parser()
    node = parser.node(raw.get("trigger"), ("trigger",))
    if node is None or any(p.is_error for p in parser.problems):
        return None
    return DeploymentTrigger(
        id=trigger_id(f"automation:{name}", {k: raw.get(k) for k in ("trigger", "actions")}),
        index=0,
        name=name,
        trigger=node,
        enabled=raw.get("enabled", True) is not False,
        description=str(raw.get("description") or ""),
    )


def render_text(template: str, event: EventRecord | None, extra: Mapping[str, Any]) -> str:
    """A notification's subject or body, rendered (sandboxed) from the event and `extra`."""
    return str(_environment().from_string(template).render({**event_context(event), **extra}))
