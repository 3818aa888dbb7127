"""When a deployment schedule fires (scheduler: pure, no clock of its own).

A schedule (as normalised by reconciler/prefect_rules/schedules.py) gives its fire times after a
moment, as aware UTC datetimes, from well-kept libraries: croniter (what Prefect uses) for cron,
dateutil for rrule, plain arithmetic for intervals.

Daylight-saving time, decided once and tested (tests/unit/test_fire_times.py):
- cron and rrule name wall-clock times in the schedule's zone, like cron itself. A time that
  does not exist on the spring-forward day (02:30 in New York) fires when that wall-clock time
  would have been, an hour later by the new clock (03:30). A time that happens twice on the
  fall-back day (01:30) fires once, the first time. Every fire time is distinct and increasing.
- an interval of whole days keeps its wall-clock time of day across the change (a daily 09:00
  stays 09:00 local, as Prefect's does); any other interval is exact elapsed time from its
  anchor (every 2 hours is every 7,200 seconds, whatever the clock says).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from reconciler.model.specs import ScheduleSpec

UTC = datetime.UTC
_DAY = 86_400


def schedule_id(schedule: ScheduleSpec) -> str:
    """A schedule's identity: its slug (or kind) and a digest of everything that shapes its
    runs (the stored mapping). A schedule edited in git is a new schedule: its old future
    runs are replaced."""
    body = json.dumps(schedule.raw, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    return f"{schedule.slug or schedule.type}-{digest}"


class ScheduleTooSlow(RuntimeError):
    """Computing a schedule's fire times went past the time it was given."""


def fire_times(
    schedule: ScheduleSpec,
    after: datetime.datetime,
    *,
    before: datetime.datetime | None = None,
    deadline: float | None = None,
) -> Iterator[datetime.datetime]:
    """Fire times strictly after `after` (aware), increasing, as aware UTC datetimes.

    With `before`, the search stops past it (a rule that never fires again ends there instead
    of searching to the year 9999). With `deadline` (a `time.monotonic()` value), a search
    still running then raises `ScheduleTooSlow`.
    """
    kind = schedule.type
    zone = ZoneInfo(schedule.timezone or "UTC")
    times: Iterator[datetime.datetime]
    if kind == "cron" and schedule.cron is not None:
        times = _cron(schedule.cron, schedule.day_or, zone, after, deadline)
    elif kind == "interval" and schedule.interval_seconds is not None and schedule.anchor_date:
        times = _interval(
            schedule.interval_seconds,
            datetime.datetime.fromisoformat(schedule.anchor_date),
            zone,
            after,
        )
    elif kind == "rrule" and schedule.rrule is not None:
        times = _rrule(schedule.rrule, zone, after, before, deadline)
    elif kind in ("cron", "interval", "rrule"):
        raise ValueError(f"a {kind} schedule without its {kind}")
    else:
        raise ValueError(f"unknown schedule type {kind!r}")
    return times if before is None else itertools.takewhile(lambda t: t <= before, times)


def _check(deadline: float | None, why: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ScheduleTooSlow(why)


def _as_utc(local: datetime.datetime) -> datetime.datetime:
    """A naive wall-clock time in its zone (attached as tzinfo) to UTC. fold=0 picks the first
    of two repeated times, and maps a skipped time by the offset before the change."""
    return local.replace(fold=0).astimezone(UTC)


def _cron(
    expression: str,
    day_or: bool,
    zone: ZoneInfo,
    after: datetime.datetime,
    deadline: float | None,
) -> Iterator[datetime.datetime]:
    from croniter import CroniterBadDateError, croniter

    start = after.astimezone(zone).replace(tzinfo=None)
    # Start an hour early: a wall-clock time inside a skipped hour maps forward past `after`.
    walker = croniter(expression, start - datetime.timedelta(hours=1), day_or=day_or)
    last: datetime.datetime | None = None
    while True:
        _check(deadline, f"the cron expression {expression!r} took too long to search")
        try:
            local: datetime.datetime = walker.get_next(datetime.datetime)
        except CroniterBadDateError:  # a date that never comes (30 February): no more times
            return
        fired = _as_utc(local.replace(tzinfo=zone))
        if fired <= after or (last is not None and fired <= last):
            continue
        last = fired
        yield fired


def _interval(
    seconds: float, anchor: datetime.datetime, zone: ZoneInfo, after: datetime.datetime
) -> Iterator[datetime.datetime]:
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=zone)
    try:
        if seconds % _DAY == 0:
            yield from _calendar_days(int(seconds // _DAY), anchor.astimezone(zone), after)
            return
        step = datetime.timedelta(seconds=seconds)
        elapsed = (after - anchor).total_seconds()
        count = max(0, int(elapsed // seconds))
        moment = anchor + step * count
        while moment <= after:
            moment += step
        while True:
            yield moment.astimezone(UTC)
            moment += step
    except OverflowError:  # past the year 9999: no more fire times
        return


def _calendar_days(
    days: int, anchor: datetime.datetime, after: datetime.datetime
) -> Iterator[datetime.datetime]:
    """Every `days` calendar days at the anchor's wall-clock time of day, in its zone."""
    zone = anchor.tzinfo
    assert zone is not None
    wall = anchor.replace(tzinfo=None)
    local_after = after.astimezone(zone).replace(tzinfo=None)
    count = max(0, (local_after - wall).days // days - 1)
    last: datetime.datetime | None = None
    while True:
        candidate = _as_utc((wall + datetime.timedelta(days=days * count)).replace(tzinfo=zone))
        count += 1
        if candidate <= after or (last is not None and candidate <= last):
            continue
        last = candidate
        yield candidate


def _rrule(
    text: str,
    zone: ZoneInfo,
    after: datetime.datetime,
    before: datetime.datetime | None,
    deadline: float | None,
) -> Iterator[datetime.datetime]:
    from reconciler.scheduling.rrule_search import rules_near

    local_after = after.astimezone(zone).replace(tzinfo=None)
    local_before = None if before is None else before.astimezone(zone).replace(tzinfo=None)
    rules, too_slow = rules_near(
        text,
        local_after - _skipped_wall_time(zone, after),
        None if local_before is None else local_before + datetime.timedelta(days=1),
        deadline,
    )
    last: datetime.datetime | None = None
    for local in rules:
        _check(deadline, too_slow)
        fired = _as_utc(local.replace(tzinfo=zone))
        if fired <= after or (last is not None and fired <= last):
            continue
        last = fired
        yield fired


def _skipped_wall_time(zone: ZoneInfo, moment: datetime.datetime) -> datetime.timedelta:
    """How much wall-clock time the zone skipped in the day before `moment`: a wall-clock time
    that far before it, inside the skipped hour, still fires after it (it moves forward)."""
    now_offset = moment.astimezone(zone).utcoffset()
    day_before_offset = (moment - datetime.timedelta(days=1)).astimezone(zone).utcoffset()
    assert now_offset is not None and day_before_offset is not None
    return max(now_offset - day_before_offset, datetime.timedelta(0))
