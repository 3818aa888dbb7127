"""The scheduler tick: deployment schedules become SCHEDULED runs (scheduler: store -> store).

Prefect's look-ahead (docs/design-notes.md#scheduler): for every active schedule of every deployment
that is not paused, keep at least `min_runs` runs and at least `min_seconds` scheduled ahead,
generating at most `max_runs` runs or `max_seconds` ahead. A schedule that already has enough is
skipped without computing anything. Each run carries the key `scheduled DEPLOYMENT SCHEDULE TIME`,
unique in the store: a tick repeated, a daemon restarted, or two daemons side by side never create a
run twice.

Each deployment gets `budget_seconds` (2 s) to compute its fire times: a schedule still being
searched then, or one that fails, is reported as an error of its deployment (logged, and in
`TickResult.errors`) and the tick goes on with the next deployment. The fire times themselves
cost time proportional to the runs asked for (reconciler/scheduling/fire_times.py).

The tick also marks runs not started within `late_after_seconds` of their time LATE (or
cancels them, when late runs are to be skipped).

Runs of schedules that changed or left git are removed by the apply itself, in its transaction
(reconciler/apply/transaction.py); this tick then makes the new schedule's runs.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import NewRun
from reconciler.model.specs import DeploymentSpec, ScheduleSpec
from reconciler.scheduling.fire_times import ScheduleTooSlow, fire_times, schedule_id
from reconciler.store import Store

DEFAULT_BUDGET_SECONDS = 2.0
log = logging.getLogger("reconciler.scheduler")


@dataclass(frozen=True)
class LookAhead:
    min_runs: int = 3
    min_seconds: float = 3600.0
    max_runs: int = 100
    max_seconds: float = 100 * 86400.0


@dataclass(frozen=True)
class LatePolicy:
    after_seconds: float = 15.0
    skip: bool = False


@dataclass(frozen=True)
class TickResult:
    created: int
    late: int
    # Deployments whose schedules could not be computed this tick, and why.
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class WantedRuns:
    runs: list[NewRun] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def active_schedule_ids(deployment: DeploymentSpec) -> set[str]:
    """The schedules of a deployment that make runs (none while it is paused)."""
    return {schedule_id(s) for s in deployment.active_schedules()}


def runs_to_create(
    deployments: Iterable[Resource],
    ahead: Mapping[tuple[str, str], tuple[int, float]],
    now: float,
    look: LookAhead,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
) -> WantedRuns:
    """The runs the look-ahead asks for, given what is already scheduled; a deployment whose
    fire times fail or take longer than `budget_seconds` gets none, and an error instead."""
    wanted = WantedRuns()
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    for deployment in deployments:
        deadline = time.monotonic() + budget_seconds
        try:
            wanted.runs.extend(_deployment_runs(deployment, ahead, moment, look, deadline))
        except ScheduleTooSlow as exc:
            wanted.errors[deployment.key] = (
                f"{exc} (its schedules have {budget_seconds:g} s per scheduler tick)"
            )
        except Exception as exc:  # one deployment's schedule never stops the others' runs
            wanted.errors[deployment.key] = f"its schedules could not be computed: {exc}"
    return wanted


def _deployment_runs(
    deployment: Resource,
    ahead: Mapping[tuple[str, str], tuple[int, float]],
    moment: datetime.datetime,
    look: LookAhead,
    deadline: float,
) -> list[NewRun]:
    spec = deployment.deployment_spec()
    now = moment.timestamp()
    wanted: list[NewRun] = []
    for schedule in spec.active_schedules():
        sid = schedule_id(schedule)
        count, latest = ahead.get((deployment.key, sid), (0, 0.0))
        if count >= look.min_runs and latest >= now + look.min_seconds:
            continue
        parameters = {**spec.parameters, **schedule.parameters}
        for fire in _dates(schedule, moment, look, deadline):
            wanted.append(
                NewRun(
                    deployment=deployment.key,
                    flow_name=spec.flow_name,
                    pool=_pool_of(spec),
                    queue=spec.queue,
                    scheduled_time=fire.timestamp(),
                    parameters=parameters,
                    idempotency_key=f"scheduled {deployment.key} {sid} {fire.isoformat()}",
                    schedule_id=sid,
                )
            )
    return wanted


def _pool_of(spec: DeploymentSpec) -> str:
    if spec.work_pool_name is None:
        raise ValueError("it names no work pool")
    return spec.work_pool_name


def _dates(
    schedule: ScheduleSpec, now: datetime.datetime, look: LookAhead, deadline: float
) -> list[datetime.datetime]:
    dates: list[datetime.datetime] = []
    end = now + datetime.timedelta(seconds=look.max_seconds)
    enough_at = now + datetime.timedelta(seconds=look.min_seconds)
    for fire in fire_times(schedule, now, before=end, deadline=deadline):
        if len(dates) >= look.max_runs:
            break
        dates.append(fire)
        if len(dates) >= look.min_runs and fire >= enough_at:
            break
    return dates


def tick(
    store: Store,
    *,
    now: float | None = None,
    look: LookAhead | None = None,
    late: LatePolicy | None = None,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
) -> TickResult:
    """One pass of the scheduler over every deployment in the store."""
    moment = time.time() if now is None else now
    policy = late or LatePolicy()
    late_ids = store.mark_late_runs(moment - policy.after_seconds, skip=policy.skip)
    wanted = runs_to_create(
        store.list_resources(Kind.DEPLOYMENT),
        store.scheduled_ahead(moment),
        moment,
        look or LookAhead(),
        budget_seconds,
    )
    for deployment, message in wanted.errors.items():
        log.warning("deployment %s gets no scheduled runs this tick: %s", deployment, message)
    return TickResult(store.create_runs(wanted.runs), len(late_ids), wanted.errors)
