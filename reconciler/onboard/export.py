"""`reconcile import`, the pure part: an `ObservedState` in, the text of `prefect.yaml` and
`work-pools.yaml` out, written so that planning them against the same state changes nothing.

Deployments are grouped by entrypoint directory, then flow; a work-pool block or a schedule
that more than one deployment uses is written once under `definitions:` with an anchor. Each
object gets a comment saying where it came from (the source, credentials masked, and its
owner). Pools keep only what differs from their type's default base job template
(reconciler/prefect_rules/job_templates.py): nothing, `job_variables` (defaults), or the whole
template. Secrets are replaced by placeholders (reconciler/onboard/secrets.py).

Fields the plan works out from the flow's code (flow name, parameter schema, path) are not
written: the files are meant to sit in the repository that holds the flows."""

from __future__ import annotations

import copy
import fnmatch
import posixpath
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.errors import UserError
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Owner, Resource, canonical_json
from reconciler.model.specs import DEFAULT_QUEUE
from reconciler.onboard.secrets import Needed, SecretRule
from reconciler.onboard.yaml_emit import Alias, Anchored, Commented, emit
from reconciler.prefect_rules.job_templates import (
    POOL_TYPES,
    JobTemplateError,
    default_base_job_template,
    with_job_variable_defaults,
)
from reconciler.prefect_rules.schedules import ScheduleError, normalize_schedule

DEFAULT_QUEUE_DESCRIPTION = "The work pool's default queue."


@dataclass(frozen=True)
class ImportFilters:
    pools: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    deployments: tuple[str, ...] = ()
    """Globs matched against `flow/name` and against `name`."""

    def check(self) -> None:
        for glob in self.deployments:
            if not glob.strip() or glob.count("[") != glob.count("]"):
                raise UserError(
                    f"--deployment {glob!r} is not a usable glob",
                    "use shell-style patterns such as 'etl/*' or '*-nightly' (brackets must close)",
                )

    def keeps(self, deployment: Resource) -> bool:
        spec = deployment.deployment_spec()
        if self.pools and spec.work_pool_name not in self.pools:
            return False
        if self.tags and not set(self.tags) & set(spec.tags):
            return False
        return not self.deployments or any(
            fnmatch.fnmatchcase(deployment.key, g) or fnmatch.fnmatchcase(spec.name, g)
            for g in self.deployments
        )

    @property
    def narrows_deployments(self) -> bool:
        return bool(self.tags or self.deployments)


@dataclass
class ImportResult:
    prefect_files: dict[str, str]
    """prefect.yaml texts by path relative to the output directory: one per directory the
    deployments were declared in (their `path`), so entrypoints stay relative to it."""
    pools_yaml: str | None
    deployments: list[str]
    pools: list[str]
    queues: list[str]
    needed: list[Needed]
    notes: list[str] = field(default_factory=list)
    entry_files: list[str] = field(default_factory=list)
    """The flows' files, relative to the output directory (where planning will look)."""
    secret_texts: list[str] = field(default_factory=list)


def export_state(
    observed: ObservedState, source: str, filters: ImportFilters = ImportFilters()
) -> ImportResult:
    """The files for the objects of `observed` that `filters` keep. `source` names where the
    state came from (credentials already masked); it goes into the comments."""
    filters.check()
    rule = SecretRule(observed.blocks)
    notes: list[str] = []
    deployments = sorted(
        (d for d in observed.of_kind(Kind.DEPLOYMENT) if filters.keeps(d)),
        key=_group_order,
    )
    pool_names = _pools_to_write(observed, filters, deployments)
    pools_yaml, pool_keys, queue_keys = _pools_file(observed, source, pool_names, rule, notes)
    by_directory: dict[str, list[Resource]] = defaultdict(list)
    for deployment in deployments:
        by_directory[_directory(deployment, notes)].append(deployment)
    prefect_files = {
        posixpath.join(directory, "prefect.yaml") if directory else "prefect.yaml": _prefect_file(
            members, source, rule, notes
        )
        for directory, members in sorted(by_directory.items())
    }
    return ImportResult(
        prefect_files=prefect_files,
        pools_yaml=pools_yaml,
        deployments=[d.key for d in deployments],
        pools=pool_keys,
        queues=queue_keys,
        needed=sorted(rule.needed),
        notes=notes,
        secret_texts=rule.secret_texts,
        entry_files=sorted(
            {
                posixpath.join(directory, d.deployment_spec().entrypoint.split(":", 1)[0])
                for directory, members in by_directory.items()
                for d in members
                if d.deployment_spec().entrypoint
            }
        ),
    )


