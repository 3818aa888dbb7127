"""Fire times of cron, interval and rrule schedules, across both daylight-saving changes."""

from __future__ import annotations

import datetime
import itertools
import random
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from reconciler.model.specs import ScheduleSpec
from reconciler.prefect_rules.schedules import ScheduleError, normalize_schedule
from reconciler.scheduling import fire_times as stored_fire_times
from reconciler.scheduling.fire_times import ScheduleTooSlow

NY = ZoneInfo("America/New_York")
UTC = datetime.UTC


def fire_times(
    schedule: dict[str, Any], after: datetime.datetime, **limits: Any
) -> Iterator[datetime.datetime]:
    """Fire times of a schedule as the store holds it (decoded as the scheduler reads it)."""
    return stored_fire_times.fire_times(ScheduleSpec.from_spec(schedule), after, **limits)


def schedule_id(schedule: dict[str, Any]) -> str:
    return stored_fire_times.schedule_id(ScheduleSpec.from_spec(schedule))


def first(schedule: dict[str, Any], after: datetime.datetime, count: int) -> list[str]:
    """Fire times as New York wall-clock text with the offset, which shows what a user sees."""
    times = itertools.islice(fire_times(normalize_schedule(schedule), after), count)
    return [t.astimezone(NY).strftime("%m-%d %H:%M%z") for t in times]


def ny(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=NY)


def test_daily_cron_keeps_its_local_time_across_both_changes() -> None:
    daily = {"cron": "0 9 * * *", "timezone": "America/New_York"}
    assert first(daily, ny(2026, 3, 7, 12), 2) == ["03-08 09:00-0400", "03-09 09:00-0400"]
    assert first(daily, ny(2026, 10, 31, 12), 2) == ["11-01 09:00-0500", "11-02 09:00-0500"]


def test_a_cron_time_in_the_skipped_hour_fires_an_hour_later_by_the_new_clock() -> None:
    at_230 = {"cron": "30 2 * * *", "timezone": "America/New_York"}
    assert first(at_230, ny(2026, 3, 7, 12), 3) == [
        "03-08 03:30-0400",
        "03-09 02:30-0400",
        "03-10 02:30-0400",
    ]


def test_a_cron_time_in_the_repeated_hour_fires_once() -> None:
    at_130 = {"cron": "30 1 * * *", "timezone": "America/New_York"}
    assert first(at_130, ny(2026, 10, 31, 12), 2) == ["11-01 01:30-0400", "11-02 01:30-0500"]


def test_hourly_cron_fires_each_wall_clock_hour_once_on_both_days() -> None:
    hourly = {"cron": "0 * * * *", "timezone": "America/New_York"}
    spring = first(hourly, ny(2026, 3, 8, 0, 30), 3)
    assert spring == ["03-08 01:00-0500", "03-08 03:00-0400", "03-08 04:00-0400"]
    fall = first(hourly, ny(2026, 11, 1, 0, 30), 3)
    assert fall == ["11-01 01:00-0400", "11-01 02:00-0500", "11-01 03:00-0500"]


def test_cron_day_or_follows_cron_and_prefect() -> None:
    either = {"cron": "0 0 13 * 5", "timezone": "UTC"}  # the 13th, or any Friday
    both = {**either, "day_or": False}  # a Friday the 13th
    start = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    assert [t.day for t in itertools.islice(fire_times(normalize_schedule(either), start), 3)] == [
        2,
        9,
        13,
    ]
    friday_13th = next(fire_times(normalize_schedule(both), start))
    assert (friday_13th.month, friday_13th.day, friday_13th.weekday()) == (2, 13, 4)


def test_a_daily_interval_keeps_the_wall_clock_time_and_an_hourly_one_is_elapsed_time() -> None:
    daily = {
        "interval": 86400,
        "anchor_date": "2026-01-01T09:00:00-05:00",
        "timezone": "America/New_York",
    }
    assert first(daily, ny(2026, 3, 7, 12), 2) == ["03-08 09:00-0400", "03-09 09:00-0400"]
    every_2h = {"interval": 7200, "anchor_date": "2026-03-08T00:00:00-05:00"}
    assert first(every_2h, ny(2026, 3, 8, 0, 30), 3) == [
        "03-08 03:00-0400",
        "03-08 05:00-0400",
        "03-08 07:00-0400",
    ]


