"""One `schedules:` entry of a prefect.yaml deployment, validated and normalised.

Part of the validate stage, and pure: no clock, network or host time-zone database (zone names
come from the `tzdata` package). The desired-state stage stores the returned dict as-is, so two
runs over the same YAML give the same dict. What is accepted follows Prefect 3.9.1
(`RawScheduleConfig`, `DeploymentScheduleCreate`, `CronSchedule`, `IntervalSchedule`,
`RRuleSchedule`); see docs/design-notes.md#schedules. Where we differ from Prefect, a comment
says why.

Output, always with these keys in this order (`replaces` only when given):

- `{"type": "cron", "cron", "timezone", "day_or", ...}`
- `{"type": "interval", "interval_seconds", "anchor_date", "timezone", ...}`
- `{"type": "rrule", "rrule", "timezone", ...}`
- then `"active"`, `"parameters"`, `"slug"` and, when given, `"replaces"`.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any

from reconciler.prefect_rules.validation import package_text

# Our decision, not Prefect's: an interval without `anchor_date` is anchored here. Prefect
# anchors it at "now" on the deploying machine, so every redeploy re-anchors the schedule and
# shifts its fire times; a fixed anchor means reconciling again never changes it.
STABLE_INTERVAL_ANCHOR = "2020-01-01T00:00:00+00:00"

MAX_RRULE_LENGTH = 6500

_KIND_KEYS = ("cron", "interval", "rrule")
_COMMON_KEYS = ("active", "parameters", "slug", "replaces")
_FLAT_KEYS = (*_KIND_KEYS, "timezone", "anchor_date", "day_or", *_COMMON_KEYS)
_NESTED_KEYS = ("schedule", *_COMMON_KEYS)
_INNER_KEYS_BY_KIND = {
    "cron": ("cron", "timezone", "day_or"),
    "interval": ("interval", "anchor_date", "timezone"),
    "rrule": ("rrule", "timezone"),
}
_INNER_KEYS = ("cron", "interval", "rrule", "timezone", "day_or", "anchor_date")
_RRULE_JSON_KEYS = ("rrule", "timezone")

# pydantic's lax booleans, which Prefect applies to `active` and `day_or` (case-insensitive).
_TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})

_MICROSECONDS_PER_SECOND = 1_000_000
_MAX_INTERVAL_MICROSECONDS = 999_999_999 * 86_400 * _MICROSECONDS_PER_SECOND  # pydantic's cap

# ISO-8601 durations as pydantic reads them: `[+-]P` then number+unit components (repeats add
# up, any order), a fraction (`.` or `,`) only on the very last component. A year counts as
# 365 days and a month as 30 days.
_ISO_DURATION = re.compile(r"(?P<sign>[+-])?P(?P<date>[^T]*)(?:T(?P<time>.*))?")
_ISO_COMPONENT = r"\d+(?:[.,]\d*)?"
_ISO_DATE_PART = re.compile(rf"(?:{_ISO_COMPONENT}[YMWD])*")
_ISO_TIME_PART = re.compile(rf"(?:{_ISO_COMPONENT}[HMS])*")
_ISO_COMPONENTS = re.compile(rf"({_ISO_COMPONENT})([A-Z])")
_ISO_DATE_UNIT_SECONDS = {"Y": 365 * 86_400, "M": 30 * 86_400, "W": 7 * 86_400, "D": 86_400}
_ISO_TIME_UNIT_SECONDS = {"H": 3_600, "M": 60, "S": 1}
_DAYS_AND_CLOCK = re.compile(
    r"(?P<sign>[+-])?(?:(?P<days>\d+)\s*(?:days|day|d),?\s?)?"
    r"(?:(?P<hours>\d+):(?P<minutes>[0-5]\d)(?::(?P<seconds>[0-5]\d)(?:\.(?P<fraction>\d+))?)?)?",
    re.IGNORECASE,
)
_RANDOM_OR_HASHED_FIELD = re.compile(r"[RrHh](?:$|[(/])")
_NEAREST_WEEKDAY = re.compile(r"\d[Ww]")

_INTERVAL_FORMS = (
    "a number of seconds (3600), an ISO-8601 duration (PT10M, P1D, P1DT2H30M) "
    'or a time span such as "01:00:00" or "1 day, 02:00:00"'
)
_CRON_FORMS = (
    'five fields "minute hour day-of-month month day-of-week" such as "0 9 * * 1-5", '
    "optionally a sixth field for seconds, or an alias such as @hourly or @daily"
)
_RRULE_FORMS = 'an RFC 5545 recurrence rule such as "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"'


class ScheduleError(ValueError):
    """A schedule entry Prefect would refuse. `key` is the entry's key at fault, if any.

    For the nested form (`{schedule: {...}, active: ...}`) a key inside `schedule` is given as
    a dotted path, e.g. `"schedule.cron"`.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


