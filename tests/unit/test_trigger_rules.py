"""Prefect's trigger rules (reconciler/prefect_rules/triggers.py): what a trigger may say,
how resources and event names match, durations, and parameters rendered from an event."""

from __future__ import annotations

import pytest

from reconciler.model.prefect_records import EventRecord
from reconciler.prefect_rules.triggers import (
    CompositeTrigger,
    EventShapeError,
    EventTrigger,
    event_from_json,
    name_matches,
    parse_duration,
    parse_triggers,
    render_parameters,
    value_matches,
    webhook_event,
)

EVENT = EventRecord(
    id="e1",
    occurred="2026-01-01T00:00:00+00:00",
    event="prefect.flow-run.Completed",
    resource={"prefect.resource.id": "prefect.flow-run.abc", "prefect.resource.name": "red-fox"},
    related=[
        {
            "prefect.resource.id": "prefect.deployment.1",
            "prefect.resource.role": "deployment",
            "prefect.resource.name": "nightly",
        }
    ],
    payload={"validated_state": {"type": "COMPLETED"}},
)


def test_patterns_match_as_prefect_matches() -> None:
    assert value_matches("prefect.flow-run.*", "prefect.flow-run.abc")
    assert not value_matches("prefect.flow-run.*", "prefect.task-run.abc")
    assert value_matches("!prefect.flow-run.*", "prefect.task-run.abc")
    assert not value_matches("x", None)
    assert name_matches("prefect.flow-run.*", "prefect.flow-run.Completed")
    assert name_matches("prefect.*.Completed", "prefect.flow-run.Completed")
    assert not name_matches("prefect.flow-run.Completed", "prefect.flow-run.Failed")


def test_an_event_trigger_covers_by_name_resource_and_related() -> None:
    (trigger,), problems = parse_triggers(
        "etl/report",
        [
            {
                "expect": "prefect.flow-run.Completed",
                "match": {"prefect.resource.id": "prefect.flow-run.*"},
                "match_related": {
                    "prefect.resource.role": "deployment",
                    "prefect.resource.name": ["nightly", "hourly"],
                },
            }
        ],
    )
    assert problems == []
    node = trigger.trigger
    assert isinstance(node, EventTrigger) and node.covers(EVENT)
    assert trigger.name == "report__automation_1" and trigger.enabled
    other = EventRecord("e2", EVENT.occurred, EVENT.event, EVENT.resource, [], {})
    assert not node.covers(other)


def test_types_are_inferred_as_prefect_infers_them() -> None:
    found, problems = parse_triggers(
        "etl/report",
        [
            {"triggers": [{"expect": ["a"]}, {"expect": ["b"]}], "require": "any"},
            {"triggers": [{"expect": ["a"]}, {"expect": ["b"]}]},
            {"posture": "Proactive", "expect": ["a"]},
        ],
    )
    assert problems == []
    compound, sequence, proactive = (t.trigger for t in found)
    assert isinstance(compound, CompositeTrigger) and compound.kind == "compound"
    assert compound.require == 1
    assert isinstance(sequence, CompositeTrigger) and sequence.kind == "sequence"
    assert isinstance(proactive, EventTrigger) and proactive.within == 10.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"expects": ["a"]}, 'unknown key `expects` in a trigger|did you mean "expect"?'),
        ({"within": "soon"}, '`within` must be a duration; got "soon"'),
        ({"within": -1}, "`within` must be a duration"),
        ({"posture": "Reactve"}, 'must be Reactive or Proactive; got "Reactve"|"Reactive"'),
        ({"threshold": 0}, "`threshold` must be a whole number, 1 or more"),
        ({"type": "metric"}, "metric triggers are not supported"),
        ({"triggers": [{"expect": ["a"]}], "require": 2}, "`require` must be between 1 and 1"),
        ({"parameters": {"x": "{{ event.id "}}, "the template does not parse"),
        ({"enabled": "yes"}, "`enabled` must be true or false"),
    ],
)
def test_problems_say_what_is_wrong(raw: dict[str, object], message: str) -> None:
    _, problems = parse_triggers("etl/report", [raw])
    text = " ".join(f"{p.message}|{p.hint}" for p in problems if p.is_error)
    for part in message.split("|"):
        assert part in text, text


def test_a_short_proactive_window_is_a_warning() -> None:
    _, problems = parse_triggers("etl/r", [{"posture": "Proactive", "within": 2}])
    (warning,) = problems
    assert not warning.is_error and "Prefect refuses" in warning.message


def test_durations() -> None:
    assert parse_duration(30) == 30.0
    assert parse_duration("PT1M30S") == 90.0
    assert parse_duration("P1D") == 86400.0
    assert parse_duration("00:01:00") == 60.0
    assert parse_duration("12.5") == 12.5
    for bad in ("P", "PT", "1 minute", True, None, "-3"):
        assert parse_duration(bad) is None


def test_parameters_are_rendered_from_the_event_in_a_sandbox() -> None:
    rendered = render_parameters(
        {
            "run": "{{ event.resource.id }}",
            "name": "{{ event.resource.name }} via {{ event.related[0].name }}",
            "nested": [{"state": "{{ event.payload.validated_state.type }}"}, 3],
            "wrapped": {"__prefect_kind": "jinja", "template": "{{ event.event }}"},
            "plain": 7,
        },
        EVENT,
    )
    assert rendered == {
        "run": "prefect.flow-run.abc",
        "name": "red-fox via nightly",
        "nested": [{"state": "COMPLETED"}, 3],
        "wrapped": "prefect.flow-run.Completed",
        "plain": 7,
    }
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        render_parameters({"x": "{{ event.__class__.__mro__ }}"}, EVENT)


def test_events_from_outside() -> None:
    made = webhook_event(
        '{"event": "acme.{{ body.kind }}", "resource": {"prefect.resource.id": "acme.x"}}',
        b'{"kind": "arrived"}',
        {},
        now="2026-01-01T00:00:00+00:00",
    )
    assert (made.event, made.resource_id, made.occurred) == (
        "acme.arrived",
        "acme.x",
        "2026-01-01T00:00:00+00:00",
    )
    with pytest.raises(EventShapeError, match="did not make JSON"):
        webhook_event("not json", b"", {}, now="2026-01-01T00:00:00Z")
    with pytest.raises(EventShapeError, match=r"prefect\.resource\.id"):
        event_from_json({"event": "a", "resource": {}}, now="2026-01-01T00:00:00Z")
