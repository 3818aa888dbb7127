"""An rrule (or rule set) rewritten to start near a moment (scheduler: used by fire_times.py).

dateutil iterates a rule from its DTSTART: a MINUTELY rule anchored in 2020 walks millions of
minutes to reach today. Each rule of the set is rewritten into one with the same occurrences
from `start` on (earlier ones may be dropped), in time proportional to what is asked:

- without COUNT, DTSTART moves forward by whole periods (INTERVAL times the frequency: exact
  seconds up to WEEKLY, calendar months and years for MONTHLY and YEARLY, keeping the day of
  the month). Periods keep their alignment, so every BYxxx part (BYSETPOS, BYWEEKNO, BYEASTER
  ...) selects the same occurrences within them;
- with COUNT (the first N occurrences from DTSTART) and no BYxxx part, on a fixed frequency
  (SECONDLY to WEEKLY), the occurrences are DTSTART + i * period: the ones before `start` are
  counted arithmetically and DTSTART and COUNT move together;
- a COUNT rule with BYxxx parts, or MONTHLY or YEARLY, is walked from its DTSTART: that is the
  only way to know which occurrences the count keeps. The caller's deadline bounds the walk.

With `end`, each rule also stops past its first occurrence after `end` (UNTIL = the earlier of
its own and `end`). A rule whose BYxxx parts never match again (30 February, or a DAILY
INTERVAL=7 that never lands on its BYDAY) makes dateutil search to the year 9999 without
yielding: each rule checks the deadline once per year it searches (dateutil reads the rule's
`_byweekno` once per year: the only hook it offers) and raises `ScheduleTooSlow` past it.

EXRULEs are rewritten the same way; RDATEs and EXDATEs are kept as they are.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, rrule, rruleset

# Without a DTSTART, dateutil would start at "now": a fixed start keeps the times stable.
RULE_ANCHOR = datetime.datetime(2020, 1, 1)

_FIXED_PERIOD_SECONDS = {
    SECONDLY: 1,
    MINUTELY: 60,
    HOURLY: 3_600,
    DAILY: 86_400,
    WEEKLY: 7 * 86_400,
}
# How far back from the nearest period to look for a month (or year) holding DTSTART's day.
_CALENDAR_TRIES = 48


def rules_near(
    text: str,
    start: datetime.datetime,
    end: datetime.datetime | None,
    deadline: float | None = None,
) -> tuple[rruleset, str]:
    """The rule set of `text` (naive wall-clock times) with its occurrences from `start` on,
    ending after `end`; and what to tell the user when walking it took too long."""
    from dateutil.rrule import rrulestr

    parsed = rrulestr(text, forceset=True, ignoretz=True, dtstart=RULE_ANCHOR)
    near = rruleset()
    walked = False
    for rule in _part(parsed, "_rrule"):
        rewritten, walks = _rule_near(rule, start, end)
        walked = walked or walks
        if rewritten is not None:
            near.rrule(rewritten)
    for rule in _part(parsed, "_exrule"):
        rewritten, walks = _rule_near(rule, start, end)
        walked = walked or walks
        if rewritten is not None:
            near.exrule(rewritten)
    for moment in _part(parsed, "_rdate"):
        near.rdate(moment)
    for moment in _part(parsed, "_exdate"):
        near.exdate(moment)
    message = _too_slow_message(text, walked)
    if deadline is not None:
        for rule in (*_part(near, "_rrule"), *_part(near, "_exrule")):
            _guard(rule, deadline, message)
    return near, message


def _too_slow_message(text: str, walked: bool) -> str:
    shown = text if len(text) <= 80 else f"{text[:80]}..."
    if walked:
        return (
            f"the rrule {shown!r} has a COUNT that can only be found by walking its "
            "occurrences one by one from DTSTART, and that took too long: give it a later "
            "DTSTART, or UNTIL instead of COUNT"
        )
    return (
        f"the rrule {shown!r} took too long to search: its BYxxx parts may never match "
        "again (such as BYMONTH=2;BYMONTHDAY=30)"
    )


def _rule_near(
    rule: rrule, start: datetime.datetime, end: datetime.datetime | None
) -> tuple[rrule | None, bool]:
    """The rewritten rule (None when it has no occurrence left), and whether it is walked."""
    count: int | None = _part(rule, "_count")
    if count is None:
        return _ending(rule.replace(dtstart=_whole_periods_before(rule, start)), end, None), False
    frequency = _part(rule, "_freq")
    if frequency in _FIXED_PERIOD_SECONDS and not _has_by_parts(rule):
        period = datetime.timedelta(
            seconds=_FIXED_PERIOD_SECONDS[frequency] * _part(rule, "_interval")
        )
        dtstart: datetime.datetime = _part(rule, "_dtstart")
        skipped = min(count, max(0, (start - dtstart) // period))
        if skipped == count:
            return None, False
        moved = rule.replace(dtstart=dtstart + skipped * period, count=count - skipped)
        return _ending(moved, end, count - skipped), False
    return _ending(rule, end, count), True


def _has_by_parts(rule: rrule) -> bool:
    """Whether the rule names any BYxxx part (defaults taken from DTSTART do not count)."""
    original: dict[str, Any] = _part(rule, "_original_rule")
    return any(value is not None for value in original.values())


def _whole_periods_before(rule: rrule, start: datetime.datetime) -> datetime.datetime:
    """The latest DTSTART + k * INTERVAL periods (k >= 0) not after `start`."""
    dtstart: datetime.datetime = _part(rule, "_dtstart")
    if start <= dtstart:
        return dtstart
    interval: int = _part(rule, "_interval")
    frequency = _part(rule, "_freq")
    if frequency in _FIXED_PERIOD_SECONDS:
        period = datetime.timedelta(seconds=_FIXED_PERIOD_SECONDS[frequency] * interval)
        return dtstart + ((start - dtstart) // period) * period
    if frequency == MONTHLY:
        months = (start.year - dtstart.year) * 12 + start.month - dtstart.month
        unit = 1
    else:  # YEARLY
        months = (start.year - dtstart.year) * 12
        unit = 12
    periods = months // (unit * interval)
    for k in range(periods, max(periods - _CALENDAR_TRIES, 0), -1):
        years, month = divmod(dtstart.month - 1 + k * interval * unit, 12)
        try:
            candidate = dtstart.replace(year=dtstart.year + years, month=month + 1)
        except ValueError:  # the 31st (or 29 February) is not in that month: skipped anyway
            continue
        if candidate <= start:
            return candidate
    return dtstart


def _ending(rule: rrule, end: datetime.datetime | None, count: int | None) -> rrule:
    """The rule with UNTIL no later than `end`, keeping its COUNT."""
    until: datetime.datetime | None = _part(rule, "_until")
    if end is None or (until is not None and until <= end):
        return rule
    # dateutil warns when a rule has both COUNT and UNTIL (RFC 5545 forbids it in the text),
    # but its iteration honours both: the COUNT is set back after building the rule.
    bounded = rule.replace(count=None, until=end)
    vars(bounded)["_count"] = count
    return bounded


def _part(rules: rrule | rruleset, name: str) -> Any:
    """A part of a parsed rule: dateutil keeps them in private attributes (`_count`,
    `_dtstart`, a set's `_rrule` list...), which its type stubs do not list."""
    return vars(rules)[name]


class _GuardedRule(rrule):
    """An rrule that checks a deadline each time dateutil's search reads `_byweekno` (once
    per year searched). The attribute's value stays in the instance's own dictionary."""

    @property
    def _byweekno(self) -> Any:
        fields = self.__dict__
        if time.monotonic() > fields["_guard_deadline"]:
            from reconciler.scheduling.fire_times import ScheduleTooSlow

            raise ScheduleTooSlow(fields["_guard_message"])
        return fields["_byweekno"]


def _guard(rule: rrule, deadline: float, message: str) -> None:
    rule.__dict__["_guard_deadline"] = deadline
    rule.__dict__["_guard_message"] = message
    rule.__class__ = _GuardedRule