def is_empty_schedule(raw: object) -> bool:
    """True for the legacy `schedule: {}` / `schedule: null`, which Prefect ignores."""
    return raw is None or (isinstance(raw, Mapping) and not raw)


def normalize_schedule(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one schedule entry and return its normalised form; raise `ScheduleError`.

    Two shapes are accepted: the flat one prefect.yaml documents (`{cron: ..., slug: ...}`) and
    the nested `DeploymentScheduleCreate` one (`{schedule: {cron: ...}, slug: ...}`).
    """
    entry = _require_mapping(raw, key=None, what="A schedule")
    if "schedule" in entry:
        return _normalize_nested(entry)
    _reject_unknown_keys(entry, _FLAT_KEYS, prefix="")
    kind = _schedule_kind(entry, prefix="")
    # Like Prefect, `day_or` is ignored unless the schedule is cron, `anchor_date` unless it
    # is an interval: RawScheduleConfig accepts both keys on every kind.
    return {**_normalize_kind(kind, entry, prefix=""), **_normalize_common(entry)}


def _normalize_nested(entry: Mapping[Any, Any]) -> dict[str, Any]:
    _reject_unknown_keys(entry, _NESTED_KEYS, prefix="")
    inner = _require_mapping(entry["schedule"], key="schedule", what="'schedule'")
    _reject_unknown_keys(inner, _INNER_KEYS, prefix="schedule.")
    kind = _schedule_kind(inner, prefix="schedule.")
    # Prefect's own schedule models forbid keys of another kind here (unlike the flat form).
    for key in inner:
        if key not in _INNER_KEYS_BY_KIND[kind]:
            raise ScheduleError(
                f"'{key}' does not apply to a {kind} schedule; remove it from 'schedule'.",
                key=f"schedule.{key}",
            )
    return {**_normalize_kind(kind, inner, prefix="schedule."), **_normalize_common(entry)}


def _require_mapping(value: object, key: str | None, what: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ScheduleError(
            f"{what} must be a mapping such as {{cron: '0 9 * * *', timezone: 'UTC'}}, "
            f"got {_describe(value)}.",
            key=key,
        )
    return value


def _reject_unknown_keys(mapping: Mapping[Any, Any], accepted: Iterable[str], prefix: str) -> None:
    known = tuple(accepted)
    for key in mapping:
        if key in known:
            continue
        name = str(key)
        import difflib  # only when there is something to suggest

        close = difflib.get_close_matches(name, known, n=1)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        raise ScheduleError(
            f"Unknown key '{name}' in schedule (Prefect rejects unknown schedule keys).{suggestion}"
            f" Accepted keys: {', '.join(known)}.",
            key=f"{prefix}{name}",
        )


def _schedule_kind(mapping: Mapping[Any, Any], prefix: str) -> str:
    given = [key for key in _KIND_KEYS if mapping.get(key) is not None]
    if len(given) == 1:
        return given[0]
    if given:
        found = " and ".join(f"'{key}'" for key in given)
        raise ScheduleError(
            f"Exactly one of 'cron', 'interval' or 'rrule' must be given, found {found}; "
            "split them into separate schedules.",
            key=f"{prefix}{given[1]}",
        )
    raise ScheduleError(
        "Exactly one of 'cron', 'interval' or 'rrule' must be given, found none; "
        "add one, e.g. cron: '0 9 * * *'.",
        key=prefix.rstrip(".") or None,
    )


def _normalize_kind(kind: str, mapping: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    if kind == "cron":
        return _normalize_cron(mapping, prefix)
    if kind == "interval":
        return _normalize_interval(mapping, prefix)
    return _normalize_rrule(mapping, prefix)


def _normalize_common(entry: Mapping[Any, Any]) -> dict[str, Any]:
    common: dict[str, Any] = {
        "active": _lax_bool(entry.get("active"), key="active", default=True),
        "parameters": _parameters(entry),
        # Prefect drops an empty slug or replaces, so "" means "not given".
        "slug": _optional_text(entry.get("slug"), key="slug") or None,
    }
    if replaces := _optional_text(entry.get("replaces"), key="replaces"):
        common["replaces"] = replaces
    return common


# --- cron ---------------------------------------------------------------------------------


def _normalize_cron(mapping: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    key = f"{prefix}cron"
    expression = _required_text(mapping["cron"], key=key, example="'0 9 * * *'")
    if problem := _cron_problem(expression):
        raise ScheduleError(
            f'Invalid cron expression "{expression}": {problem}. Expected {_CRON_FORMS}.',
            key=key,
        )
    return {
        "type": "cron",
        "cron": expression,
        "timezone": _timezone(mapping, prefix) or "UTC",
        "day_or": _lax_bool(mapping.get("day_or"), key=f"{prefix}day_or", default=True),
    }


# Plain numeric cron fields (numbers, *, ranges, steps, lists) within these bounds are valid for
# croniter beyond doubt; anything else (names, aliases, L, #, six fields) goes to croniter.
_PLAIN_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")
_FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _plainly_valid_cron(fields: list[str]) -> bool:
    if len(fields) != 5:
        return False
    for field, (low, high) in zip(fields, _FIELD_BOUNDS, strict=True):
        for part in field.split(","):
            match = _PLAIN_FIELD.match(part)
            if match is None:
                return False
            head, _, step = part.partition("/")
            if step and int(step) < 1:
                return False
            if head != "*":
                first, _, last = head.partition("-")
                numbers = [int(first), int(last or first)]
                if numbers[0] > numbers[1] or numbers[0] < low or numbers[1] > high:
                    return False
    return True


@functools.lru_cache(maxsize=4096)
def _cron_problem(expression: str) -> str | None:
    fields = expression.split()
    if _plainly_valid_cron(fields):
        return None
    if any(_RANDOM_OR_HASHED_FIELD.match(field) for field in fields):
        # Prefect means to reject these but only catches a field that is exactly R or H (and
        # croniter refuses other H forms without a hash id); we also refuse R(..) and R/.. .
        return 'random ("R") and hashed ("H") fields are not supported by Prefect'
    if len(fields) >= 3 and _NEAREST_WEEKDAY.search(fields[2]):
        # Our croniter accepts "15W"; the older croniter vendored in Prefect 3.9.1 does not.
        return "the nearest-weekday modifier 'W' is not supported by Prefect"
    from croniter import CroniterError, croniter

    try:
        croniter.expand(expression)
    except CroniterError as exc:
        return str(exc)
    return None


# --- interval -----------------------------------------------------------------------------


def _normalize_interval(mapping: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    microseconds = _interval_microseconds(mapping["interval"], key=f"{prefix}interval")
    anchor = _anchor_date(mapping.get("anchor_date"), key=f"{prefix}anchor_date")
    return {
        "type": "interval",
        "interval_seconds": _seconds_value(microseconds),
        "anchor_date": (
            anchor or datetime.datetime.fromisoformat(STABLE_INTERVAL_ANCHOR)
        ).isoformat(),
        # Prefect infers a missing timezone from the anchor's zone name when it is an IANA
        # name. An ISO string (or a YAML timestamp) only ever carries an offset, so that
        # inference always gives "UTC".
        "timezone": _timezone(mapping, prefix) or "UTC",
    }


def _interval_microseconds(value: object, key: str) -> int:
    if isinstance(value, bool):
        # pydantic would read `true` as one second; that is never what was meant.
        raise _interval_error(value, key, "a boolean is not a duration")
    if isinstance(value, int | float):
        microseconds = _number_microseconds(value, key)
    elif isinstance(value, str):
        microseconds = _text_microseconds(value, key)
    else:
        raise _interval_error(value, key, f"got {_describe(value)}")
    if microseconds <= 0:
        raise ScheduleError(
            f"'interval' must be greater than 0 seconds, got {value!r}. Prefect treats an "
            "interval of 0 as no schedule at all and rejects the entry: set a positive "
            "interval or remove the schedule.",
            key=key,
        )
    if microseconds > _MAX_INTERVAL_MICROSECONDS:
        raise _interval_error(value, key, "it is longer than 999,999,999 days")
    return microseconds


def _number_microseconds(value: float, key: str) -> int:
    if isinstance(value, float) and not math.isfinite(value):
        raise _interval_error(value, key, "it is not a finite number")
    return round(Decimal(value) * _MICROSECONDS_PER_SECOND)


def _text_microseconds(text: str, key: str) -> int:
    seconds = _iso_duration_seconds(text)
    if seconds is None:
        seconds = _days_and_clock_seconds(text)
    if seconds is None:
        hint = (
            " A quoted number is not accepted: write it without quotes."
            if _is_number_text(text)
            else ""
        )
        raise _interval_error(text, key, "it is not a duration Prefect understands", hint)
    return int((seconds * _MICROSECONDS_PER_SECOND).to_integral_value(rounding=ROUND_DOWN))


def _iso_duration_seconds(text: str) -> Decimal | None:
    match = _ISO_DURATION.fullmatch(text)
    if match is None:
        return None
    date_part, time_part = match["date"], match["time"] or ""
    if not (_ISO_DATE_PART.fullmatch(date_part) and _ISO_TIME_PART.fullmatch(time_part)):
        return None
    components = [
        (amount, units[unit])
        for part, units in (
            (date_part, _ISO_DATE_UNIT_SECONDS),
            (time_part, _ISO_TIME_UNIT_SECONDS),
        )
        for amount, unit in _ISO_COMPONENTS.findall(part)
    ]
    if not components or any(("." in amount or "," in amount) for amount, _ in components[:-1]):
        return None
    total = sum(
        (Decimal(amount.replace(",", ".")) * unit_seconds for amount, unit_seconds in components),
        Decimal(0),
    )
    return -total if match["sign"] == "-" else total


def _days_and_clock_seconds(text: str) -> Decimal | None:
    match = _DAYS_AND_CLOCK.fullmatch(text)
    if match is None or (match["days"] is None and match["hours"] is None):
        return None
    if match["hours"] is not None and match["seconds"] is None and len(match["hours"]) < 2:
        return None  # pydantic reads "1:00" as too short but "01:00" as one hour
    total = Decimal(int(match["days"] or 0) * 86_400)
    if match["hours"] is not None:
        total += int(match["hours"]) * 3_600 + int(match["minutes"]) * 60
        total += int(match["seconds"] or 0)
        # pydantic keeps six fraction digits and drops the rest.
        total += Decimal(f"0.{(match['fraction'] or '0')[:6]}")
    return -total if match["sign"] == "-" else total


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _seconds_value(microseconds: int) -> int | float:
    whole, rest = divmod(microseconds, _MICROSECONDS_PER_SECOND)
    return whole if rest == 0 else microseconds / _MICROSECONDS_PER_SECOND


def _interval_error(value: object, key: str, reason: str, hint: str = "") -> ScheduleError:
    return ScheduleError(
        f"Invalid interval {value!r}: {reason}. Expected {_INTERVAL_FORMS}.{hint}", key=key
    )


def _anchor_date(value: object, key: str) -> datetime.datetime | None:
    """The anchor as an aware datetime, or None when not given.

    A date-time without an offset (and a bare date) is taken as UTC, whatever `timezone`
    says: that is what `prefect deploy` 3.9.1 stores (verified), although the docstring of
    Prefect's IntervalSchedule says the schedule's timezone.
    """
    if value is None or value == "":  # Prefect treats an empty anchor_date as not given
        return None
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, datetime.date):  # an unquoted YAML date
        parsed = datetime.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise _anchor_error(value, key) from None
    else:
        raise _anchor_error(value, key)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def _anchor_error(value: object, key: str) -> ScheduleError:
    return ScheduleError(
        f"Invalid anchor_date {value!r}: expected an ISO-8601 date or date-time such as "
        '"2024-01-01T09:00:00+01:00" (without an offset it is taken as UTC).',
        key=key,
    )


# --- rrule --------------------------------------------------------------------------------


def _normalize_rrule(mapping: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    key = f"{prefix}rrule"
    text = _required_text(mapping["rrule"], key=key, example="'FREQ=DAILY;BYHOUR=9'")
    rule, embedded_timezone = _rrule_and_timezone(text, key)
    _validate_rrule(rule, key)
    # A `timezone` key beside the rrule wins over one inside the JSON form.
    timezone = _timezone(mapping, prefix) or embedded_timezone or "UTC"
    return {"type": "rrule", "rrule": rule, "timezone": timezone}


def _rrule_and_timezone(text: str, key: str) -> tuple[str, str | None]:
    """Split Prefect's JSON form `'{"rrule": "...", "timezone": "..."}'` or take text as is."""
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return text, None
    if not isinstance(decoded, dict):
        raise ScheduleError(
            f"'rrule' holds JSON that is not an object: {text!r}. Write the rule itself, or a "
            'JSON object such as {"rrule": "FREQ=DAILY", "timezone": "Europe/Berlin"}.',
            key=key,
        )
    _reject_unknown_json_keys(decoded, key)
    rule = decoded.get("rrule")
    if not isinstance(rule, str) or not rule:
        raise ScheduleError(
            "The JSON in 'rrule' needs a non-empty string under \"rrule\", "
            'e.g. {"rrule": "FREQ=DAILY"}.',
            key=key,
        )
    timezone = decoded.get("timezone")
    if timezone is None:
        return rule, None
    return rule, _valid_timezone_name(timezone, key=key)


def _reject_unknown_json_keys(decoded: Mapping[str, Any], key: str) -> None:
    for name in decoded:
        if name not in _RRULE_JSON_KEYS:
            raise ScheduleError(
                f'Unknown key "{name}" in the JSON in \'rrule\'; only "rrule" and '
                '"timezone" are accepted.',
                key=key,
            )


def _validate_rrule(rule: str, key: str) -> None:
    from dateutil.rrule import rrulestr

    if len(rule) > MAX_RRULE_LENGTH:
        raise ScheduleError(
            f"'rrule' is {len(rule)} characters long; Prefect accepts at most "
            f"{MAX_RRULE_LENGTH}. Split it into several schedules.",
            key=key,
        )
    try:
        # A fixed DTSTART keeps validation independent of the clock.
        rrulestr(rule, dtstart=datetime.datetime(2020, 1, 1))
    except ValueError as exc:
        raise ScheduleError(
            f'Invalid rrule "{_abbreviated(rule)}": {exc}. Expected {_RRULE_FORMS}.', key=key
        ) from None
    except TypeError:  # dateutil's rrule() was called without its required `freq`
        raise ScheduleError(
            f'Invalid rrule "{_abbreviated(rule)}": it has no FREQ part (e.g. FREQ=DAILY). '
            f"Expected {_RRULE_FORMS}.",
            key=key,
        ) from None


# --- shared field rules -------------------------------------------------------------------


def _timezone(mapping: Mapping[Any, Any], prefix: str) -> str | None:
    value = mapping.get("timezone")
    if value is None:
        return None
    return _valid_timezone_name(value, key=f"{prefix}timezone")


def _valid_timezone_name(value: object, key: str) -> str:
    if isinstance(value, str) and value in _iana_zone_names():
        return value
    raise ScheduleError(
        f'Invalid timezone {_quoted(value)}: use an IANA name such as "Europe/Berlin", '
        f'"America/New_York" or "UTC".{_zone_suggestion(value)}',
        key=key,
    )


@functools.cache
def _iana_zone_names() -> frozenset[str]:
    """The zone names in the `tzdata` package: Prefect's list, independent of the host."""
    return frozenset(package_text("tzdata", "zones").split())


def _zone_suggestion(value: object) -> str:
    if not isinstance(value, str) or not value:
        return ""
    names = _iana_zone_names()
    same_but_case = [name for name in names if name.lower() == value.lower()]
    import difflib  # only when there is something to suggest

    close = same_but_case or difflib.get_close_matches(value, sorted(names), n=1)
    return f' Did you mean "{close[0]}"?' if close else ""


def _lax_bool(value: object, key: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE_WORDS:
        return True
    if isinstance(value, str) and value.lower() in _FALSE_WORDS:
        return False
    raise ScheduleError(
        f"'{key.rsplit('.', 1)[-1]}' must be true or false (yes/no, on/off and 1/0 are also "
        f"accepted), got {_quoted(value)}.",
        key=key,
    )


def _parameters(entry: Mapping[Any, Any]) -> dict[str, Any]:
    if "parameters" not in entry:
        return {}
    value = entry["parameters"]
    if not isinstance(value, Mapping):
        raise ScheduleError(
            "'parameters' must be a mapping of parameter names to values, e.g. "
            f"{{parameters: {{region: eu}}}}, got {_describe(value)}.",
            key="parameters",
        )
    for name in value:
        if not isinstance(name, str):
            raise ScheduleError(
                f"Parameter names must be strings, got {name!r}: quote it in the YAML.",
                key="parameters",
            )
    return copy.deepcopy(dict(value))


def _optional_text(value: object, key: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ScheduleError(
        f"'{key}' must be a string, got {_describe(value)}: quote it in the YAML.", key=key
    )


def _required_text(value: object, key: str, example: str) -> str:
    name = key.rsplit(".", 1)[-1]
    if not isinstance(value, str):
        raise ScheduleError(
            f"'{name}' must be a string such as {example}, got {_describe(value)}.", key=key
        )
    if not value.strip():
        raise ScheduleError(f"'{name}' is empty; give a value such as {example}.", key=key)
    return value


def _abbreviated(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _quoted(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else _describe(value)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"
