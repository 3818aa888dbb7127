"""Fire times of cron, interval and rrule schedules, across both daylight-saving changes."""

from __future__ import annotations

import datetime
import itertools
from typing import Any
from zoneinfo import ZoneInfo

from reconciler.scheduling.fire_times import fire_times, schedule_id
from reconciler.spec.schedules import normalize_schedule

NY = ZoneInfo("America/New_York")
UTC = datetime.UTC


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
