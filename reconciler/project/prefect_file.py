"""Load one prefect.yaml the way Prefect 3.9's `prefect deploy --all` reads it, but loudly.

Stage "load + validate" of the pipeline for one file: YAML with positions, our JSON Schema,
then Prefect's loading rules (single-mapping steps wrapped in a list, defaults merged into each
deployment, the legacy singular `schedule`, and how deployment-level build/push/pull replace
the top-level lists). The result is one `DeploymentDraft` per deployment, still untemplated.
Where Prefect skips an invalid file silently, we return errors with file:line.
"""

from __future__ import annotations

import copy
import datetime
import marshal
import posixpath
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.diagnostics import Diagnostic, error, warning
from reconciler.prefect_rules.schedules import is_empty_schedule
from reconciler.prefect_rules.triggers import parse_triggers
from reconciler.prefect_rules.validation import validate_document
from reconciler.prefect_rules.yamlload import LoadedDocument, Path, YamlLoadError, load_yaml
from reconciler.project.declarations import placed as placed_problems
from reconciler.steps.spec import PlacedStep, step_from_mapping, step_problem

SCHEMA = "prefect.schema.json"

DEPLOYMENT_DEFAULTS: dict[str, Any] = {
    "name": None,
    "version": None,
    "tags": [],
    "concurrency_limit": None,
    "description": None,
    "flow_name": None,
    "entrypoint": None,
    "parameters": {},
    "work_pool": {"name": None, "work_queue_name": None, "job_variables": {}},
}


@dataclass
class DeploymentDraft:
    """One deployment after Prefect's loading rules, before templating and flow reading."""

    index: int
    config: dict[str, Any]
    build: list[PlacedStep] = field(default_factory=list)
    push: list[PlacedStep] = field(default_factory=list)
    pull: list[PlacedStep] | None = None  # None: nothing configured
    path: Path = ()
    legacy_schedule: bool = False  # `schedules` came from the singular `schedule:` key

    def at(self, *keys: str | int) -> Path:
        return (*self.path, *keys)


@dataclass
class PrefectFile:
    path: str
    document: LoadedDocument
    deployments: list[DeploymentDraft]
    has_placeholders: bool = True
    """False when the file has no `{{` at all: every templating pass can be skipped."""
    invalid: bool = False
    """The file has errors: its deployments are read only to report theirs too (all at
    once); nothing built from it may be applied."""

    @property
    def base_dir(self) -> str:
        """Entrypoints are relative to the file's directory, as when `prefect deploy` runs there."""
        return posixpath.dirname(self.path)


def parse_prefect_file(
    content: bytes, path: str, *, strict: bool = False, display: str | None = None
) -> tuple[PrefectFile | None, list[Diagnostic]]:
    """Check the bytes of one prefect.yaml (pure: a worker process may run it)."""
    try:
        document = load_yaml(content, display or path)
    except YamlLoadError as exc:
        return None, [exc.diagnostic]
    diagnostics = list(document.diagnostics)
    if not isinstance(document.data, dict):
        found = "empty" if document.data is None else f"a {type(document.data).__name__}"
        diagnostics.append(
            error(
                f"the file is {found}; a prefect.yaml is a mapping with a `deployments` list",
                document.location(()),
                "Prefect would skip this file without a word; add `deployments:` or remove it",
            )
        )
        return None, diagnostics
    diagnostics.extend(validate_document(document, SCHEMA, strict=strict))
    if "deployments" not in document.data:
        diagnostics.append(_no_deployments(document))
    schema_errors = any(d.is_error for d in diagnostics)
    if schema_errors and not isinstance(document.data.get("deployments"), list):
        return None, diagnostics
    # With schema errors, the deployments are still read, so that every error of the file is
    # reported at once (a misspelt schedule key and a misspelt parameter together); where the
    # shape is too broken to read further, the schema's errors are all there is.
    try:
        drafts, problems = _drafts(document)
    except Exception:
        if not schema_errors:
            raise
        return None, diagnostics
    diagnostics.extend(_new_problems(problems, diagnostics))
    if any(d.is_error for d in diagnostics):
        return PrefectFile(path, document, drafts, b"{{" in content, invalid=True), diagnostics
    return PrefectFile(path, document, drafts, b"{{" in content), diagnostics


def _drafts(document: LoadedDocument) -> tuple[list[DeploymentDraft], list[Diagnostic]]:
    data = document.data
    actions = {key: _wrap(_json_dates(data.get(key))) for key in ("build", "push", "pull")}
    top = _TopSteps(actions)
    drafts = []
    diagnostics: list[Diagnostic] = []
    for index, raw in enumerate(data["deployments"]):
        draft, problems = _draft(index, raw, top, document)
        diagnostics.extend(problems)
        if draft is not None:
            drafts.append(draft)
    reported: set[Path] = set()  # a top-level step shared by many deployments is reported once
    for draft in drafts:
        diagnostics.extend(_step_name_problems(draft, document, reported))
        diagnostics.extend(_trigger_problems(draft, document))
    return drafts, diagnostics


def _new_problems(found: list[Diagnostic], known: list[Diagnostic]) -> list[Diagnostic]:
    """`found`, without the errors at a place an error of `known` already points to (one
    mistake, one message)."""
    places = {(d.location.line, d.location.column) for d in known if d.is_error and d.location}
    return [
        d
        for d in found
        if not (d.is_error and d.location and (d.location.line, d.location.column) in places)
    ]


