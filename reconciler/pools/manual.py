"""Work pools and queues made by hand (`reconcile work-pool ...`, `reconcile work-queue ...`).

Place: between the CLI and the store. Each function here takes the store's ObservedState and
returns an `Edit` (the objects to put and delete, and what to tell the user) or raises a
UserError; it reads and writes nothing itself, so the CLI can apply an Edit in one transaction
at the revision it was computed from.

Rules:
- hand-made objects have `owner=None` and exactly the spec shape of reconciled ones
  (reconciler/project/pools_file.py): a pool gets Prefect's base job template for its type and a
  `default` queue; a queue without a priority takes the first free number;
- an object owned by a repository is never changed or deleted by hand: git is the source of
  truth, and the next reconcile would undo the change;
- a queue given a priority that another queue holds moves the others down as Prefect's server
  does (the fewest changes that keep the order and make priorities unique);
- nothing a reconciled deployment uses is deleted, and a new base job template must still fit
  the job variables of the deployments that use the pool.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from reconciler.core.errors import UserError
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Resource, is_unknown, queue_key
from reconciler.model.specs import PoolSpec, QueueSpec
from reconciler.prefect_rules.job_templates import (
    POOL_TYPES,
    WORKER_POOL_TYPES,
    default_base_job_template,
    job_variable_problems,
    template_problems,
)

DEFAULT_QUEUE: Final = "default"
DEFAULT_QUEUE_DESCRIPTION: Final = "The work pool's default queue."
POOLS_FILE: Final = "work-pools.yaml"

_NAME = re.compile(r"^[^/%&><]+$")
POOL_FIELDS: Final = ("description", "paused", "concurrency_limit", "base_job_template")
QUEUE_FIELDS: Final = ("description", "paused", "concurrency_limit", "priority")


@dataclass(frozen=True)
class Edit:
    """What one command writes, in one transaction: `puts` first, then `deletes`."""

    message: str
    puts: tuple[Resource, ...] = ()
    deletes: tuple[tuple[Kind, str], ...] = ()

    @property
    def writes(self) -> bool:
        return bool(self.puts or self.deletes)


# --- specs -------------------------------------------------------------------------------------


def check_name(label: str, name: str) -> None:
    """Prefect's rule for pool and queue names: not blank, none of / % & > <."""
    if not name.strip():
        raise UserError(f"{label} name cannot be empty")
    if not _NAME.match(name):
        raise UserError(
            f"{label} name {name!r} is not allowed: names cannot contain / % & > <",
            "choose a name without those characters",
        )


def pool_spec(
    name: str,
    pool_type: str,
    *,
    description: str | None = None,
    paused: bool = False,
    concurrency_limit: int | None = None,
    base_job_template: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A pool's spec, as work-pools.yaml would declare it. An empty or missing template is the
    type's default (Prefect's); any other is checked as Prefect's server checks it."""
    if pool_type not in POOL_TYPES:
        raise UserError(
            f"unknown work pool type {pool_type!r}", f"choose from {', '.join(POOL_TYPES)}"
        )
    template = dict(base_job_template or {}) or default_base_job_template(pool_type)
    check_template(template)
    return {
        "name": name,
        "type": pool_type,
        "description": description,
        "paused": paused,
        "concurrency_limit": concurrency_limit,
        "base_job_template": template,
    }


def check_template(template: Mapping[str, Any], source: str = "the base job template") -> None:
    problems = template_problems(template)
    if problems:
        raise UserError(
            f"{source} is not valid: " + "; ".join(problems),
            "start from a default one: `reconcile work-pool inspect NAME -o json` shows a "
            "pool's `spec.base_job_template`",
        )


def queue_spec(
    pool: str,
    name: str,
    priority: int,
    *,
    description: str | None = None,
    concurrency_limit: int | None = None,
    paused: bool = False,
) -> dict[str, Any]:
    """A queue's spec, as work-pools.yaml would declare it."""
    if description is None and name == DEFAULT_QUEUE:
        description = DEFAULT_QUEUE_DESCRIPTION
    return {
        "pool": pool,
        "name": name,
        "description": description,
        "priority": priority,
        "concurrency_limit": concurrency_limit,
        "paused": paused,
    }


# --- priorities (Prefect's server rules) -------------------------------------------------------