def _directory(deployment: Resource, notes: list[str]) -> str:
    """Where the deployment's prefect.yaml goes: its `path` when that is a directory inside
    the repository, else the top."""
    path = deployment.deployment_spec().path or ""
    clean = posixpath.normpath(path) if path else ""
    if clean in ("", "."):
        return ""
    if posixpath.isabs(clean) or clean.startswith(".."):
        notes.append(
            f'deployment {deployment.key}: its path "{path}" is not inside a repository; its '
            "entrypoint is written relative to the top-level prefect.yaml"
        )
        return ""
    return clean


def _group_order(deployment: Resource) -> tuple[str, str, str]:
    spec = deployment.deployment_spec()
    return (_entry_dir(spec.entrypoint), spec.flow_name, spec.name)


def _entry_dir(entrypoint: str) -> str:
    return posixpath.dirname(entrypoint.split(":", 1)[0]) or "."


def _pools_to_write(
    observed: ObservedState, filters: ImportFilters, deployments: list[Resource]
) -> list[str]:
    every = sorted(p.key for p in observed.of_kind(Kind.WORK_POOL))
    if filters.pools:
        return [p for p in every if p in filters.pools]
    if filters.narrows_deployments:
        used = {d.deployment_spec().work_pool_name for d in deployments}
        return [p for p in every if p in used]
    return every


def _origin(source: str, resource: Resource) -> str:
    owner = resource.owner
    return f"from {source}" + (f", owned by {_owner_text(owner)}" if owner else ", made by hand")


def _owner_text(owner: Owner) -> str:
    return f"{owner.repo} ({owner.file})"


# --- work-pools.yaml ------------------------------------------------------------------------


def _pools_file(
    observed: ObservedState,
    source: str,
    names: list[str],
    rule: SecretRule,
    notes: list[str],
) -> tuple[str | None, list[str], list[str]]:
    queues_by_pool: dict[str, list[Resource]] = defaultdict(list)
    for queue in observed.of_kind(Kind.WORK_QUEUE):
        queues_by_pool[queue.queue_spec().pool].append(queue)
    written: list[Any] = []
    pool_keys: list[str] = []
    queue_keys: list[str] = []
    for name in names:
        resource = observed.get(Kind.WORK_POOL, name)
        assert resource is not None
        spec = resource.pool_spec()
        if spec.type not in POOL_TYPES:
            notes.append(
                f'work pool "{name}" has type "{spec.type}", which work-pools.yaml does not '
                f"declare ({', '.join(POOL_TYPES)}): left out; its deployments still name it"
            )
            continue
        entry: dict[str, Any] = {"name": name, "type": spec.type}
        if spec.description is not None:
            entry["description"] = spec.description
        if spec.paused:
            entry["paused"] = True
        if spec.concurrency_limit is not None:
            entry["concurrency_limit"] = spec.concurrency_limit
        entry.update(_reduced_template(spec.type, dict(spec.base_job_template), rule, name))
        queues = sorted(
            (q for q in queues_by_pool.get(name, []) if _declared_with(q, resource)),
            key=lambda q: q.queue_spec().priority,
        )
        entry["queues"] = [_queue_entry(q) for q in queues]
        queue_keys.extend(q.key for q in queues)
        pool_keys.append(name)
        written.append(Commented((f"work pool {name}: {_origin(source, resource)}",), entry))
    if not written:
        return None, pool_keys, queue_keys
    header = (
        f"Imported by `reconcile import` from {source}.",
        "Pools and their queues; base job templates keep only what differs from the type's",
        "default (job_variables are defaults of the template's variables).",
    )
    return emit({"work_pools": written}, header), pool_keys, queue_keys


def _declared_with(queue: Resource, pool: Resource) -> bool:
    """Whether the queue belongs in the pools file: not a queue a deployment made by naming it
    (owned by a prefect.yaml while its pool is owned by a pools file). Such a queue is left
    out: the imported deployment names it, and a plan leaves an existing one alone."""
    return queue.owner is None or pool.owner is None or queue.owner == pool.owner


