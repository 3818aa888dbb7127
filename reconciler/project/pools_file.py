"""Load `work-pools.yaml`, our file for declaring work pools and queues beside prefect.yaml.

Stage "load + validate" for pools. prefect.yaml has no place for pools, so they live in a file
of ours (schema: schemas/work-pools.schema.json):

    work_pools:
      - name: etl
        type: process             # process | docker | kubernetes (Prefect's worker runs it)
        concurrency_limit: 4
        job_variables: {env: {LOG_LEVEL: INFO}}   # defaults over the type's base job template
        queues:
          - {name: critical, priority: 1, concurrency_limit: 2}

Every pool gets a `default` queue, as in Prefect. Queues without a priority take the first
free number, in the order written.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from reconciler.core.diagnostics import Diagnostic, error
from reconciler.prefect_rules.job_templates import (
    JobTemplateError,
    default_base_job_template,
    template_problems,
    with_job_variable_defaults,
)
from reconciler.prefect_rules.yamlload import LoadedDocument, Path
from reconciler.project.declarations import declared_twice, load_our_file
from reconciler.sources.base import (
    Snapshot,
)

SCHEMA = "work-pools.schema.json"
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class PoolDeclaration:
    spec: dict[str, Any]
    queues: tuple[dict[str, Any], ...]
    path: Path


@dataclass
class PoolsFile:
    path: str
    document: LoadedDocument
    pools: list[PoolDeclaration]


def load_pools_file(
    snapshot: Snapshot, path: str, *, strict: bool = False, display: str | None = None
) -> tuple[PoolsFile | None, list[Diagnostic]]:
    document, diagnostics = load_our_file(snapshot, path, display, SCHEMA, "work_pools")
    if document is None:
        return None, diagnostics
    pools = []
    seen: dict[str, Path] = {}
    for index, raw in enumerate(document.data["work_pools"]):
        at: Path = ("work_pools", index)
        name = raw["name"]
        if twice := declared_twice(document, seen, "work pool", name, at):
            diagnostics.append(twice)
            continue
        declaration, problems = _declaration(raw, at, document)
        diagnostics.extend(problems)
        if declaration is not None:
            pools.append(declaration)
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    return PoolsFile(path, document, pools), diagnostics


def _declaration(
    raw: dict[str, Any], at: Path, document: LoadedDocument
) -> tuple[PoolDeclaration | None, list[Diagnostic]]:
    problems: list[Diagnostic] = []
    template = copy.deepcopy(raw.get("base_job_template")) or default_base_job_template(raw["type"])
    for problem in template_problems(template):
        problems.append(error(problem, document.location((*at, "base_job_template"))))
    if raw.get("job_variables"):
        try:
            template = with_job_variable_defaults(template, raw["job_variables"])
        except JobTemplateError as exc:
            problems.append(error(str(exc), document.location((*at, "job_variables"))))
    queues, queue_problems = _queues(raw["name"], raw.get("queues") or [], at, document)
    problems.extend(queue_problems)
    if problems:
        return None, problems
    spec = {
        "name": raw["name"],
        "type": raw["type"],
        "description": raw.get("description"),
        "paused": bool(raw.get("paused", False)),
        "concurrency_limit": raw.get("concurrency_limit"),
        "base_job_template": template,
    }
    return PoolDeclaration(spec, tuple(queues), at), []


def _queues(
    pool: str, raw_queues: list[dict[str, Any]], at: Path, document: LoadedDocument
) -> tuple[list[dict[str, Any]], list[Diagnostic]]:
    problems: list[Diagnostic] = []
    by_name: dict[str, dict[str, Any]] = {}
    taken: dict[int, str] = {}
    for index, raw in enumerate(raw_queues):
        where = (*at, "queues", index)
        if raw["name"] in by_name:
            problems.append(
                error(f'queue "{raw["name"]}" is declared twice', document.location(where))
            )
            continue
        priority = raw.get("priority")
        if priority is not None:
            if priority in taken:
                problems.append(
                    error(
                        f'queues "{taken[priority]}" and "{raw["name"]}" both have priority '
                        f"{priority}",
                        document.location((*where, "priority")),
                        "give each queue of a pool its own priority (1 is served first)",
                    )
                )
            taken[priority] = raw["name"]
        by_name[raw["name"]] = raw
    if DEFAULT_QUEUE not in by_name:
        by_name = {DEFAULT_QUEUE: {"name": DEFAULT_QUEUE}, **by_name}
    queues = []
    for name, raw in by_name.items():
        priority = raw.get("priority")
        if priority is None:
            priority = next(p for p in range(1, len(by_name) + len(taken) + 2) if p not in taken)
            taken[priority] = name
        queues.append(
            {
                "pool": pool,
                "name": name,
                "description": raw.get("description")
                or ("The work pool's default queue." if name == DEFAULT_QUEUE else None),
                "priority": priority,
                "concurrency_limit": raw.get("concurrency_limit"),
                "paused": bool(raw.get("paused", False)),
            }
        )
    return queues, problems