def first_free_priority(taken: Iterable[int]) -> int:
    """The first gap in the sorted priorities, else one past the largest."""
    used = set(taken)
    return next(p for p in range(1, len(used) + 2) if p not in used)


def renumbered(priorities: Mapping[str, int], moved: str, target: int) -> dict[str, int]:
    """Every queue's priority once `moved` takes `target`: it goes before the first other
    queue whose priority is at least `target`, then each queue that is not above the one before
    it moves to one more than that one. Queues not in the way keep their numbers."""
    others = sorted(
        ((p, name) for name, p in priorities.items() if name != moved), key=lambda item: item
    )
    order = [name for _, name in others]
    at = next((i for i, (p, _) in enumerate(others) if p >= target), len(others))
    order.insert(at, moved)
    wanted = {**priorities, moved: target}
    result: dict[str, int] = {}
    last = 0
    for name in order:
        priority = wanted[name]
        if priority <= last:
            priority = last + 1
        result[name] = priority
        last = priority
    return result


# --- lookups -----------------------------------------------------------------------------------


def get_pool(observed: ObservedState, name: str) -> Resource:
    found = observed.get(Kind.WORK_POOL, name)
    if found is None:
        raise _not_found(
            f'work pool "{name}" not found',
            name,
            [r.key for r in observed.of_kind(Kind.WORK_POOL)],
            "reconcile work-pool ls",
        )
    return found


def find_queue(observed: ObservedState, name: str, pool: str | None) -> Resource:
    """The queue `name` of `pool`; `POOL/QUEUE` works too, and without a pool a queue name
    that exists in exactly one pool."""
    if "/" in name:
        named_pool, name = name.split("/", 1)
        if pool is not None and pool != named_pool:
            raise UserError(
                f'"{named_pool}/{name}" names pool "{named_pool}" but --pool is "{pool}"',
                "give the pool once: QUEUE --pool POOL, or POOL/QUEUE",
            )
        pool = named_pool
    queues = list(observed.of_kind(Kind.WORK_QUEUE))
    if pool is not None:
        get_pool(observed, pool)
        found = observed.get(Kind.WORK_QUEUE, queue_key(pool, name))
        if found is None:
            in_pool = [q.queue_spec().name for q in queues if q.queue_spec().pool == pool]
            raise _not_found(
                f'work queue "{name}" not found in work pool "{pool}"',
                name,
                in_pool,
                f"reconcile work-queue ls --pool {pool}",
            )
        return found
    matches = sorted((q for q in queues if q.queue_spec().name == name), key=lambda q: q.key)
    if len(matches) == 1:
        return matches[0]
    if matches:
        pools = ", ".join(q.queue_spec().pool for q in matches)
        raise UserError(
            f'there is a work queue "{name}" in several pools ({pools})',
            "say which: --pool POOL, or POOL/QUEUE",
        )
    raise _not_found(
        f'work queue "{name}" not found',
        name,
        sorted({q.queue_spec().name for q in queues}),
        "reconcile work-queue ls",
    )


def get_deployment(observed: ObservedState, key: str) -> Resource:
    found = observed.get(Kind.DEPLOYMENT, key)
    if found is None:
        known = [r.key for r in observed.of_kind(Kind.DEPLOYMENT)]
        raise _not_found(f'deployment "{key}" not found', key, known, "reconcile deployment ls")
    return found


def _not_found(message: str, name: str, known: list[str], listing: str) -> UserError:
    from reconciler.prefect_rules.validation import did_you_mean  # loads jsonschema: only on error

    return UserError(message, did_you_mean(name, known) or f"`{listing}` lists them")


def deployments_on_pool(observed: ObservedState, pool: str) -> list[Resource]:
    found = [
        d for d in observed.of_kind(Kind.DEPLOYMENT) if d.deployment_spec().work_pool_name == pool
    ]
    return sorted(found, key=lambda d: d.key)


def deployments_on_queue(observed: ObservedState, pool: str, queue: str) -> list[Resource]:
    return [d for d in deployments_on_pool(observed, pool) if d.deployment_spec().queue == queue]


# --- the refusals ------------------------------------------------------------------------------


