"""When a deployment schedule fires (scheduler: pure, no clock of its own).

A schedule (as normalised by reconciler/spec/schedules.py) gives its fire times after a moment,
as aware UTC datetimes, from well-kept libraries: croniter (what Prefect uses) for cron,
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
import json
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

UTC = datetime.UTC
_DAY = 86_400


def schedule_id(schedule: dict[str, Any]) -> str:
    """A schedule's identity: its slug (or kind) and a digest of everything that shapes its
    runs. A schedule edited in git is a new schedule: its old future runs are replaced."""
    body = json.dumps(schedule, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    return f"{schedule.get('slug') or schedule.get('type', 'schedule')}-{digest}"


def fire_times(schedule: dict[str, Any], after: datetime.datetime) -> Iterator[datetime.datetime]:
    """Fire times strictly after `after` (aware), increasing, as aware UTC datetimes."""
    kind = schedule["type"]
    zone = ZoneInfo(schedule.get("timezone") or "UTC")
    if kind == "cron":
        return _cron(schedule["cron"], bool(schedule.get("day_or", True)), zone, after)
    if kind == "interval":
        return _interval(
            float(schedule["interval_seconds"]),
            datetime.datetime.fromisoformat(schedule["anchor_date"]),
            zone,
            after,
        )
    if kind == "rrule":
        return _rrule(schedule["rrule"], zone, after)
    raise ValueError(f"unknown schedule type {kind!r}")


def _as_utc(local: datetime.datetime) -> datetime.datetime:
    """A naive wall-clock time in its zone (attached as tzinfo) to UTC. fold=0 picks the first
    of two repeated times, and maps a skipped time by the offset before the change."""
    return local.replace(fold=0).astimezone(UTC)


def _cron(
    expression: str, day_or: bool, zone: ZoneInfo, after: datetime.datetime
) -> Iterator[datetime.datetime]:
    from croniter import croniter

    start = after.astimezone(zone).replace(tzinfo=None)
    # Start an hour early: a wall-clock time inside a skipped hour maps forward past `after`.
    walker = croniter(expression, start - datetime.timedelta(hours=1), day_or=day_or)
    last: datetime.datetime | None = None
    while True:
        local: datetime.datetime = walker.get_next(datetime.datetime)
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


def _rrule(text: str, zone: ZoneInfo, after: datetime.datetime) -> Iterator[datetime.datetime]:
    from dateutil.rrule import rrulestr

    # Without a DTSTART, dateutil would start at "now": a fixed start keeps the times stable.
    rule = rrulestr(text, forceset=True, ignoretz=True, dtstart=datetime.datetime(2020, 1, 1))
    local_after = after.astimezone(zone).replace(tzinfo=None) - datetime.timedelta(hours=1)
    last: datetime.datetime | None = None
    moment = local_after
    while True:
        following = rule.after(moment, inc=False)
        if following is None:
            return
        moment = following
        fired = _as_utc(following.replace(tzinfo=zone))
        if fired <= after or (last is not None and fired <= last):
            continue
        last = fired
        yield fired