def _reduced_template(
    pool_type: str, template: dict[str, Any], rule: SecretRule, pool: str
) -> dict[str, Any]:
    """{} when the template is the type's default; {"job_variables": ...} when only variable
    defaults differ; else {"base_job_template": the whole template}."""
    where = f"work pool {pool}"
    default = default_base_job_template(pool_type)
    if canonical_json(template) == canonical_json(default) or not template:
        return {}
    properties = (template.get("variables") or {}).get("properties") or {}
    default_properties = (default.get("variables") or {}).get("properties") or {}
    defaults = {
        key: schema["default"]
        for key, schema in properties.items()
        if isinstance(schema, dict)
        and "default" in schema
        and _default_of(default_properties.get(key)) != canonical_json(schema["default"])
    }
    try:
        rebuilt = with_job_variable_defaults(default, defaults) if defaults else None
    except JobTemplateError:
        rebuilt = None
    if rebuilt is not None and canonical_json(rebuilt) == canonical_json(template):
        return {"job_variables": rule.scrub(defaults, where)}
    return {"base_job_template": rule.scrub(template, where)}


def _default_of(schema: Any) -> str | None:
    if isinstance(schema, dict) and "default" in schema:
        return canonical_json(schema["default"])
    return None


def _queue_entry(queue: Resource) -> dict[str, Any]:
    spec = queue.queue_spec()
    entry: dict[str, Any] = {"name": spec.name}
    description = spec.description
    if description is not None and not (
        spec.name == DEFAULT_QUEUE and description == DEFAULT_QUEUE_DESCRIPTION
    ):
        entry["description"] = description
    entry["priority"] = spec.priority
    if spec.concurrency_limit is not None:
        entry["concurrency_limit"] = spec.concurrency_limit
    if spec.paused:
        entry["paused"] = True
    return entry


# --- prefect.yaml ---------------------------------------------------------------------------


def _prefect_file(
    deployments: list[Resource], source: str, rule: SecretRule, notes: list[str]
) -> str:
    bodies = [_deployment_entry(d, rule, notes) for d in deployments]
    pool_anchors = _anchors([b.get("work_pool") for b in bodies], "pool", _pool_anchor_name)
    schedule_anchors = _anchors(
        [s for b in bodies for s in b.get("schedules", [])], "schedule", _schedule_anchor_name
    )
    shared_pull = _shared_pull(bodies)
    first: dict[str, Any] = {}
    for body in bodies:
        for value in [body.get("work_pool"), *body.get("schedules", [])]:
            if value is not None:
                first.setdefault(canonical_json(value), copy.deepcopy(value))
    entries: list[Any] = []
    group: tuple[str, str] | None = None
    for resource, body in zip(deployments, bodies, strict=True):
        spec = resource.deployment_spec()
        if "work_pool" in body:
            anchor = pool_anchors.get(canonical_json(body["work_pool"]))
            if anchor:
                body["work_pool"] = Alias(anchor)
        if "schedules" in body:
            body["schedules"] = [
                Alias(schedule_anchors[key]) if key in schedule_anchors else s
                for s in body["schedules"]
                for key in [canonical_json(s)]
            ]
        if shared_pull is not None:
            body.pop("pull", None)
        comments = [f"deployment {resource.key}: {_origin(source, resource)}"]
        here = (_entry_dir(spec.entrypoint), spec.flow_name)
        if here != group:
            group = here
            comments.insert(0, f"--- flow {spec.flow_name} ({here[0]}/)")
        entries.append(Commented(tuple(comments), body))
    document: dict[str, Any] = {"prefect-version": "3.9.1"}
    definitions: dict[str, Any] = {}
    if pool_anchors:
        definitions["work_pools"] = {
            name: Anchored(name, first[key]) for key, name in pool_anchors.items()
        }
    if schedule_anchors:
        definitions["schedules"] = {
            name: Anchored(name, first[key]) for key, name in schedule_anchors.items()
        }
    if definitions:
        document["definitions"] = definitions
    if shared_pull is not None:
        document["pull"] = shared_pull
    document["deployments"] = entries
    header = (
        f"Imported by `reconcile import` from {source}.",
        "Flow names, parameter schemas and paths are read from the flows' code when planned.",
    )
    return emit(document, header)


def _anchors(values: list[Any], prefix: str, namer: Any) -> dict[str, str]:
    """Canonical JSON of each value written more than once -> its anchor name."""
    counts: dict[str, int] = defaultdict(int)
    firsts: dict[str, Any] = {}
    for value in values:
        if value is None:
            continue
        key = canonical_json(value)
        counts[key] += 1
        firsts.setdefault(key, value)
    names: dict[str, str] = {}
    taken: set[str] = set()
    for key, count in counts.items():
        if count < 2:
            continue
        base = f"{prefix}_{namer(firsts[key])}"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        names[key] = name
    return names