def refuse_if_owned(resource: Resource, action: str) -> None:
    """Objects a repository owns change only through that repository's files."""
    owner = resource.owner
    if owner is None:
        return
    what = f'{resource.kind.label} "{resource.key}"'
    if action == "delete":
        todo = f"remove it from {owner.file} in {owner.repo}, commit, and run `reconcile`"
    elif resource.kind is Kind.WORK_QUEUE and not owner.file.endswith(POOLS_FILE):
        todo = (
            f"it was created for the deployments of {owner.file}; declare it under its pool in "
            f"a {POOLS_FILE} of {owner.repo}, commit, and run `reconcile`"
        )
    else:
        todo = f"change {owner.file} in {owner.repo}, commit, and run `reconcile`"
    raise UserError(
        f"{what} belongs to {owner.repo} ({owner.file}); it is managed by git and cannot be "
        f"{_past(action)} by hand",
        f"{todo}: git is the source of truth, and a reconcile would undo a change made here",
    )


def _already(action: str) -> str:
    if action == "pause":
        return "is already paused"
    if action == "resume":
        return "is not paused"
    return "already has these settings"


def _past(action: str) -> str:
    return {"delete": "deleted", "pause": "paused", "resume": "resumed"}.get(action, "changed")


def _refuse_if_used(what: str, users: list[Resource], todo: str) -> None:
    if not users:
        return
    names = ", ".join(f'"{d.key}" ({d.owner or "made by hand"})' for d in users[:5])
    more = f" and {len(users) - 5} more" if len(users) > 5 else ""
    noun = "deployment" if len(users) == 1 else "deployments"
    raise UserError(
        f"{what} is used by {noun} {names}{more}; refusing to delete it",
        f"{todo}, and run `reconcile` first: a deployment must never point at a pool or "
        "queue that does not exist",
    )


# --- work pools --------------------------------------------------------------------------------


def create_pool(observed: ObservedState, spec: dict[str, Any]) -> Edit:
    """Create the pool `spec` (as `pool_spec` writes it) with its default queue."""
    typed = PoolSpec.from_spec(spec)
    name = typed.name
    check_name("work pool", name)
    existing = observed.get(Kind.WORK_POOL, name)
    if existing is not None:
        whose = f"it belongs to {existing.owner}" if existing.owner else "it was made by hand"
        raise UserError(
            f'work pool "{name}" already exists ({whose})',
            f"change it with `reconcile work-pool update {name}`, or choose another name"
            if existing.owner is None
            else f"change it in {existing.owner.file} of {existing.owner.repo}",
        )
    pool = Resource.of(Kind.WORK_POOL, name, spec, None)
    default = queue_spec(name, DEFAULT_QUEUE, 1)
    queue = Resource.of(Kind.WORK_QUEUE, queue_key(name, DEFAULT_QUEUE), default, None)
    state = " (paused)" if typed.paused else ""
    message = f'Created work pool "{name}" ({typed.type}){state} with its queue "{DEFAULT_QUEUE}"'
    if typed.type not in WORKER_POOL_TYPES:
        message += (
            f"\nNote: reconciler's worker does not run {typed.type} pools "
            f"({', '.join(WORKER_POOL_TYPES)}): their runs wait for Prefect's {typed.type} "
            "worker, which runs against a Prefect server (`--store prefect+http://HOST/api`)"
        )
    return Edit(message, puts=(pool, queue))


def update_pool(
    observed: ObservedState, name: str, changes: Mapping[str, Any], action: str = "update"
) -> Edit:
    """Set the given fields of a hand-made pool (POOL_FIELDS); a None concurrency limit
    clears it."""
    unknown = set(changes).difference(POOL_FIELDS)
    if unknown:
        raise ValueError(f"not a pool field: {sorted(unknown)}")
    current = get_pool(observed, name)
    refuse_if_owned(current, action)
    spec = current.pool_spec()
    if "base_job_template" in changes:
        template = dict(changes["base_job_template"] or {})
        template = template or default_base_job_template(spec.type)
        check_template(template)
        _check_deployments_fit(observed, name, template)
        changes = {**changes, "base_job_template": template}
    changed = [f for f in POOL_FIELDS if f in changes and getattr(spec, f) != changes[f]]
    if not changed:
        return Edit(f'Work pool "{name}" {_already(action)}; nothing changed')
    spec = dataclasses.replace(spec, **{f: changes[f] for f in changed})
    updated = Resource.of(Kind.WORK_POOL, name, spec.to_spec(), None)
    return Edit(f'Updated work pool "{name}": {_describe(changed, spec)}', puts=(updated,))


