"""Schedule entries from prefect.yaml (docs/design-notes.md#schedules): what Prefect 3.9.1
accepts, how we normalise it, and the errors users see. Expected values were checked against
Prefect 3.9.1."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from reconciler.prefect_rules.schedules import (
    MAX_RRULE_LENGTH,
    STABLE_INTERVAL_ANCHOR,
    ScheduleError,
    is_empty_schedule,
    normalize_schedule,
)

COMMON_DEFAULTS = {"active": True, "parameters": {}, "slug": None}


def error_for(raw: Any) -> ScheduleError:
    with pytest.raises(ScheduleError) as caught:
        normalize_schedule(raw)
    return caught.value


# --- cron ---------------------------------------------------------------------------------


def test_cron_gets_utc_and_day_or_true_by_default() -> None:
    assert normalize_schedule({"cron": "0 9 * * 1-5"}) == {
        "type": "cron",
        "cron": "0 9 * * 1-5",
        "timezone": "UTC",
        "day_or": True,
        **COMMON_DEFAULTS,
    }


@pytest.mark.parametrize(
    "expression",
    ["*/5 * * * *", "0 9 * * MON,WED", "0 0 * * sun#1", "0 0 L * *", "* * * * * *", "@hourly"],
)
def test_cron_accepts_what_prefects_croniter_accepts(expression: str) -> None:
    assert normalize_schedule({"cron": expression})["cron"] == expression


def test_cron_keeps_timezone_and_day_or_false() -> None:
    result = normalize_schedule(
        {"cron": "0 * * * *", "timezone": "America/Chicago", "day_or": False}
    )
    assert (result["timezone"], result["day_or"]) == ("America/Chicago", False)


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("No", False), ("on", True)])
def test_day_or_accepts_text_booleans(text: str, expected: bool) -> None:
    assert normalize_schedule({"cron": "0 * * * *", "day_or": text})["day_or"] is expected


def test_day_or_that_is_not_a_boolean_is_rejected() -> None:
    error = error_for({"cron": "0 * * * *", "day_or": "nah"})
    assert error.key == "day_or"
    assert "'day_or' must be true or false" in error.message


def test_invalid_cron_reports_croniters_complaint_and_the_expected_form() -> None:
    error = error_for({"cron": "60 * * * *"})
    assert error.key == "cron"
    assert "out of range" in error.message
    assert "minute hour day-of-month month day-of-week" in error.message


def test_cron_with_wrong_field_count_is_rejected() -> None:
    assert "columns" in error_for({"cron": "not a cron"}).message


@pytest.mark.parametrize("expression", ["R * * * *", "H * * * *", "h/5 * * * *", "0 R(0-5) * * *"])
def test_random_and_hashed_cron_fields_are_rejected(expression: str) -> None:
    error = error_for({"cron": expression})
    assert error.key == "cron"
    assert "random" in error.message and "hashed" in error.message


def test_nearest_weekday_w_is_rejected_as_prefect_vendored_croniter_does() -> None:
    assert "'W'" in error_for({"cron": "0 0 15W * *"}).message


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_cron_is_rejected(value: str) -> None:
    error = error_for({"cron": value})
    assert (error.key, "'cron' is empty" in error.message) == ("cron", True)


def test_cron_that_is_not_a_string_is_rejected() -> None:
    error = error_for({"cron": 5})
    assert error.key == "cron"
    assert "must be a string" in error.message


def test_anchor_date_on_a_cron_schedule_is_ignored_as_prefect_does() -> None:
    result = normalize_schedule({"cron": "0 * * * *", "anchor_date": "not even a date"})
    assert "anchor_date" not in result


# --- interval -----------------------------------------------------------------------------


def test_interval_without_anchor_uses_the_stable_anchor_and_utc() -> None:
    assert normalize_schedule({"interval": 3600}) == {
        "type": "interval",
        "interval_seconds": 3600,
        "anchor_date": STABLE_INTERVAL_ANCHOR,
        "timezone": "UTC",
        **COMMON_DEFAULTS,
    }


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [
        (60, 60),
        (1.5, 1.5),
        (60.0, 60),
        ("PT10M", 600),
        ("P1D", 86_400),
        ("P1DT2H30M", 95_400),
        ("PT0.5S", 0.5),
        ("PT1,5S", 1.5),
        ("P1W", 604_800),
        ("P1M", 30 * 86_400),
        ("P1Y", 365 * 86_400),
        ("+PT1H", 3_600),
        ("P1DT", 86_400),
        ("PT1M1H", 3_660),
        ("01:00:00", 3_600),
        ("1:00:00", 3_600),
        ("01:30", 5_400),
        ("36:00:00", 129_600),
        ("01:00:00.5", 3_600.5),
        ("00:00:01.1234567", 1.123456),
        ("1 day, 02:00:00", 93_600),
        ("2 days 01:00:00", 176_400),
        ("1d", 86_400),
        ("10 days", 864_000),
    ],
)
def test_interval_forms_that_pydantic_reads(interval: Any, seconds: float) -> None:
    result = normalize_schedule({"interval": interval})["interval_seconds"]
    assert result == seconds
    assert isinstance(result, int) == float(seconds).is_integer()


@pytest.mark.parametrize(
    "interval", ["abc", "30s", "1:00", "pt1h", " PT1H", "PT", "P1.5DT1H", "1 week", "00:90:00"]
)
def test_interval_text_pydantic_refuses_is_rejected_with_the_accepted_forms(interval: str) -> None:
    error = error_for({"interval": interval})
    assert error.key == "interval"
    assert "ISO-8601 duration" in error.message
    assert "01:00:00" in error.message


def test_quoted_number_interval_is_rejected_with_a_hint_to_drop_the_quotes() -> None:
    assert "without quotes" in error_for({"interval": "3600"}).message


@pytest.mark.parametrize("interval", [0, "PT0S", "00:00:00", 1e-7])
def test_zero_interval_is_rejected_because_prefect_treats_it_as_no_schedule(interval: Any) -> None:
    error = error_for({"interval": interval})
    assert error.key == "interval"
    assert "greater than 0" in error.message


@pytest.mark.parametrize("interval", [-5, "-PT1H", "-01:00:00"])
def test_negative_interval_is_rejected(interval: Any) -> None:
    assert "greater than 0" in error_for({"interval": interval}).message


@pytest.mark.parametrize("interval", [True, [60], float("inf"), "P1000000000D"])
def test_interval_of_the_wrong_type_or_size_is_rejected(interval: Any) -> None:
    error = error_for({"interval": interval})
    assert (error.key, error.message.startswith("Invalid interval")) == ("interval", True)


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        ("2024-01-01", "2024-01-01T00:00:00+00:00"),
        ("2024-01-01T09:30:00", "2024-01-01T09:30:00+00:00"),
        ("2024-01-01 09:30", "2024-01-01T09:30:00+00:00"),
        ("20240101T093000", "2024-01-01T09:30:00+00:00"),
        ("2024-01-01T09:30:00Z", "2024-01-01T09:30:00+00:00"),
        ("2024-01-01T00:00:00.123456+05:30", "2024-01-01T00:00:00.123456+05:30"),
        (datetime.datetime(2024, 1, 1, 9, 30), "2024-01-01T09:30:00+00:00"),
        (datetime.date(2024, 1, 1), "2024-01-01T00:00:00+00:00"),
    ],
)
def test_anchor_date_is_normalised_with_an_offset(anchor: Any, expected: str) -> None:
    assert normalize_schedule({"interval": 60, "anchor_date": anchor})["anchor_date"] == expected


def test_naive_anchor_is_utc_even_with_a_timezone_as_prefect_deploy_stores_it() -> None:
    result = normalize_schedule(
        {"interval": 60, "anchor_date": "2024-01-01T00:00:00", "timezone": "America/Chicago"}
    )
    assert (result["anchor_date"], result["timezone"]) == (
        "2024-01-01T00:00:00+00:00",
        "America/Chicago",
    )


def test_offset_anchor_without_timezone_gives_utc_timezone() -> None:
    result = normalize_schedule({"interval": 60, "anchor_date": "2024-07-01T00:00:00-05:00"})
    assert (result["anchor_date"], result["timezone"]) == ("2024-07-01T00:00:00-05:00", "UTC")


def test_empty_anchor_counts_as_not_given() -> None:
    result = normalize_schedule({"interval": 60, "anchor_date": ""})
    assert result["anchor_date"] == STABLE_INTERVAL_ANCHOR


@pytest.mark.parametrize("anchor", ["garbage", "Jan 1 2024", 20240101])
def test_unparseable_anchor_is_rejected(anchor: Any) -> None:
    error = error_for({"interval": 60, "anchor_date": anchor})
    assert error.key == "anchor_date"
    assert "ISO-8601" in error.message


def test_day_or_on_an_interval_schedule_is_ignored_as_prefect_does() -> None:
    assert "day_or" not in normalize_schedule({"interval": 60, "day_or": "whatever"})


# --- rrule --------------------------------------------------------------------------------


def test_rrule_keeps_the_rule_and_defaults_to_utc() -> None:
    assert normalize_schedule({"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"}) == {
        "type": "rrule",
        "rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9",
        "timezone": "UTC",
        **COMMON_DEFAULTS,
    }


def test_rrule_with_dtstart_and_timezone() -> None:
    rule = "DTSTART:20240101T090000\nRRULE:FREQ=DAILY"
    result = normalize_schedule({"rrule": rule, "timezone": "Europe/Berlin"})
    assert (result["rrule"], result["timezone"]) == (rule, "Europe/Berlin")


def test_rrule_json_form_is_unpacked() -> None:
    result = normalize_schedule(
        {"rrule": json.dumps({"rrule": "FREQ=HOURLY", "timezone": "America/Chicago"})}
    )
    assert (result["rrule"], result["timezone"]) == ("FREQ=HOURLY", "America/Chicago")


def test_timezone_beside_a_json_rrule_wins_over_the_one_inside() -> None:
    raw = json.dumps({"rrule": "FREQ=HOURLY", "timezone": "America/Chicago"})
    assert normalize_schedule({"rrule": raw, "timezone": "Europe/Berlin"})["timezone"] == (
        "Europe/Berlin"
    )


def test_json_rrule_with_null_timezone_is_utc() -> None:
    raw = json.dumps({"rrule": "FREQ=HOURLY", "timezone": None})
    assert normalize_schedule({"rrule": raw})["timezone"] == "UTC"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[1, 2]", "not an object"),
        ('"FREQ=DAILY"', "not an object"),
        ('{"timezone": "UTC"}', 'non-empty string under "rrule"'),
        ('{"rrule": "FREQ=HOURLY", "extra": 1}', 'Unknown key "extra"'),
        ('{"rrule": "FREQ=HOURLY", "timezone": "Mars/Base"}', 'Invalid timezone "Mars/Base"'),
    ],
)
def test_bad_json_rrule_is_rejected(raw: str, expected: str) -> None:
    error = error_for({"rrule": raw})
    assert error.key == "rrule"
    assert expected in error.message


def test_invalid_rrule_reports_dateutils_message() -> None:
    error = error_for({"rrule": "FREQ=SOMETIMES"})
    assert error.key == "rrule"
    assert "invalid 'FREQ': SOMETIMES" in error.message
    assert "RFC 5545" in error.message


def rrule_of_length(length: int) -> str:
    """A valid rule of exactly `length` characters: a long list of BYMINUTE=0 values."""
    prefix = "FREQ=DAILY;BYMINUTE="
    count, odd = divmod(length - len(prefix) + 1, 2)
    minutes = ["0"] * count
    if odd:
        minutes[0] = "00"
    return prefix + ",".join(minutes)


def test_rrule_of_6500_characters_is_accepted() -> None:
    rule = rrule_of_length(MAX_RRULE_LENGTH)
    assert len(rule) == MAX_RRULE_LENGTH == 6500
    assert normalize_schedule({"rrule": rule})["rrule"] == rule


def test_rrule_longer_than_6500_characters_is_rejected() -> None:
    rule = rrule_of_length(MAX_RRULE_LENGTH + 1)
    error = error_for({"rrule": rule})
    assert (error.key, "at most 6500" in error.message) == ("rrule", True)


def test_invalid_long_rrule_is_abbreviated_in_the_message() -> None:
    error = error_for({"rrule": "FREQ=SOMETIMES;BYMINUTE=" + "0," * 1000 + "0"})
    assert len(error.message) < 400
    assert "invalid 'FREQ'" in error.message


def test_empty_rrule_is_rejected() -> None:
    assert error_for({"rrule": ""}).key == "rrule"


# --- timezones ----------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["UTC", "Etc/UTC", "EST", "US/Eastern", "Asia/Kolkata"])
def test_iana_names_including_legacy_links_are_accepted(zone: str) -> None:
    assert normalize_schedule({"cron": "0 * * * *", "timezone": zone})["timezone"] == zone


@pytest.mark.parametrize(
    ("zone", "suggestion"), [("utc", "UTC"), ("Europe/Berln", "Europe/Berlin")]
)
@pytest.mark.parametrize("kind", [{"cron": "0 * * * *"}, {"interval": 60}, {"rrule": "FREQ=DAILY"}])
def test_invalid_timezone_is_rejected_with_a_suggestion(
    kind: dict[str, Any], zone: str, suggestion: str
) -> None:
    error = error_for({**kind, "timezone": zone})
    assert error.key == "timezone"
    assert f'Invalid timezone "{zone}"' in error.message
    assert "IANA" in error.message
    assert f'Did you mean "{suggestion}"?' in error.message


@pytest.mark.parametrize("zone", ["", "Mars/Base", 5])
def test_timezone_that_is_not_an_iana_name_is_rejected(zone: Any) -> None:
    assert error_for({"cron": "0 * * * *", "timezone": zone}).key == "timezone"


def test_null_timezone_counts_as_not_given() -> None:
    assert normalize_schedule({"cron": "0 * * * *", "timezone": None})["timezone"] == "UTC"


# --- active, parameters, slug, replaces ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, False),
        ("false", False),
        ("No", False),
        ("OFF", False),
        ("0", False),
        (0, False),
        ("TRUE", True),
        ("yes", True),
        ("1", True),
        (1, True),
        (None, True),
    ],
)
def test_active_accepts_pydantic_lax_booleans(value: Any, expected: bool) -> None:
    assert normalize_schedule({"cron": "0 * * * *", "active": value})["active"] is expected


@pytest.mark.parametrize("value", ["maybe", " true ", "", 2, [True]])
def test_active_that_is_not_a_boolean_is_rejected(value: Any) -> None:
    error = error_for({"cron": "0 * * * *", "active": value})
    assert error.key == "active"
    assert "'active' must be true or false" in error.message


def test_parameters_are_kept_and_copied() -> None:
    raw = {"cron": "0 * * * *", "parameters": {"region": "eu", "sizes": [1, 2]}}
    result = normalize_schedule(raw)
    result["parameters"]["sizes"].append(3)
    assert raw["parameters"] == {"region": "eu", "sizes": [1, 2]}


@pytest.mark.parametrize("value", [[1], None, "x=1"])
def test_parameters_that_are_not_a_mapping_are_rejected(value: Any) -> None:
    error = error_for({"cron": "0 * * * *", "parameters": value})
    assert error.key == "parameters"
    assert "must be a mapping" in error.message


def test_parameter_names_must_be_strings() -> None:
    assert "quote it" in error_for({"cron": "0 * * * *", "parameters": {1: "x"}}).message


def test_slug_and_replaces_are_kept() -> None:
    result = normalize_schedule({"cron": "0 * * * *", "slug": "new", "replaces": "old"})
    assert (result["slug"], result["replaces"]) == ("new", "old")


def test_empty_slug_and_replaces_count_as_not_given() -> None:
    result = normalize_schedule({"cron": "0 * * * *", "slug": "", "replaces": ""})
    assert result["slug"] is None
    assert "replaces" not in result


@pytest.mark.parametrize("key", ["slug", "replaces"])
def test_slug_or_replaces_that_is_not_a_string_is_rejected(key: str) -> None:
    error = error_for({"cron": "0 * * * *", key: 2024})
    assert (error.key, "must be a string" in error.message) == (key, True)


# --- shape of the entry -------------------------------------------------------------------


def test_no_schedule_kind_is_rejected() -> None:
    error = error_for({"timezone": "UTC"})
    assert error.key is None
    assert "Exactly one of 'cron', 'interval' or 'rrule'" in error.message
    assert "found none" in error.message


def test_two_schedule_kinds_are_rejected_pointing_at_the_second() -> None:
    error = error_for({"cron": "0 * * * *", "interval": 0})
    assert error.key == "interval"
    assert "found 'cron' and 'interval'" in error.message


def test_null_schedule_kind_counts_as_not_given() -> None:
    assert normalize_schedule({"cron": None, "interval": 30})["type"] == "interval"


def test_empty_mapping_is_not_a_schedule() -> None:
    assert "found none" in error_for({}).message


def test_unknown_key_is_rejected_with_a_suggestion() -> None:
    error = error_for({"cron": "0 * * * *", "timezon": "UTC"})
    assert error.key == "timezon"
    assert "Unknown key 'timezon'" in error.message
    assert "Did you mean 'timezone'?" in error.message


def test_unknown_key_without_a_close_match_lists_the_accepted_keys() -> None:
    error = error_for({"cron": "0 * * * *", "owner": "me"})
    assert "Did you mean" not in error.message
    assert "Accepted keys: cron, interval, rrule" in error.message


@pytest.mark.parametrize("raw", [["cron"], "0 * * * *", None])
def test_entry_that_is_not_a_mapping_is_rejected(raw: Any) -> None:
    assert "must be a mapping" in error_for(raw).message


def test_output_is_json_and_has_only_the_documented_keys() -> None:
    result = normalize_schedule(
        {"interval": "PT1H", "anchor_date": "2024-01-01", "slug": "s", "replaces": "r"}
    )
    assert json.loads(json.dumps(result)) == result
    assert list(result) == [
        "type",
        "interval_seconds",
        "anchor_date",
        "timezone",
        "active",
        "parameters",
        "slug",
        "replaces",
    ]


# --- nested DeploymentScheduleCreate form -------------------------------------------------


def test_nested_form_gives_the_same_result_as_the_flat_form() -> None:
    nested = {
        "schedule": {"cron": "0 9 * * *", "timezone": "Europe/Berlin", "day_or": "no"},
        "active": "off",
        "parameters": {"a": 1},
        "slug": "s",
        "replaces": "old",
    }
    flat = {
        "cron": "0 9 * * *",
        "timezone": "Europe/Berlin",
        "day_or": "no",
        "active": "off",
        "parameters": {"a": 1},
        "slug": "s",
        "replaces": "old",
    }
    assert normalize_schedule(nested) == normalize_schedule(flat)


@pytest.mark.parametrize(
    ("inner", "kind"),
    [
        ({"interval": "PT1H", "anchor_date": "2024-01-01"}, "interval"),
        ({"rrule": "FREQ=DAILY", "timezone": "Europe/Berlin"}, "rrule"),
    ],
)
def test_nested_form_accepts_every_kind(inner: dict[str, Any], kind: str) -> None:
    assert normalize_schedule({"schedule": inner})["type"] == kind


def test_nested_form_reports_inner_keys_with_a_dotted_path() -> None:
    error = error_for({"schedule": {"cron": "0 * * * *", "timezone": "Mars/X"}})
    assert error.key == "schedule.timezone"


def test_nested_form_rejects_unknown_inner_keys() -> None:
    error = error_for({"schedule": {"cron": "0 * * * *", "bogus": 1}})
    assert error.key == "schedule.bogus"


def test_nested_form_rejects_a_key_of_another_kind() -> None:
    error = error_for({"schedule": {"cron": "0 * * * *", "anchor_date": "2024-01-01"}})
    assert error.key == "schedule.anchor_date"
    assert "does not apply to a cron schedule" in error.message


def test_nested_form_rejects_schedule_keys_beside_it() -> None:
    error = error_for({"schedule": {"cron": "0 * * * *"}, "cron": "0 * * * *"})
    assert error.key == "cron"


@pytest.mark.parametrize(("inner", "key"), [({}, "schedule"), ("0 * * * *", "schedule")])
def test_nested_form_needs_a_schedule_mapping_with_one_kind(inner: Any, key: str) -> None:
    assert error_for({"schedule": inner}).key == key


# --- legacy `schedule:` -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, True), ({}, True), ({"cron": "0 * * * *"}, False), ([], False), ("", False)],
)
def test_is_empty_schedule_matches_what_prefect_ignores(raw: object, expected: bool) -> None:
    assert is_empty_schedule(raw) is expected


def test_schedule_error_is_a_value_error_carrying_message_and_key() -> None:
    error = error_for({"cron": "nope"})
    assert isinstance(error, ValueError)
    assert str(error) == error.message
