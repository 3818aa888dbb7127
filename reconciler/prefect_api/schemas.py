"""Our records as Prefect's JSON objects: what the Prefect API (reconciler/prefect_api/app.py)
sends back to Prefect's client. Every object carries its `id` (Prefect's client would invent
a random one otherwise); times are ISO 8601 in UTC.

Ids Prefect needs and we do not keep are stable uuid5s of our keys: a deployment's of its key
("flow/name"), a work pool's of its name, a work queue's of "pool/queue", a flow's of its name.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

from reconciler.model.observed import BlockRecord
from reconciler.model.prefect_records import (
    ArtifactRecord,
    PrefectFlow,
    TaskRunRecord,
    prefect_flow_id,
    stable_id,
    utc_iso,
)
from reconciler.model.resources import Resource
from reconciler.model.runs import FlowRun
from reconciler.model.specs import PoolSpec, QueueSpec
from reconciler.prefect_api.orchestration import current_state

WORKING_DIRECTORY_PULL_STEP = {
    "prefect.deployments.steps.set_working_directory": {"directory": "."}
}
"""The worker has fetched the code into the process's working directory already."""

DEFAULT_POLICY: dict[str, Any] = {
    "max_retries": 0,
    "retry_delay_seconds": 0.0,
    "retries": None,
    "retry_delay": None,
    "pause_keys": [],
    "resuming": False,
    "retry_type": None,
}

BLOCK_TYPE_NAMES = {"secret": "Secret", "string": "String", "json": "JSON"}
SECRET_BLOCK_FIELDS = {"secret": ["value"]}


def deployment_id(key: str) -> str:
    return stable_id("deployment", key)


def work_pool_id(name: str) -> str:
    return stable_id("work-pool", name)


def work_queue_id(pool: str, queue: str) -> str:
    return stable_id("work-queue", f"{pool}/{queue}")


def flow_json(flow: PrefectFlow) -> dict[str, Any]:
    return {
        "id": flow.id,
        "name": flow.name,
        "tags": [],
        "labels": {},
        "created": utc_iso(flow.created_at),
        "updated": utc_iso(flow.created_at),
    }


def flow_run_json(run: FlowRun, tags: list[str] | None = None) -> dict[str, Any]:
    state = current_state(run)
    on_pool = bool(run.pool)
    expected = _epoch_iso(run.scheduled_time)
    return {
        "id": run.id,
        "name": run.name,
        "flow_id": prefect_flow_id(run.flow_name),
        "deployment_id": deployment_id(run.deployment) if run.deployment else None,
        "deployment_version": None,
        "work_pool_name": run.pool or None,
        "work_pool_id": work_pool_id(run.pool) if on_pool else None,
        "work_queue_name": run.queue or None,
        "work_queue_id": work_queue_id(run.pool, run.queue) if on_pool and run.queue else None,
        "flow_version": run.flow_version,
        "parameters": run.parameters,
        "idempotency_key": run.idempotency_key,
        "context": {},
        "empirical_policy": {**DEFAULT_POLICY, **(run.empirical_policy or {})},
        "tags": tags or [],
        "labels": {},
        "parent_task_run_id": run.parent_task_run_id,
        "run_count": run.run_count,
        "expected_start_time": expected,
        "next_scheduled_start_time": None,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "total_run_time": 0.0,
        "estimated_run_time": 0.0,
        "estimated_start_time_delta": 0.0,
        "auto_scheduled": run.schedule_id is not None,
        "infrastructure_document_id": None,
        "infrastructure_pid": run.infrastructure_id,
        "created_by": None,
        "job_variables": run.job_variables,
        "state_id": state["id"],
        "state_type": state["type"],
        "state_name": state["name"],
        "state": state,
        "created": utc_iso(run.created_at),
        "updated": utc_iso(run.updated_at),
    }


def _epoch_iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="microseconds")


def task_run_json(task: TaskRunRecord, state: dict[str, Any]) -> dict[str, Any]:
    details = task.details
    return {
        **details,
        "id": task.id,
        "name": task.name,
        "flow_run_id": task.flow_run_id,
        "task_key": task.task_key,
        "dynamic_key": task.dynamic_key,
        "run_count": task.run_count,
        "state_id": state.get("id"),
        "state_type": state.get("type"),
        "state_name": state.get("name"),
        "state": state,
    }