def _check_deployments_fit(observed: ObservedState, pool: str, template: dict[str, Any]) -> None:
    problems = []
    for deployment in deployments_on_pool(observed, pool):
        variables = {
            k: v for k, v in deployment.deployment_spec().job_variables.items() if not is_unknown(v)
        }
        for problem in job_variable_problems(template, variables):
            path = ".".join(str(p) for p in problem.path)
            where = f"job_variables.{path}: " if path else ""
            problems.append(f'deployment "{deployment.key}": {where}{problem.message}')
    if problems:
        raise UserError(
            "the new base job template does not fit the deployments that use work pool "
            f'"{pool}": ' + "; ".join(problems),
            "keep those job variables declared in the template, or change the deployments first",
        )


def delete_pool(observed: ObservedState, name: str) -> Edit:
    pool = get_pool(observed, name)
    refuse_if_owned(pool, "delete")
    _refuse_if_used(
        f'work pool "{name}"',
        deployments_on_pool(observed, name),
        "move those deployments to another pool in their files",
    )
    queues = _queues_of(observed, name)
    owned = [q for q in queues if q.owner is not None]
    if owned:
        first = owned[0]
        raise UserError(
            f'work pool "{name}" holds work queue "{first.key}", which belongs to '
            f"{first.owner}; refusing to delete it",
            f"run `reconcile` on {first.owner.repo if first.owner else ''}: it prunes the "
            "queues its deployments no longer use",
        )
    count = len(queues)
    return Edit(
        f'Deleted work pool "{name}" and its {count} queue{"s" if count != 1 else ""}',
        deletes=(*((Kind.WORK_QUEUE, q.key) for q in queues), (Kind.WORK_POOL, name)),
    )


# --- work queues -------------------------------------------------------------------------------


def create_queue(
    observed: ObservedState,
    pool: str,
    name: str,
    *,
    priority: int | None = None,
    concurrency_limit: int | None = None,
    description: str | None = None,
) -> Edit:
    check_name("work queue", name)
    pool_resource = get_pool(observed, pool)
    key = queue_key(pool, name)
    existing = observed.get(Kind.WORK_QUEUE, key)
    if existing is not None:
        raise UserError(
            f'work queue "{name}" already exists in work pool "{pool}"',
            f"change it with `reconcile work-queue update {name} --pool {pool}`"
            if existing.owner is None
            else f"it belongs to {existing.owner}; change it in that file",
        )
    if pool_resource.owner is not None:
        owner = pool_resource.owner
        raise UserError(
            f'work pool "{pool}" belongs to {owner.repo} ({owner.file}); its queues are '
            "declared in that file, not made by hand",
            f'add the queue under `queues:` of pool "{pool}" in {owner.file}, commit, and run '
            "`reconcile`",
        )
    siblings = _queues_of(observed, pool)
    priorities = _priorities(siblings)
    if priority is None:
        priority = first_free_priority(priorities.values())
    spec = queue_spec(
        pool, name, priority, description=description, concurrency_limit=concurrency_limit
    )
    created = Resource.of(Kind.WORK_QUEUE, key, spec, None)
    moved = _moves(siblings, renumbered(priorities, name, priority), exclude=name)
    return Edit(
        f'Created work queue "{name}" in work pool "{pool}" with priority {priority}'
        + _moved_text(moved),
        puts=(created, *moved),
    )


def update_queue(
    observed: ObservedState, queue: Resource, changes: Mapping[str, Any], action: str = "update"
) -> Edit:
    """Set the given fields of a hand-made queue (QUEUE_FIELDS)."""
    unknown = set(changes).difference(QUEUE_FIELDS)
    if unknown:
        raise ValueError(f"not a queue field: {sorted(unknown)}")
    refuse_if_owned(queue, action)
    spec = queue.queue_spec()
    pool, name = spec.pool, spec.name
    changed = [f for f in QUEUE_FIELDS if f in changes and getattr(spec, f) != changes[f]]
    if not changed:
        return Edit(f'Work queue "{queue.key}" {_already(action)}; nothing changed')
    spec = dataclasses.replace(spec, **{f: changes[f] for f in changed})
    updated = Resource.of(Kind.WORK_QUEUE, queue.key, spec.to_spec(), None)
    moved: list[Resource] = []
    if "priority" in changed:
        siblings = _queues_of(observed, pool)
        priorities = _priorities(siblings)
        moved = _moves(siblings, renumbered(priorities, name, spec.priority), exclude=name)
    return Edit(
        f'Updated work queue "{queue.key}": {_describe(changed, spec)}' + _moved_text(moved),
        puts=(updated, *moved),
    )