def test_an_interval_without_anchor_is_stable_between_reconciles() -> None:
    every_90s = normalize_schedule({"interval": 90})
    after = datetime.datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC)
    times = list(itertools.islice(fire_times(every_90s, after), 3))
    assert [t.strftime("%H:%M:%S") for t in times] == ["12:01:30", "12:03:00", "12:04:30"]
    assert list(itertools.islice(fire_times(normalize_schedule({"interval": 90}), after), 3)) == (
        times
    )


def test_rrule_in_a_zone_keeps_local_times_and_ends_with_its_count() -> None:
    weekly = {
        "rrule": "DTSTART:20260302T090000\nRRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3",
        "timezone": "America/New_York",
    }
    assert first(weekly, ny(2026, 3, 1), 5) == [
        "03-02 09:00-0500",
        "03-09 09:00-0400",
        "03-16 09:00-0400",
    ]


def test_a_schedule_edit_is_a_new_schedule_identity() -> None:
    one = normalize_schedule({"cron": "0 9 * * *", "slug": "morning"})
    assert schedule_id(one) == schedule_id(dict(one))
    assert schedule_id(one).startswith("morning-")
    assert schedule_id(one) != schedule_id(
        normalize_schedule({"cron": "0 10 * * *", "slug": "morning"})
    )


# --- cost proportional to what is asked (issue 13, hole 1) --------------------------------


def test_a_minutely_rrule_starts_its_search_near_the_moment_asked() -> None:
    minutely = normalize_schedule({"rrule": "FREQ=MINUTELY;INTERVAL=7"})
    after = datetime.datetime(2031, 6, 1, 12, 0, 30, tzinfo=UTC)
    times = list(itertools.islice(fire_times(minutely, after, deadline=_soon()), 2))
    # 2020-01-01 00:00 plus whole multiples of 7 minutes: 6,172,543 periods later.
    anchor = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    assert [(t - anchor).total_seconds() % 420 for t in times] == [0, 0]
    assert after < times[0] <= after + datetime.timedelta(minutes=7)
    assert times[1] - times[0] == datetime.timedelta(minutes=7)


def test_a_secondly_rrule_with_a_huge_count_is_counted_not_walked() -> None:
    ended = normalize_schedule({"rrule": "FREQ=SECONDLY;COUNT=2000000"})
    after = datetime.datetime(2031, 6, 1, tzinfo=UTC)
    assert list(fire_times(ended, after, deadline=_soon())) == []
    running = normalize_schedule(
        {"rrule": "DTSTART:20310531T000000\nRRULE:FREQ=SECONDLY;COUNT=2000000"}
    )
    first_two = list(itertools.islice(fire_times(running, after, deadline=_soon()), 2))
    assert [t.isoformat() for t in first_two] == [
        "2031-06-01T00:00:01+00:00",
        "2031-06-01T00:00:02+00:00",
    ]
    last = list(fire_times(running, datetime.datetime(2031, 6, 23, 3, 33, 18, tzinfo=UTC)))
    assert [t.isoformat() for t in last] == ["2031-06-23T03:33:19+00:00"]  # the 2,000,000th


def test_a_rule_that_must_be_walked_stops_at_its_deadline() -> None:
    walked = normalize_schedule({"rrule": "FREQ=SECONDLY;COUNT=2000000;BYSECOND=0,30"})
    after = datetime.datetime(2031, 6, 1, tzinfo=UTC)
    with pytest.raises(ScheduleTooSlow, match="COUNT"):
        list(fire_times(walked, after, deadline=time.monotonic() + 0.05))


def test_a_rule_that_never_fires_again_stops_at_its_deadline_or_the_horizon() -> None:
    after = datetime.datetime(2031, 6, 1, tzinfo=UTC)
    horizon = after + datetime.timedelta(days=100)
    never = normalize_schedule({"rrule": "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30"})
    with pytest.raises(ScheduleTooSlow, match="may never match again"):
        list(fire_times(never, after, before=horizon, deadline=time.monotonic() + 0.05))
    rare = normalize_schedule({"rrule": "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=0"})
    assert list(fire_times(rare, after, before=horizon, deadline=_soon())) == []
    assert next(fire_times(rare, after, deadline=_soon())).isoformat() == (
        "2032-02-29T00:00:00+00:00"
    )
    impossible_cron = normalize_schedule({"cron": "0 0 30 2 *"})
    assert list(fire_times(impossible_cron, after, before=horizon, deadline=_soon())) == []


