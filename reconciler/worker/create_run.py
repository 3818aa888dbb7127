"""Create a flow run of a reconciled deployment (`reconcile deployment run`).

The run's parameters are the deployment's, overlaid with those given; they are checked
against the parameter schema recorded from the flow's signature (unknown names always, unless
the flow takes **kwargs; types, bounds, formats and required ones when the deployment
enforces its schema, as Prefect does: see run_parameters.py). Job-variable overrides are
checked against the pool's template, with required variables enforced as Prefect does for a
run. Nothing is written unless all of it is valid.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.core.errors import UserError
from reconciler.model.resources import Kind
from reconciler.model.runs import FlowRun, NewRun
from reconciler.model.specs import DeploymentSpec
from reconciler.prefect_rules.job_templates import job_variable_problems
from reconciler.prefect_rules.parameters import (
    check_storable,
    parse_object,
    parse_value,
    schema_problems,
)
from reconciler.prefect_rules.validation import did_you_mean
from reconciler.store import Store


def parse_assignments(pairs: Iterable[str], what: str) -> dict[str, Any]:
    """`k=v` pairs; a value that reads as JSON is that JSON value, otherwise the string."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UserError(f"{what} {pair!r} is not NAME=VALUE", f"for example {what} days=3")
        values[name] = parse_value(text, f"{what} {name}")
    return values


def parse_json_object(text: str | None, what: str) -> dict[str, Any]:
    return {} if text is None else parse_object(text, what)


def create_run(
    store: Store,
    deployment_key: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    job_variables: Mapping[str, Any] | None = None,
    scheduled_time: float | None = None,
) -> FlowRun:
    deployment = store.get(Kind.DEPLOYMENT, deployment_key)
    if deployment is None:
        known = [r.key for r in store.list_resources(Kind.DEPLOYMENT)]
        raise UserError(
            f"deployment {deployment_key!r} does not exist",
            did_you_mean(deployment_key, known)
            or "`reconcile deployment ls` lists them (FLOW/NAME)",
        )
    spec = deployment.deployment_spec()
    merged = {**spec.parameters, **(parameters or {})}
    check_storable(merged, "the run's parameters")
    problems = parameter_problems(spec, merged)
    overrides = dict(job_variables or {})
    pool = store.get(Kind.WORK_POOL, spec.work_pool_name) if spec.work_pool_name else None
    if pool is None:
        raise UserError(
            f"the work pool {spec.work_pool_name!r} of {deployment_key} does not exist",
            "reconcile the repository that declares it, or create it by hand",
        )
    template = pool.pool_spec().base_job_template
    effective = {**spec.job_variables, **overrides}
    for problem in job_variable_problems(template, effective, ignore_required=False):
        where = ".".join(str(p) for p in problem.path)
        problems.append(f"job variable {where}: {problem.message}" if where else problem.message)
    if problems:
        raise UserError(
            f"cannot run {deployment_key}: " + "; ".join(problems),
            "fix the values given with --param/--params/--job-variable",
        )
    return store.create_run(
        NewRun(
            deployment=deployment_key,
            flow_name=spec.flow_name,
            pool=pool.key,
            queue=spec.queue,
            scheduled_time=time.time() if scheduled_time is None else scheduled_time,
            parameters=merged,
            job_variables=overrides,
        )
    )


def parameter_problems(spec: DeploymentSpec, parameters: Mapping[str, Any]) -> list[str]:
    schema = spec.parameter_openapi_schema
    properties = schema.get("properties") or {}
    # A flow with **kwargs lists it as an object property defaulting to {} (Prefect's form).
    takes_anything = schema.get("type") is None or any(
        prop.get("additionalProperties") is True and prop.get("default") == {}
        for prop in properties.values()
        if isinstance(prop, dict)
    )
    problems = []
    if not takes_anything:
        for name in parameters:
            if name not in properties:
                hint = did_you_mean(name, properties)
                problems.append(
                    f"{name!r} is not a parameter of flow {spec.flow_name}"
                    + (f" ({hint})" if hint else f" (its parameters: {', '.join(properties)})")
                )
    if spec.enforce_parameter_schema and not problems:
        problems += schema_problems(schema, parameters)
    return problems