def delete_queue(observed: ObservedState, queue: Resource) -> Edit:
    refuse_if_owned(queue, "delete")
    pool, name = queue.queue_spec().pool, queue.queue_spec().name
    if name == DEFAULT_QUEUE:
        raise UserError(
            f'the default queue of work pool "{pool}" cannot be deleted',
            f"delete the pool instead (`reconcile work-pool delete {pool}`)",
        )
    _refuse_if_used(
        f'work queue "{queue.key}"',
        deployments_on_queue(observed, pool, name),
        "move those deployments to another queue (work_pool.work_queue_name) in their files",
    )
    return Edit(f'Deleted work queue "{name}" of work pool "{pool}"', deletes=(queue.ident,))


def _queues_of(observed: ObservedState, pool: str) -> list[Resource]:
    return [q for q in observed.of_kind(Kind.WORK_QUEUE) if q.queue_spec().pool == pool]


def _priorities(queues: list[Resource]) -> dict[str, int]:
    return {q.queue_spec().name: q.queue_spec().priority for q in queues}


def _moves(siblings: list[Resource], priorities: Mapping[str, int], exclude: str) -> list[Resource]:
    """The other queues whose priority changes, re-specified; refused when one is owned."""
    moved = []
    for queue in sorted(siblings, key=lambda q: q.queue_spec().priority):
        spec = queue.queue_spec()
        if spec.name == exclude or priorities[spec.name] == spec.priority:
            continue
        if queue.owner is not None:
            free = first_free_priority(
                q.queue_spec().priority for q in siblings if q.queue_spec().name != exclude
            )
            raise UserError(
                f'that priority would move work queue "{queue.key}" from priority '
                f"{spec.priority} to {priorities[spec.name]}, but it belongs to "
                f"{queue.owner} and cannot be changed by hand",
                f"choose a priority no queue of the pool holds (for example {free})",
            )
        spec = dataclasses.replace(spec, priority=priorities[spec.name])
        moved.append(Resource.of(Kind.WORK_QUEUE, queue.key, spec.to_spec(), None))
    return moved


def _moved_text(moved: list[Resource]) -> str:
    if not moved:
        return ""
    shifts = ", ".join(f'"{q.queue_spec().name}" to {q.queue_spec().priority}' for q in moved)
    return f"; moved {shifts}"


def _describe(changed: list[str], spec: PoolSpec | QueueSpec) -> str:
    parts = []
    for field in changed:
        value = getattr(spec, field)
        if field == "base_job_template":
            parts.append("base job template replaced")
        elif field == "paused":
            parts.append("paused" if value else "resumed")
        elif value is None:
            parts.append(f"{field.replace('_', ' ')} cleared")
        else:
            shown = f'"{value}"' if isinstance(value, str) else str(value)
            parts.append(f"{field.replace('_', ' ')} {shown}")
    return ", ".join(parts)


# --- preview -----------------------------------------------------------------------------------


def job_configuration_preview(
    pool: PoolSpec, job_variables: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a worker would start a run with: the template's `job_configuration` with each
    `{{ variable }}` replaced by its default, or by the deployment's job variable. As in
    Prefect, a placeholder with no value removes its key (the worker's own default applies).
    Block and variable references stay as written: they are resolved only when a run starts."""
    from reconciler.prefect_rules.templating import apply_values

    template = pool.base_job_template
    declared = (template.get("variables") or {}).get("properties") or {}
    values = {
        name: schema["default"]
        for name, schema in declared.items()
        if isinstance(schema, Mapping) and "default" in schema
    }
    values.update({k: v for k, v in (job_variables or {}).items() if not is_unknown(v)})
    rendered = apply_values(template.get("job_configuration") or {}, values, environ={})
    return {"job_variables": values, "job_configuration": rendered}