def _slug(text: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()
    return cleaned[:40] or "x"


def _pool_anchor_name(block: Mapping[str, Any]) -> str:
    return _slug(str(block.get("name", "pool")))


def _schedule_anchor_name(schedule: Mapping[str, Any]) -> str:
    for kind in ("cron", "interval", "rrule"):
        if kind in schedule:
            return _slug(f"{kind}_{schedule[kind]}")
    return "schedule"


def _shared_pull(bodies: list[dict[str, Any]]) -> list[Any] | None:
    pulls = {canonical_json(b.get("pull")) for b in bodies}
    if len(pulls) == 1 and bodies and bodies[0].get("pull"):
        shared: list[Any] = bodies[0]["pull"]
        return shared
    return None


def _deployment_entry(resource: Resource, rule: SecretRule, notes: list[str]) -> dict[str, Any]:
    spec = resource.deployment_spec()
    where = f"deployment {resource.key}"
    body: dict[str, Any] = {"name": spec.name, "entrypoint": spec.entrypoint}
    if not spec.entrypoint:
        notes.append(
            f"{where}: it has no entrypoint (made through the API?); add `entrypoint: "
            "FILE:FUNCTION` before planning"
        )
    if spec.description is not None:
        body["description"] = spec.description
    if spec.version is not None:
        body["version"] = spec.version
    if spec.tags:
        body["tags"] = list(spec.tags)
    if spec.parameters:
        body["parameters"] = rule.scrub(dict(spec.parameters), where)
    if not spec.enforce_parameter_schema:
        body["enforce_parameter_schema"] = False
    if spec.paused:
        body["paused"] = True
    if spec.concurrency_limit is not None:
        options = resource.view().get("concurrency_options")
        if isinstance(options, Mapping) and options:
            body["concurrency_limit"] = {"limit": spec.concurrency_limit, **options}
        else:
            body["concurrency_limit"] = spec.concurrency_limit
    if spec.schedules:
        body["schedules"] = [_schedule_entry(s.raw, rule, where, notes) for s in spec.schedules]
    if not spec.work_pool_name:
        notes.append(
            f"{where}: it has no work pool (served by its own process?); prefect.yaml needs "
            "one for a worker to run it: add `work_pool:` before planning"
        )
    else:
        pool: dict[str, Any] = {"name": spec.work_pool_name}
        if spec.work_queue_name:
            pool["work_queue_name"] = spec.work_queue_name
        if spec.job_variables:
            sensitive = frozenset(spec.sensitive_job_variables)
            pool["job_variables"] = rule.scrub(dict(spec.job_variables), where, sensitive)
        body["work_pool"] = pool
    if spec.triggers:
        body["triggers"] = list(spec.triggers)
    # Always written, `pull: []` too: an absent `pull` would take the file's or the default.
    body["pull"] = [rule.scrub(step.to_json(), where) for step in spec.pull_steps]
    for key in sorted(spec.extra):
        if key not in ("concurrency_options",) and spec.extra[key] is not None:
            notes.append(f'{where}: field "{key}" has no place in prefect.yaml; left out')
    return body


_SCHEDULE_KEYS = {
    "cron": ("cron", "timezone", "day_or"),
    "interval": ("interval_seconds", "anchor_date", "timezone"),
    "rrule": ("rrule", "timezone"),
}


def _schedule_entry(
    raw: Mapping[str, Any], rule: SecretRule, where: str, notes: list[str]
) -> dict[str, Any]:
    kind = str(raw.get("type"))
    entry: dict[str, Any] = {}
    for key in _SCHEDULE_KEYS.get(kind, ()):
        value = raw.get(key)
        if value is None or (key == "day_or" and value is True):
            continue
        entry["interval" if key == "interval_seconds" else key] = value
    if raw.get("active") is False:
        entry["active"] = False
    if raw.get("parameters"):
        entry["parameters"] = rule.scrub(dict(raw["parameters"]), where)
    if raw.get("slug"):
        entry["slug"] = raw["slug"]
    if raw.get("replaces"):
        entry["replaces"] = raw["replaces"]
    try:
        same = canonical_json(normalize_schedule(entry)) == canonical_json(dict(raw))
    except ScheduleError:
        same = False
    if not same:
        notes.append(f"{where}: a {kind} schedule may not read back exactly as stored")
    return entry