def deployment_json(resource: Resource) -> dict[str, Any]:
    spec = resource.deployment_spec()
    pool = spec.work_pool_name
    queue = spec.queue if pool else None
    return {
        "id": deployment_id(resource.key),
        "name": spec.name,
        "flow_id": prefect_flow_id(spec.flow_name),
        "version": spec.version,
        "description": spec.description,
        "entrypoint": spec.entrypoint,
        "path": None,
        "pull_steps": [WORKING_DIRECTORY_PULL_STEP],
        "parameter_openapi_schema": spec.parameter_openapi_schema,
        "parameters": spec.parameters,
        "enforce_parameter_schema": False,
        "tags": list(spec.tags),
        "labels": {},
        "work_pool_name": pool,
        "work_queue_name": queue,
        "work_queue_id": work_queue_id(pool, queue) if pool and queue else None,
        "storage_document_id": None,
        "infrastructure_document_id": None,
        "job_variables": {},
        "paused": spec.paused,
        "schedules": [],
        "concurrency_limit": None,
    }


def work_pool_json(name: str, spec: PoolSpec | None) -> dict[str, Any]:
    """A pool as Prefect's API shows it; one not in the store has the defaults of a new one."""
    spec = spec or PoolSpec(name)
    return {
        "id": work_pool_id(name),
        "name": name,
        "description": spec.description,
        "type": spec.type,
        "base_job_template": {},
        "is_paused": spec.paused,
        "concurrency_limit": spec.concurrency_limit,
        "status": "READY",
        "default_queue_id": work_queue_id(name, "default"),
    }


def work_queue_json(pool: str, queue: str, spec: QueueSpec | None) -> dict[str, Any]:
    """A queue as Prefect's API shows it; a pool's implicit default queue has the defaults."""
    spec = spec or QueueSpec(pool, queue)
    return {
        "id": work_queue_id(pool, queue),
        "name": queue,
        "description": spec.description,
        "is_paused": spec.paused,
        "concurrency_limit": spec.concurrency_limit,
        "priority": spec.priority,
        "work_pool_id": work_pool_id(pool),
        "work_pool_name": pool,
        "filter": None,
        "status": "READY",
    }


def variable_json(name: str, value: Any) -> dict[str, Any]:
    return {
        "id": stable_id("variable", name),
        "name": name,
        "value": value,
        "tags": [],
    }


def block_data(block: BlockRecord) -> dict[str, Any]:
    """The block's fields: what `reconcile secret set` stored ({"value": ...} for a plain
    value), a JSON block's value wrapped in its one field."""
    value = block.value
    if isinstance(value, dict) and (block.type_slug != "json" or set(value) == {"value"}):
        return dict(value)
    return {"value": value}


def block_document_json(block: BlockRecord, *, include_secrets: bool) -> dict[str, Any]:
    slug = block.type_slug
    type_name = BLOCK_TYPE_NAMES.get(slug, slug.replace("-", " ").title())
    data = block_data(block)
    secret_fields = SECRET_BLOCK_FIELDS.get(slug, [])
    if not include_secrets:
        data = {key: ("*" * 8 if key in secret_fields else item) for key, item in data.items()}
    fields = {
        "title": type_name,
        "type": "object",
        "properties": {key: {"title": key.title()} for key in data},
        "block_type_slug": slug,
        "secret_fields": secret_fields,
        "block_schema_references": {},
    }
    checksum = "sha256:" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    block_type = {
        "id": stable_id("block-type", slug),
        "name": type_name,
        "slug": slug,
        "logo_url": None,
        "documentation_url": None,
        "description": None,
        "code_example": None,
        "is_protected": False,
    }
    schema_id = stable_id("block-schema", slug)
    return {
        "id": stable_id("block-document", f"{slug}/{block.name}"),
        "name": block.name,
        "data": data,
        "block_schema_id": schema_id,
        "block_schema": {
            "id": schema_id,
            "checksum": checksum,
            "fields": fields,
            "block_type_id": block_type["id"],
            "block_type": block_type,
            "capabilities": [],
            "version": "1",
        },
        "block_type_id": block_type["id"],
        "block_type_name": type_name,
        "block_type": block_type,
        "block_document_references": {},
        "is_anonymous": False,
    }


def artifact_json(artifact: ArtifactRecord) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "key": artifact.key,
        "type": artifact.type,
        "description": artifact.description,
        "data": artifact.data,
        "metadata_": None,
        "flow_run_id": artifact.flow_run_id,
        "task_run_id": artifact.task_run_id,
        "created": utc_iso(artifact.created_at),
        "updated": utc_iso(artifact.created_at),
    }
