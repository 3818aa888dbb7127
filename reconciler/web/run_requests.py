"""A flow run asked for through the web API or the dashboard's run form, checked before
anything is written (web: request -> NewRun).

The same checks as `reconcile deployment run` (reconciler/worker/create_run.py): the
deployment exists, its parameters overlaid with those given fit the flow's parameter schema
(unknown names always; types, bounds and required ones when the deployment enforces its
schema), job-variable overrides fit the pool's base job template. A bulk request is checked
whole first: one bad run and none is created.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.errors import UserError
from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import NewRun
from reconciler.prefect_rules.job_templates import job_variable_problems
from reconciler.prefect_rules.parameters import check_storable
from reconciler.prefect_rules.validation import did_you_mean
from reconciler.store.base import Store
from reconciler.worker.create_run import parameter_problems


@dataclass(frozen=True)
class RunRequest:
    deployment: str
    parameters: dict[str, Any] = field(default_factory=dict)
    job_variables: dict[str, Any] = field(default_factory=dict)
    scheduled_time: float | None = None
    name: str | None = None
    idempotency_key: str | None = None


class RunChecker:
    """Checks run requests against one store, reading each deployment and pool once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._deployments: dict[str, Resource | None] = {}
        self._pools: dict[str, Resource | None] = {}
        self._known: list[str] | None = None

    def _deployment(self, key: str) -> Resource | None:
        if key not in self._deployments:
            self._deployments[key] = self.store.get(Kind.DEPLOYMENT, key)
        return self._deployments[key]

    def _pool(self, name: str) -> Resource | None:
        if name not in self._pools:
            self._pools[name] = self.store.get(Kind.WORK_POOL, name)
        return self._pools[name]

    def problems(self, request: RunRequest) -> tuple[NewRun | None, list[str], str | None]:
        """(the run to create, or None; what is wrong; a hint)."""
        deployment = self._deployment(request.deployment)
        if deployment is None:
            if self._known is None:
                self._known = [r.key for r in self.store.list_resources(Kind.DEPLOYMENT)]
            return (
                None,
                [f"deployment {request.deployment!r} does not exist"],
                did_you_mean(request.deployment, self._known)
                or "GET /api/v1/deployments lists them (FLOW/NAME)",
            )
        spec = deployment.deployment_spec()
        merged = {**spec.parameters, **request.parameters}
        try:
            check_storable(merged, "the run's parameters")
            check_storable(request.job_variables, "the run's job variables")
        except UserError as exc:
            return None, [exc.message], exc.hint
        problems = parameter_problems(spec, merged)
        pool = self._pool(spec.work_pool_name or "")
        if pool is None:
            return (
                None,
                [f"the work pool {spec.work_pool_name!r} of {request.deployment} is missing"],
                "reconcile the repository that declares it, or create it by hand",
            )
        template = pool.pool_spec().base_job_template
        effective = {**spec.job_variables, **request.job_variables}
        for problem in job_variable_problems(template, effective, ignore_required=False):
            where = ".".join(str(p) for p in problem.path)
            problems.append(
                f"job variable {where}: {problem.message}" if where else problem.message
            )
        if problems:
            return None, problems, "fix the parameters and job variables given"
        new = NewRun(
            deployment=request.deployment,
            flow_name=spec.flow_name,
            pool=pool.key,
            queue=spec.work_queue_name or "default",
            scheduled_time=time.time()
            if request.scheduled_time is None
            else request.scheduled_time,
            parameters=merged,
            job_variables=dict(request.job_variables),
            name=request.name,
            idempotency_key=request.idempotency_key,
        )
        return new, [], None


def run_request(value: Mapping[str, Any], deployment: str | None = None) -> RunRequest:
    """A RunRequest from a body already checked against its JSON schema."""
    return RunRequest(
        deployment=deployment if deployment is not None else str(value["deployment"]),
        parameters=dict(value.get("parameters") or {}),
        job_variables=dict(value.get("job_variables") or {}),
        scheduled_time=value.get("scheduled_time"),
        name=value.get("name"),
        idempotency_key=value.get("idempotency_key"),
    )
