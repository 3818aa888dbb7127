"""Generated schedule entries (cron, interval, rrule, with time zones, anchors and parameters):
refused with a message, or their fire times computed within the scheduler's budget."""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.fuzz import strategies as gen
from tests.fuzz.checks import check_config, check_schedule

pytestmark = pytest.mark.fuzz


@gen.bounded(120)
@given(gen.schedule_entries())
def test_schedule_entries(entry: object) -> None:
    check_schedule(entry)


@gen.bounded(20)
@given(gen.schedule_entries())
def test_schedules_in_a_prefect_yaml(entry: object) -> None:
    deployment = {
        "name": "nightly",
        "entrypoint": "flows/etl.py:ingest",
        "work_pool": {"name": "etl"},
        "schedules": [entry],
    }
    check_config({"prefect.yaml": gen.as_yaml({"deployments": [deployment]})})