def test_the_longest_interval_ends_instead_of_overflowing() -> None:
    longest = normalize_schedule({"interval": 999_999_999 * 86_400})
    assert list(fire_times(longest, datetime.datetime(2031, 6, 1, tzinfo=UTC))) == []
    longest_hours = normalize_schedule({"interval": 999_999_999 * 86_400 - 3600})
    assert list(fire_times(longest_hours, datetime.datetime(2031, 6, 1, tzinfo=UTC))) == []


_FREQUENCIES = ("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe")
_PERIOD_SECONDS = {"SECONDLY": 1, "MINUTELY": 60, "HOURLY": 3600, "DAILY": 86400}
_PERIOD_SECONDS.update({"WEEKLY": 7 * 86400, "MONTHLY": 31 * 86400, "YEARLY": 366 * 86400})


def _random_rule(rng: random.Random) -> tuple[str, datetime.datetime]:
    """A random rule with its own DTSTART, and a moment a few hundred periods later."""
    frequency = rng.choice(_FREQUENCIES)
    start = datetime.datetime(2020, 1, 1) + datetime.timedelta(
        seconds=rng.randrange(10 * 365 * 86400)
    )
    parts = [f"FREQ={frequency}", f"INTERVAL={rng.choice((1, 1, 2, 3, 7, 15))}"]
    if rng.random() < 0.3:
        parts.append(f"BYHOUR={','.join(map(str, sorted(rng.sample(range(24), 3))))}")
    if rng.random() < 0.3 and frequency != "SECONDLY":
        parts.append(f"BYMINUTE={','.join(map(str, sorted(rng.sample(range(60), 2))))}")
    if rng.random() < 0.2:
        parts.append(f"BYDAY={','.join(rng.sample(('MO', 'TU', 'WE', 'TH', 'FR', 'SA', 'SU'), 3))}")
    if rng.random() < 0.15:
        parts.append(f"BYMONTHDAY={rng.choice((1, 15, 29, 30, 31, -1))}")
    if rng.random() < 0.1 and frequency in ("MONTHLY", "YEARLY"):
        parts.append("BYSETPOS=-1;BYDAY=MO,TU,WE,TH,FR")
    if rng.random() < 0.3:
        parts.append(f"COUNT={rng.randrange(1, 400)}")
    elif rng.random() < 0.2:
        until = start + datetime.timedelta(seconds=_PERIOD_SECONDS[frequency] * 300)
        parts.append(f"UNTIL={until:%Y%m%dT%H%M%S}")
    text = f"DTSTART:{start:%Y%m%dT%H%M%S}\nRRULE:{';'.join(parts)}"
    if rng.random() < 0.1:
        second = start + datetime.timedelta(seconds=_PERIOD_SECONDS[frequency])
        text += f"\nEXDATE:{second:%Y%m%dT%H%M%S}"
    later = datetime.timedelta(seconds=_PERIOD_SECONDS[frequency] * rng.randrange(0, 300))
    return text, start + later


def _as_dateutil_does(
    text: str, zone: ZoneInfo, after: datetime.datetime
) -> list[datetime.datetime]:
    """dateutil's own iteration from DTSTART, with our decided wall-clock mapping."""
    fired: list[datetime.datetime] = []
    for local in rrulestr(text, forceset=True, ignoretz=True):
        moment = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if moment <= after or (fired and moment <= fired[-1]):
            continue
        fired.append(moment)
        if len(fired) == 5:
            break
    return fired


def test_fire_times_agree_with_dateutils_own_iteration_on_random_rules() -> None:
    rng = random.Random(13)
    compared = 0
    while compared < 300:
        text, local_after = _random_rule(rng)
        zone = ZoneInfo(rng.choice(_ZONES))
        after = local_after.replace(tzinfo=zone)
        try:
            schedule = normalize_schedule({"rrule": text, "timezone": zone.key})
            expected = _as_dateutil_does(text, zone, after)
        except (ScheduleError, ValueError):  # a random rule dateutil refuses: not one to compare
            continue
        ours = list(itertools.islice(fire_times(schedule, after, deadline=_soon()), 5))
        assert ours == expected, (text, zone.key, after)
        compared += 1


def _soon() -> float:
    """A deadline no rule should come near: the search near the moment takes milliseconds."""
    return time.monotonic() + 30.0