def _trigger_problems(draft: DeploymentDraft, document: LoadedDocument) -> list[Diagnostic]:
    """The deployment's `triggers:` checked by Prefect's rules (prefect_rules/triggers.py):
    unknown keys (with "did you mean"), bad durations, templates that do not parse."""
    raw = draft.config.get("triggers")
    if not isinstance(raw, list):
        return []
    _, problems = parse_triggers(str(draft.config.get("name") or draft.index), raw)
    return placed_problems(document, draft.at("triggers"), problems)


def _json_dates(value: Any) -> Any:
    """A copy in which dates YAML read from unquoted text are ISO strings, as Prefect's JSON
    dump of the config makes them (only fields typed "any", such as parameters, can hold one).
    Without a date (marshal refuses dates), the copy is made by marshal, in C."""
    try:
        return marshal.loads(marshal.dumps(value))
    except ValueError:
        return _iso_dates(value)


def _iso_dates(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _iso_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso_dates(v) for v in value]
    return value


_DEPLOYMENT_KEYS = ("entrypoint", "work_pool", "schedule", "schedules", "parameters", "flow_name")


def _no_deployments(document: LoadedDocument) -> Diagnostic:
    """Prefect deploys one empty configuration for such a file and fails; we say so here."""
    misplaced = [key for key in _DEPLOYMENT_KEYS if key in document.data]
    hint = (
        f"{', '.join(misplaced)} belong inside an item of a `deployments:` list"
        if misplaced
        else "add `deployments:` with one item per deployment (name, entrypoint, work_pool)"
    )
    return error(
        "the file has no `deployments` list: `prefect deploy --all` would deploy one empty "
        'configuration and fail with "An entrypoint must be provided"',
        document.location(()),
        f"{hint}; write `deployments: []` to declare no deployments on purpose",
    )


def _wrap(value: Any) -> Any:
    """A single non-empty step mapping means a one-step list (`{}` and null stay as they are)."""
    if isinstance(value, dict) and value:
        return [value]
    return value


def _draft(
    index: int, raw: dict[str, Any], top: _TopSteps, document: LoadedDocument
) -> tuple[DeploymentDraft | None, list[Diagnostic]]:
    path: Path = ("deployments", index)
    config = _json_dates(raw)
    for key, default in DEPLOYMENT_DEFAULTS.items():
        if key not in config:
            config[key] = None if default is None else copy.deepcopy(default)
        elif key == "work_pool" and isinstance(config[key], dict):
            for sub, sub_default in default.items():
                if sub not in config[key]:
                    config[key][sub] = None if sub_default is None else copy.deepcopy(sub_default)
    if config["work_pool"] is None:
        return None, [
            error(
                "work_pool is empty; it needs at least a `name`",
                document.location((*path, "work_pool")),
                "write `work_pool: {name: <pool>}`",
            )
        ]
    legacy = config.pop("schedule", None)
    if not is_empty_schedule(legacy) and "schedules" in config:
        return None, [
            error(
                "both `schedule` and `schedules` are given; Prefect refuses this",
                document.key_location((*path, "schedule")),
                "move the schedule into the `schedules` list",
            )
        ]
    draft = DeploymentDraft(index, config, path=path)
    if isinstance(legacy, dict) and not is_empty_schedule(legacy):
        config["schedules"] = [legacy]
        draft.legacy_schedule = True
    for kind in ("build", "push", "pull"):
        setattr(draft, kind, _effective_steps(kind, raw, top, path))
    return draft, []


class _TopSteps:
    """The file's top-level build, push and pull lists, placed once for all its deployments
    (placed steps are immutable: the deployments that use a list share them)."""

    def __init__(self, actions: dict[str, Any]) -> None:
        self.actions = actions
        self._placed: dict[str, list[PlacedStep]] = {}

    def written(self, kind: str) -> Any:
        return self.actions.get(kind)

    def placed(self, kind: str) -> list[PlacedStep]:
        if kind not in self._placed:
            self._placed[kind] = _place(self.actions.get(kind), (kind,))
        return list(self._placed[kind])


def _effective_steps(
    kind: str, raw: dict[str, Any], top: _TopSteps, path: Path
) -> list[PlacedStep] | None:
    """Prefect's replacement rules (docs/design-notes.md#step-lists)."""
    own = _wrap(raw.get(kind))
    if kind == "build":
        placed = _place(own, (*path, kind)) if kind in raw else top.placed(kind)
        return placed or []
    if kind == "push":
        placed = _place(own, (*path, kind)) if own else top.placed(kind)
        return placed or []
    effective = own if kind in raw else top.written(kind)
    if effective == []:
        return []  # explicit: no pull steps
    if own:
        return _place(own, (*path, kind))
    if top.written(kind):
        return top.placed(kind)
    return None


def _place(steps: Any, where: Path) -> list[PlacedStep]:
    if not isinstance(steps, list):
        return []
    return [
        PlacedStep(step_from_mapping(item), (*where, i))
        for i, item in enumerate(steps)
        if isinstance(item, dict) and item
    ]


def _step_name_problems(
    draft: DeploymentDraft, document: LoadedDocument, reported: set[Path]
) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    sections = (("build", draft.build), ("push", draft.push), ("pull", draft.pull or []))
    for section, steps in sections:
        for placed in steps:
            if placed.path in reported:
                continue
            reported.add(placed.path)
            problem = step_problem(placed.step, section)
            if problem:
                where = document.key_location((*placed.path, placed.step.name))
                report = error if problem.is_error else warning
                found.append(report(problem.message, where, problem.hint))
    return found
