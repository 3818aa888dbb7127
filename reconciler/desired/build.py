"""Desired state: every file of every repository in this run, turned into Resources.

Pure stage between validation and planning. Inputs are the snapshots, the observed store state (for
variables, blocks and pools that already exist) and the environment; nothing else is read. For each
deployment it follows `prefect deploy`'s order (docs/design-notes.md#prefect-deploy-order):
variables, then the environment, then step outputs; it reads the flow with `ast`, checks parameters
against the flow's signature and job variables against the pool's schema, and reports every problem
of the run together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import jsonschema

    from reconciler.desired.build_cache import BlobSnapshot, BuildCache

from reconciler.core.diagnostics import Diagnostic, Location, error, warning
from reconciler.core.errors import UserError
from reconciler.core.masking import looks_secret
from reconciler.core.parallel import map_forked
from reconciler.desired.state import (
    AUTOMATIONS_FILE_NAME,
    DEFAULT_PREFECT_GLOB,
    POOLS_FILE_NAME,
    DesiredState,
    RepoScope,
    matches_glob,
)
from reconciler.model.observed import ObservedState
from reconciler.model.resources import (
    UNKNOWN_VALUE,
    Kind,
    Owner,
    Resource,
    deployment_key,
    queue_key,
)
from reconciler.model.specs import StepSpec, with_pull_step_positions
from reconciler.prefect_rules import sensitive
from reconciler.prefect_rules import templating as tpl
from reconciler.prefect_rules.job_templates import WORKER_POOL_TYPES, job_variable_problems
from reconciler.prefect_rules.parameters import NON_FINITE_HINT, check_storable
from reconciler.prefect_rules.schedules import ScheduleError, normalize_schedule
from reconciler.prefect_rules.validation import did_you_mean, show_value, type_name
from reconciler.prefect_rules.validation import prepare as prepare_validation
from reconciler.prefect_rules.yamlload import LoadedDocument, Path
from reconciler.project.automations_file import load_automations_file
from reconciler.project.flows import EntrypointError, FlowInfo, read_flow
from reconciler.project.pools_file import DEFAULT_QUEUE, load_pools_file
from reconciler.project.prefect_file import SCHEMA as PREFECT_SCHEMA
from reconciler.project.prefect_file import (
    DeploymentDraft,
    PrefectFile,
    parse_prefect_file,
)
from reconciler.sources.base import (
    LinkOutsideRepository,
    PathKind,
    Snapshot,
    link_diagnostic,
    read_following_links,
)
from reconciler.steps.default_pull import default_pull_steps
from reconciler.steps.spec import PlacedStep, is_prefect_step

_YAML_NON_FINITE_HINT = (
    "JSON has no Infinity or NaN: give a finite number, or quote the value ('.inf') to pass it "
    "as a string"
)
_BAD_NAME = re.compile(r"[/%&><]")
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
# What each step we know returns (docs/design-notes.md#builtin-steps and #docker-steps), unknown
# until a build runs. Prefect merges every output flat into the values later templates read,
# so `{{ image }}` works too.
_STEP_OUTPUTS: dict[str, tuple[str, ...]] = {
    "build_docker_image": ("image_name", "tag", "image", "image_id", "additional_tags"),
    "push_docker_image": ("image_name", "tag", "image", "additional_tags"),
    "run_shell_script": ("stdout", "stderr"),
    "pip_install_requirements": ("stdout", "stderr"),
    "git_clone": ("directory",),
    "set_working_directory": ("directory",),
    "pull_from_remote_storage": ("directory",),
    "pull_with_block": ("directory",),
    "push_to_s3": ("bucket", "folder"),
    "push_to_gcs": ("bucket", "folder"),
    "push_to_azure_blob_storage": ("container", "folder"),
}
# A custom step may return anything: any name a built-in step returns is taken as its output.
_ANY_STEP_OUTPUT = tuple(sorted({name for names in _STEP_OUTPUTS.values() for name in names}))


@dataclass(frozen=True)
class RepoInput:
    snapshot: Snapshot
    ref: str = "HEAD"
    prefect_glob: str = DEFAULT_PREFECT_GLOB


@dataclass(frozen=True)
class BuildOptions:
    environ: Mapping[str, str] = field(default_factory=dict)
    strict: bool = False
    build_outputs_known: bool = False
    """False (dry-run, or until steps run): values from build/push steps are unknown and shown
    as `(known after build)`. True with no outputs (`--skip-build`): they are removed with a
    warning, as Prefect does when no build ran."""
    step_outputs: Mapping[DraftKey, Mapping[str, Any]] = field(default_factory=dict)
    """What the build and push steps of each deployment returned, once they ran (apply)."""
    cache: BuildCache | None = None
    """Each file's result by git blob id, from earlier runs (reconciler/desired/build_cache.py)."""
    worker_types: frozenset[str] | None = frozenset(WORKER_POOL_TYPES)
    """Pool types the target's workers run: a declared pool of another type is a warning (our
    store: reconciler's worker runs process and docker). None: every type (a Prefect server,
    whose own workers run the pools)."""


DraftKey = tuple[str, str, int]
"""A deployment as written: (repository, prefect.yaml path, index in `deployments`)."""


@dataclass(frozen=True)
class BuildPlan:
    """The build and push steps a deployment needs, kept out of its spec: what apply runs."""

    deployment: str
    owner: Owner
    build: tuple[StepSpec, ...]
    push: tuple[StepSpec, ...]
    draft: DraftKey = ("", "", 0)
    steps: tuple[PlacedStep, ...] = ()
    document: LoadedDocument | None = None
    base_dir: str = ""


@dataclass
class BuildResult:
    desired: DesiredState | None
    diagnostics: list[Diagnostic]
    secrets: list[str]
    build_plans: list[BuildPlan]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def build_desired(
    repos: Sequence[RepoInput], observed: ObservedState, options: BuildOptions
) -> BuildResult:
    builder = _Builder(observed, options)
    for repo in repos:
        builder.add_repository(repo)
    return builder.finish()


@dataclass
class _Declared:
    """A declared object and where: the place is looked up only to report a duplicate (for a
    file parsed in another process, that means composing it again)."""

    resource: Resource
    document: LoadedDocument
    path: Path

    @property
    def where(self) -> Location:
        return self.document.location(self.path)


# Named tuples, not dataclasses: made by the thousand, pickled between processes, and cheaper
# to define at start-up.


class _FileJob(NamedTuple):
    """One prefect.yaml to read, and where in the run's diagnostics its reading problems go
    (after those of its repository's pools file, before the next repository's)."""

    snapshot: Snapshot
    path: str
    display: str
    content: bytes
    slot: int
    blob: str | None = None
    """Its git blob id, when its result may come from the cache (content is read on a miss)."""


class _BuiltDeployment(NamedTuple):
    """What building one deployment found; `_Builder.commit` adds it to the run, in order."""

    notes: list[Diagnostic]
    problems: list[Diagnostic]
    secrets: list[str]
    declared: _Declared | None = None
    build_plan: BuildPlan | None = None
    queue: tuple[str, str] = ("", "")


class _FileOutcome(NamedTuple):
    """A prefect.yaml read (its problems) and its deployments built."""

    problems: list[Diagnostic]
    deployments: list[_BuiltDeployment]
    reads: frozenset[str] = frozenset()
    """The other paths its build looked at (recorded only for the cache)."""


def _for_transfer(outcome: _FileOutcome) -> _FileOutcome:
    """The outcome, cheap to pickle: its document without node graph or values (a position is
    found by composing the file again, if a diagnostic ever needs one)."""
    light: dict[int, LoadedDocument] = {}

    def lighter(document: LoadedDocument) -> LoadedDocument:
        if id(document) not in light:
            light[id(document)] = dataclasses.replace(document.without_nodes(), data=None)
        return light[id(document)]

    for built in outcome.deployments:
        if built.declared is not None:
            built.declared.document = lighter(built.declared.document)
    return outcome._replace(
        deployments=[
            built._replace(
                build_plan=dataclasses.replace(
                    built.build_plan, document=lighter(built.build_plan.document)
                )
            )
            if built.build_plan is not None and built.build_plan.document is not None
            else built
            for built in outcome.deployments
        ]
    )


class _Builder:
    def __init__(self, observed: ObservedState, options: BuildOptions) -> None:
        self.observed = observed
        self.options = options
        self.diagnostics: list[Diagnostic] = []
        self.secrets: list[str] = list(observed.secret_values)
        self.scopes: list[RepoScope] = []
        self.pools: dict[str, _Declared] = {}
        self.queues: dict[str, _Declared] = {}
        self.automations: dict[str, _Declared] = {}
        self.deployments: dict[str, _Declared] = {}
        self.implicit: dict[str, Resource] = {}
        self.build_plans: list[BuildPlan] = []
        self.files: list[_FileJob] = []
        self._templates: dict[str, dict[str, Any] | None] = {}
        self._flows: dict[tuple[int, str, str], FlowInfo | EntrypointError] = {}
        self._parameter_validators: dict[int, jsonschema.protocols.Validator] = {}
        self._noted: set[Diagnostic] = set()
        self._type_checks: dict[int, tuple[dict[str, Any], dict[str, _TypeChecks]]] = {}
        self._flow_reads: dict[tuple[int, str, str], set[str]] = {}

    # -- files ----------------------------------------------------------------------------

    def add_repository(self, repo: RepoInput) -> None:
        snapshot = repo.snapshot
        files = list(snapshot.files())
        prefect_files = [f for f in files if matches_glob(f, repo.prefect_glob)]
        pool_files = [f for f in files if matches_glob(f, POOLS_FILE_NAME)]
        automation_files = [f for f in files if matches_glob(f, AUTOMATIONS_FILE_NAME)]
        self.scopes.append(
            RepoScope(
                snapshot.repo_id,
                snapshot.display_root,
                repo.ref,
                snapshot.commit,
                tuple(sorted([*prefect_files, *pool_files, *automation_files])),
                repo.prefect_glob,
            )
        )
        if not prefect_files:
            self.diagnostics.append(
                warning(
                    f"no file matching {repo.prefect_glob!r} in {snapshot.display_root} at "
                    f"{repo.ref}: no deployments are read from it",
                    None,
                    "commit a prefect.yaml, or check the pattern given to --prefect-file",
                )
            )
        for path in pool_files:
            self._add_pools_file(snapshot, path)
        for path in automation_files:
            self._add_automations_file(snapshot, path)
        cacheable = self._cacheable(snapshot)
        for path in prefect_files:  # read and built in `finish`, once every pool is known
            entry = cacheable.entry(path) if cacheable is not None else None
            if entry is not None and entry[0] is PathKind.FILE:
                job = _FileJob(snapshot, path, _display(snapshot, path), b"", len(self.diagnostics))
                self.files.append(job._replace(blob=entry[1]))
                continue
            try:
                content = read_following_links(snapshot, path)
            except LinkOutsideRepository as exc:
                self.diagnostics.append(link_diagnostic(exc, _display(snapshot, path)))
                continue
            self.files.append(
                _FileJob(snapshot, path, _display(snapshot, path), content, len(self.diagnostics))
            )

    def _add_pools_file(self, snapshot: Snapshot, path: str) -> None:
        loaded, problems = load_pools_file(snapshot, path, display=_display(snapshot, path))
        self.diagnostics.extend(problems)
        if loaded is None:
            return
        owner = Owner(snapshot.repo_id, path)
        for declaration in loaded.pools:
            self._warn_unrun_type(declaration.spec, loaded.document, declaration.path)
            name_path: Path = (*declaration.path, "name")
            pool = Resource.of(
                Kind.WORK_POOL, declaration.spec["name"], declaration.spec, owner, snapshot.commit
            )
            self._declare(self.pools, _Declared(pool, loaded.document, name_path))
            for queue in declaration.queues:
                key = queue_key(queue["pool"], queue["name"])
                resource = Resource.of(Kind.WORK_QUEUE, key, queue, owner, snapshot.commit)
                self._declare(self.queues, _Declared(resource, loaded.document, name_path))

    def _warn_unrun_type(self, spec: dict[str, Any], document: LoadedDocument, at: Path) -> None:
        """A pool no worker of the target runs is applied, but its runs would wait forever."""
        runs = self.options.worker_types
        if runs is None or spec["type"] in runs:
            return
        self.diagnostics.append(
            warning(
                f'work pool "{spec["name"]}" is of type {spec["type"]}, which reconciler\'s '
                f"worker does not run ({', '.join(sorted(runs))}): it is applied, but its flow "
                "runs wait until a worker for that type takes them",
                document.location((*at, "type")),
                f"apply into a Prefect server (`--store prefect+http://HOST/api`) and run "
                f"Prefect's {spec['type']} worker there; or give the pool a type reconciler's "
                "worker runs",
            )
        )

    def _add_automations_file(self, snapshot: Snapshot, path: str) -> None:
        loaded, problems = load_automations_file(snapshot, path, display=_display(snapshot, path))
        self.diagnostics.extend(problems)
        if loaded is None:
            return
        owner = Owner(snapshot.repo_id, path)
        for declaration in loaded.automations:
            name = declaration.spec["name"]
            resource = Resource.of(Kind.AUTOMATION, name, declaration.spec, owner, snapshot.commit)
            where: Path = (*declaration.path, "name")
            self._declare(self.automations, _Declared(resource, loaded.document, where))

    def _declare(self, table: dict[str, _Declared], declared: _Declared) -> None:
        resource = declared.resource
        first = table.get(resource.key)
        if first is not None:
            self.diagnostics.append(
                error(
                    f'{resource.kind.label} "{resource.key}" is declared twice: here and at '
                    f"{first.where}",
                    declared.where,
                    "keep one declaration",
                )
            )
            return
        table[resource.key] = declared

    # -- deployments ----------------------------------------------------------------------

    def finish(self) -> BuildResult:
        cached = self._from_cache()
        self.files = [
            job
            if job.blob is None or i in cached
            else job._replace(content=job.snapshot.read(job.path))
            for i, job in enumerate(self.files)
        ]
        todo = [job for i, job in enumerate(self.files) if i not in cached]
        if todo:
            prepare_validation(PREFECT_SCHEMA)
        fresh = iter(
            map_forked(
                todo,
                self._read_and_build,
                size=lambda job: len(job.content),
                for_transfer=_for_transfer,
            )
        )
        outcomes = [cached[i] if i in cached else next(fresh) for i in range(len(self.files))]
        self._to_cache(outcomes, cached)
        self._insert_reading_problems(outcomes)
        for outcome in outcomes:
            for built in outcome.deployments:
                self.commit(built)
        if any(d.is_error for d in self.diagnostics):
            return BuildResult(None, self.diagnostics, self.secrets, self.build_plans)
        resources = [
            *(d.resource for d in self.pools.values()),
            *(d.resource for d in self.queues.values()),
            *self.implicit.values(),
            *(d.resource for d in self.deployments.values()),
            *(d.resource for d in self.automations.values()),
        ]
        resources.sort(key=lambda r: r.sort_key)
        desired = DesiredState(
            tuple(resources),
            tuple(self.scopes),
            tuple(d for d in self.diagnostics if not d.is_error),
            frozenset((Kind.WORK_QUEUE, key) for key in self.implicit),
        )
        return BuildResult(desired, self.diagnostics, self.secrets, self.build_plans)

    def _read_and_build(self, job: _FileJob) -> _FileOutcome:
        """Read one prefect.yaml and build its deployments (pure: a worker process may run it,
        with this builder as it was when the workers started)."""
        loaded, problems = parse_prefect_file(
            job.content, job.path, strict=self.options.strict, display=job.display
        )
        if loaded is None:
            return _FileOutcome(problems, [])
        if loaded.invalid:
            return _FileOutcome(self._more_problems(loaded, job.snapshot, problems), [])
        snapshot: Snapshot = job.snapshot
        if job.blob is not None:
            from reconciler.desired.build_cache import RecordingSnapshot

            snapshot = RecordingSnapshot(job.snapshot)
        deployments = [
            _DeploymentBuilder(self, snapshot, loaded, draft).build()
            for draft in loaded.deployments
        ]
        reads = frozenset(getattr(snapshot, "reads", ()))
        return _FileOutcome(problems, deployments, reads)

    def _more_problems(
        self, loaded: PrefectFile, snapshot: Snapshot, problems: list[Diagnostic]
    ) -> list[Diagnostic]:
        """A file with errors builds nothing, but its deployments are still checked (entry
        points, parameters, pools...), so that every error of the file is reported at once;
        an error at the place of one already reported is left out (one mistake, one message).
        A deployment too broken to check adds nothing."""
        found = list(problems)
        places = {(d.location.line, d.location.column) for d in problems if d.location}
        for draft in loaded.deployments:
            try:
                built = _DeploymentBuilder(self, snapshot, loaded, draft).build()
            except Exception:
                continue
            for diagnostic in [*built.problems, *built.notes]:
                where = diagnostic.location
                if where is not None and (where.line, where.column) in places:
                    continue
                if diagnostic not in found:
                    found.append(diagnostic)
        return found

    # -- the per-file cache (reconciler/desired/build_cache.py) ---------------------------

    def _cacheable(self, snapshot: Snapshot) -> BlobSnapshot | None:
        if self.options.cache is None or self.options.step_outputs:
            return None
        from reconciler.desired.build_cache import blob_ids

        return blob_ids(snapshot)

    def _cache_context(self, snapshot: Snapshot) -> str:
        """Everything but files that a file's result depends on."""
        from reconciler.desired.build_cache import context_key

        options = self.options
        return context_key(
            snapshot.repo_id,
            snapshot.display_root,
            options.strict,
            options.build_outputs_known,
            sorted(options.environ.items()),
            sorted(self.observed.variables.items()),
            sorted((list(k), v) for k, v in self.observed.blocks.items()),
            [(name, self.pool_template(name)) for name in self.known_pools()],
        )

    def _from_cache(self) -> dict[int, _FileOutcome]:
        """The files whose results the cache holds, by their place in `self.files`, with their
        resources stamped with this run's commit."""
        cache = self.options.cache
        found: dict[int, _FileOutcome] = {}
        if cache is None:
            return found
        contexts: dict[int, str] = {}
        stored = {r.key: (r.hash, r.owner) for r in self.observed.of_kind(Kind.DEPLOYMENT)}
        for index, job in enumerate(self.files):
            if job.blob is None:
                continue
            snapshot = self._cacheable(job.snapshot)
            assert snapshot is not None
            if id(snapshot) not in contexts:
                contexts[id(snapshot)] = self._cache_context(snapshot)
            hit = cache.get(snapshot, job.path, job.blob, contexts[id(snapshot)])
            if hit is not None:
                found[index] = _restamped(hit, snapshot.commit, stored)
        return found

    def _to_cache(self, outcomes: list[_FileOutcome], cached: dict[int, _FileOutcome]) -> None:
        cache = self.options.cache
        if cache is None:
            return
        contexts: dict[int, str] = {}
        for index, (job, outcome) in enumerate(zip(self.files, outcomes, strict=True)):
            if job.blob is None or index in cached:
                continue
            snapshot = self._cacheable(job.snapshot)
            assert snapshot is not None
            if id(snapshot) not in contexts:
                contexts[id(snapshot)] = self._cache_context(snapshot)
            cache.put(snapshot, job.path, job.blob, contexts[id(snapshot)], outcome.reads, outcome)
        for scope in self.scopes:
            cache.retain(scope.repo, scope.files)

    def _insert_reading_problems(self, outcomes: list[_FileOutcome]) -> None:
        """Each file's reading problems, where reading it in `add_repository` would have put
        them: the run reports in one order however the work was shared out."""
        merged: list[Diagnostic] = []
        done = 0
        for job, outcome in zip(self.files, outcomes, strict=True):
            merged.extend(self.diagnostics[done : job.slot])
            done = job.slot
            merged.extend(outcome.problems)
        merged.extend(self.diagnostics[done:])
        self.diagnostics = merged

    def commit(self, built: _BuiltDeployment) -> None:
        """Add one built deployment to the run: its diagnostics, and unless it failed, its
        resource (refused if another declares the same key), build plan and queue."""
        self.secrets.extend(built.secrets)
        self.diagnostics.extend(built.notes)
        self.diagnostics.extend(built.problems)
        declared = built.declared
        if declared is None:
            return
        self._declare(self.deployments, declared)
        if built.build_plan is not None:
            self.build_plans.append(built.build_plan)
        pool, queue = built.queue
        resource = declared.resource
        assert resource.owner is not None
        self.ensure_queue(pool, queue, resource.owner, resource.source_commit)

    def pool_template(self, name: str) -> dict[str, Any] | None:
        """The pool's base job template, parsed once per run (a plan checks thousands of
        deployments against the same few pools)."""
        if name not in self._templates:
            self._templates[name] = self._find_pool_template(name)
        return self._templates[name]

    def read_flow(self, snapshot: Snapshot, base_dir: str, entrypoint: str) -> FlowInfo:
        """`flows.read_flow`, once per (repository, directory, entrypoint)."""
        inner = getattr(snapshot, "inner", snapshot)  # a RecordingSnapshot's (for the cache)
        key = (id(inner), base_dir, entrypoint)
        if key not in self._flows:
            before = set(getattr(snapshot, "reads", ()))
            try:
                self._flows[key] = read_flow(snapshot, base_dir, entrypoint)
            except EntrypointError as exc:
                self._flows[key] = exc
            self._flow_reads[key] = set(getattr(snapshot, "reads", ())) - before
        elif hasattr(snapshot, "reads"):
            snapshot.reads.update(self._flow_reads.get(key, ()))
        found = self._flows[key]
        if isinstance(found, EntrypointError):
            raise found
        return found

    def type_checks(self, properties: dict[str, Any]) -> dict[str, _TypeChecks]:
        """A cache for `_plainly_fits`, one per flow's parameters (held while the run lasts)."""
        key = id(properties)
        if key not in self._type_checks:
            self._type_checks[key] = (properties, {})
        return self._type_checks[key][1]

    def parameter_validator(self, flow: FlowInfo) -> jsonschema.protocols.Validator:
        """A validator of the flow's parameters with `required` left out (checked apart)."""
        import jsonschema

        key = id(flow)
        if key not in self._parameter_validators:
            schema = dict(flow.parameter_schema)
            schema.pop("required", None)
            if "definitions" in schema:
                schema["$defs"] = schema["definitions"]
            self._parameter_validators[key] = jsonschema.Draft202012Validator(schema)
        return self._parameter_validators[key]

    def _find_pool_template(self, name: str) -> dict[str, Any] | None:
        declared = self.pools.get(name)
        if declared is not None:
            template: dict[str, Any] = declared.resource.spec["base_job_template"]
            return template
        existing = self.observed.get(Kind.WORK_POOL, name)
        if existing is not None:
            found: dict[str, Any] = existing.spec.get("base_job_template") or {}
            return found
        return None

    def note_once(self, diagnostic: Diagnostic) -> None:
        """Report a warning that many deployments of one file would repeat, once."""
        if diagnostic not in self._noted:
            self._noted.add(diagnostic)
            self.diagnostics.append(diagnostic)

    def known_pools(self) -> list[str]:
        return sorted({*self.pools, *(r.key for r in self.observed.of_kind(Kind.WORK_POOL))})

    def ensure_queue(self, pool: str, queue: str, owner: Owner, commit: str | None) -> None:
        key = queue_key(pool, queue)
        if key in self.queues or key in self.implicit:
            return
        existing = self.observed.get(Kind.WORK_QUEUE, key)
        if existing is not None:
            # Still wanted, exactly as it is, whoever owns it: never pruned while used.
            self.implicit[key] = existing
            return
        if queue == DEFAULT_QUEUE and pool not in self.pools:
            return  # the default queue of an existing pool exists with it
        taken = {
            r.spec["priority"]
            for r in [*self.observed.of_kind(Kind.WORK_QUEUE), *self.implicit.values()]
            if r.spec.get("pool") == pool
        } | {
            d.resource.spec["priority"]
            for d in self.queues.values()
            if d.resource.spec["pool"] == pool
        }
        priority = next(p for p in range(1, len(taken) + 2) if p not in taken)
        spec = {
            "pool": pool,
            "name": queue,
            "description": None,
            "priority": priority,
            "concurrency_limit": None,
            "paused": False,
        }
        self.implicit[key] = Resource.of(Kind.WORK_QUEUE, key, spec, owner, commit)


class _DeploymentBuilder:
    """Turns one DeploymentDraft into a deployment Resource, or into diagnostics."""

    def __init__(
        self, run: _Builder, snapshot: Snapshot, prefect_file: PrefectFile, draft: DeploymentDraft
    ) -> None:
        self.run = run
        self.snapshot = snapshot
        self.file = prefect_file
        self.document: LoadedDocument = prefect_file.document
        self.draft = draft
        self.owner = Owner(snapshot.repo_id, prefect_file.path)
        self.problems: list[Diagnostic] = []
        self.notes: list[Diagnostic] = []
        self.secrets: list[str] = []

    def location(self, *keys: str | int) -> Location:
        return self.document.location(self.draft.at(*keys))

    def fail(self, message: str, *keys: str | int, hint: str | None = None) -> None:
        self.problems.append(error(message, self.location(*keys), hint))

    def note(self, message: str, *keys: str | int, hint: str | None = None) -> None:
        self.notes.append(warning(message, self.location(*keys), hint))

    def build(self) -> _BuiltDeployment:
        """The deployment's resource, or the problems that prevent it; nothing is added to the
        run here (`_Builder.commit` does that, in the order of the files)."""
        spec = self._spec()
        if spec is None or self.problems:
            return _BuiltDeployment(self.notes, self.problems, self.secrets)
        key = deployment_key(spec["flow_name"], spec["name"])
        resource = Resource.of(Kind.DEPLOYMENT, key, spec, self.owner, self.snapshot.commit)
        build_plan = None
        if self.draft.build or self.draft.push:
            build_plan = BuildPlan(
                key,
                self.owner,
                tuple(p.step for p in self.draft.build),
                tuple(p.step for p in self.draft.push),
                self.draft_key,
                (*self.draft.build, *self.draft.push),
                self.document,
                self.file.base_dir,
            )
        return _BuiltDeployment(
            self.notes,
            self.problems,
            self.secrets,
            _Declared(resource, self.document, self.draft.at("name")),
            build_plan,
            (spec["work_pool_name"], spec["work_queue_name"]),
        )

    def _spec(self) -> dict[str, Any] | None:
        # A shallow copy: nothing below edits nested values in place (templating builds anew).
        config = dict(self.draft.config)
        templated = self.file.has_placeholders
        if templated:
            config = self._resolve_store_references(config)
            config = tpl.apply_values(
                config,
                self.run.options.environ,
                environ=self.run.options.environ,
                remove_notset=False,
            )
            self._remember_secret_env(self.draft.config)
        outputs = self._step_outputs()
        raw_schedules = config.pop("schedules", None)
        triggers = config.pop("triggers", None)
        if templated:
            config = tpl.apply_values(
                config,
                outputs,
                environ=self.run.options.environ,
                skip_prefixes=["ctx."],
                on_missing=self._missing(()),
            )
        schedules = self._schedules(raw_schedules, outputs)
        # Every field is checked even when an earlier one failed: one run reports them all.
        flow = self._flow(config.get("entrypoint"))
        name = self._name(config.get("name"))
        enforce_written = config.get("enforce_parameter_schema")
        enforce = self._lax_bool(enforce_written, True, "enforce_parameter_schema")
        paused = self._lax_bool(config.get("paused"), False, "paused")
        tags = self._tags(config.get("tags"))
        parameters: dict[str, Any] = {}
        if flow is not None:
            required = enforce and enforce_written is not None
            parameters = self._parameters(config.get("parameters"), flow, enforce, required)
        pool, queue, job_variables = self._work_pool(config.get("work_pool") or {})
        limit, options = self._concurrency(config.get("concurrency_limit"))
        self._refuse_unstorable(parameters, "parameters")
        self._refuse_unstorable(job_variables, "work_pool", "job_variables")
        if isinstance(raw_schedules, list) and not self.draft.legacy_schedule:
            for index, entry in enumerate(raw_schedules):
                if isinstance(entry, dict):
                    self._refuse_unstorable(
                        entry.get("parameters"), "schedules", index, "parameters"
                    )
        if config.get("sla"):
            self.note("`sla` is ignored: SLAs exist only in Prefect Cloud", "sla")
        if flow is None or name is None or pool is None or self.problems:
            return None
        spec: dict[str, Any] = {
            "name": name,
            "flow_name": flow.name,
            "entrypoint": config["entrypoint"],
            "path": self.file.base_dir,
            "flow_path": flow.path,
            "description": config.get("description") or flow.description,
            "version": config.get("version"),
            "tags": tags,
            "parameters": parameters,
            "parameter_openapi_schema": flow.parameter_schema,
            "enforce_parameter_schema": enforce,
            "paused": paused,
            "schedules": schedules,
            "concurrency_limit": limit,
            "concurrency_options": options,
            "work_pool_name": pool,
            "work_queue_name": queue,
            "job_variables": job_variables,
            "pull_steps": self._pull_steps(outputs, job_variables),
            "triggers": triggers if isinstance(triggers, list) else None,
        }
        written = self.draft.config.get("work_pool")
        written_variables = written.get("job_variables") if isinstance(written, dict) else None
        # Values read from secret-looking environment variables: masked in runs too.
        if isinstance(written_variables, dict) and (
            hidden := sensitive.sensitive_paths(written_variables)
        ):
            spec[sensitive.FIELD] = hidden
        if outputs and self.file.has_placeholders:
            spec = _known_after_build(spec)
        if self.draft.pull:  # stored for the worker's errors; not hashed, not in plans
            positions = [self.document.location(placed.path) for placed in self.draft.pull]
            spec = with_pull_step_positions(spec, positions)
        return spec

    def _check_working_directories(self, job_variables: dict[str, Any]) -> None:
        """`set_working_directory` to an absolute path (what `prefect init` writes: the
        project's directory on the machine it ran on) makes runs use whatever is in that
        directory of the machine they run on, uncommitted edits included, not the planned
        commit. A warning (an error with --strict), except where runs use an image (built here,
        or named in `job_variables`), in which the path is that of the image."""
        if self.draft.build or job_variables.get("image"):
            return
        for placed in self.draft.pull or []:
            directory = placed.step.body.get("directory")
            if not placed.step.name.endswith(".set_working_directory"):
                continue
            if not isinstance(directory, str) or "{{" in directory:
                continue
            if not (directory.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", directory)):
                continue
            message = (
                f"set_working_directory to the absolute path {directory!r}: runs would use that "
                "directory of the machine they run on (with its uncommitted files), not the "
                "repository at the planned commit"
            )
            hint = (
                "use a path relative to the repository (e.g. `.`), or drop the pull steps: runs "
                "then clone the planned commit"
            )
            where = self.document.location((*placed.path, placed.step.name, "directory"))
            if self.run.options.strict:
                self.problems.append(error(message, where, hint))
            else:
                self.run.note_once(warning(message, where, hint))

    # -- templating -----------------------------------------------------------------------

    def _resolve_store_references(self, config: dict[str, Any]) -> dict[str, Any]:
        """Variables are resolved now (Prefect's deploy-time rule). Block references are
        checked now but kept as references: secrets never land in the plan or the store;
        the worker resolves them when a run starts."""
        variables, blocks = tpl.references(config)
        for name in sorted(variables):
            if name not in self.run.observed.variables:
                self.note(
                    f'variable "{name}" is not set; Prefect would use an empty string',
                    *_first_use(config, _names_variable(name)),
                    hint=f"set it with `reconcile variable set {name} VALUE`",
                )
        for slug, name in sorted(blocks):
            if (slug, name) not in self.run.observed.blocks:
                self.fail(
                    f'"{{{{ prefect.blocks.{slug}.{name} }}}}" refers to a block that is not '
                    "defined",
                    *_first_use(config, _names_block(slug, name)),
                    hint=f"define it with `reconcile secret set {slug}/{name}`",
                )
        try:
            tpl.resolve_blocks(config, lambda s, n: self.run.observed.blocks.get((s, n)))
        except tpl.TemplateError as exc:
            if "not found" not in exc.message.lower():
                self.problems.append(
                    error(exc.message, self.document.location(self.draft.at(*exc.path)))
                )
        resolved: dict[str, Any] = tpl.resolve_variables(config, self.run.observed.variables)
        return resolved

    def _remember_secret_env(self, config: dict[str, Any]) -> None:
        for placeholder in tpl.find_placeholders(config):
            if placeholder.kind is tpl.PlaceholderKind.ENV:
                name = placeholder.name.lstrip("$")
                value = self.run.options.environ.get(name)
                if value and looks_secret(name):
                    self.secrets.append(value)

    @property
    def draft_key(self) -> DraftKey:
        return (self.owner.repo, self.owner.file, self.draft.index)

    def _step_outputs(self) -> dict[str, Any]:
        steps = [p.step for p in (*self.draft.build, *self.draft.push)]
        ran = self.run.options.step_outputs.get(self.draft_key)
        if ran is not None:
            return dict(ran)
        if not steps or self.run.options.build_outputs_known:
            return {}
        outputs: dict[str, Any] = {}
        for step in steps:
            known = _STEP_OUTPUTS.get(step.short_name) if is_prefect_step(step.name) else None
            for name in known or _ANY_STEP_OUTPUT:
                outputs[name] = tpl.KNOWN_AFTER_BUILD
            if step.id:
                outputs[step.id] = tpl.KNOWN_AFTER_BUILD
        return outputs

    def _missing(self, prefix: Path) -> tpl.MissingCallback:
        def report(path: tpl.TemplatePath, name: str) -> None:
            if (*prefix, *path)[:1] == ("pull",):
                return  # kept for the worker: earlier pull steps' outputs (_pull_steps)
            self.notes.append(
                warning(
                    f'placeholder "{{{{ {name} }}}}" has no value; the key is removed (or the '
                    "text left empty), as Prefect does",
                    self.document.location(self.draft.at(*prefix, *path)),
                    "set the environment variable, or check the step id"
                    if name.startswith("$") or "." in name
                    else None,
                )
            )

        return report

    # -- fields ---------------------------------------------------------------------------

    def _schedules(self, raw: Any, outputs: dict[str, Any]) -> list[dict[str, Any]]:
        if not raw:
            return []
        templated = (
            raw
            if tpl.untemplated(raw)
            else tpl.apply_values(raw, outputs, environ=self.run.options.environ)
        )
        found = []
        for index, entry in enumerate(templated):
            try:
                found.append(normalize_schedule(entry))
            except ScheduleError as exc:
                at: Path = ("schedule",) if self.draft.legacy_schedule else ("schedules", index)
                keys = tuple(exc.key.split(".")) if exc.key else ()
                where = self.document.key_location(self.draft.at(*at, *keys))
                self.problems.append(error(exc.message, where))
        return found

    def _flow(self, entrypoint: Any) -> FlowInfo | None:
        if not entrypoint:
            self.fail(
                "deployment has no entrypoint",
                hint="add `entrypoint: path/to/flows.py:my_flow` (relative to this file)",
            )
            return None
        if entrypoint is tpl.KNOWN_AFTER_BUILD:
            self.fail("the entrypoint cannot come from a build step", "entrypoint")
            return None
        try:
            return self.run.read_flow(self.snapshot, self.file.base_dir, str(entrypoint))
        except EntrypointError as exc:
            self.fail(exc.message, "entrypoint", hint=exc.hint)
            return None

    def _name(self, value: Any) -> str | None:
        if not value or not isinstance(value, str):
            self.fail(
                "deployment has no name",
                hint="add `name: <deployment name>`; Prefect skips unnamed deployments silently",
            )
            return None
        name = PurePosixPath(value).stem if value.endswith(".py") else value
        if _BAD_NAME.search(name):
            self.fail(f"deployment name {value!r} contains one of / % & > <", "name")
            return None
        return name

    def _parameters(
        self, value: Any, flow: FlowInfo, enforce: bool, require_all: bool
    ) -> dict[str, Any]:
        """Parameters checked against the flow's signature: unknown names always (a run would
        fail on them); types when `enforce`; required ones only when `require_all` (with
        enforce_parameter_schema written out as true)."""
        parameters: dict[str, Any] = value if isinstance(value, dict) else {}
        properties = flow.parameter_schema.get("properties", {})
        if not flow.accepts_any_parameter:
            for name in parameters:
                if name not in properties:
                    self.fail(
                        f'parameter "{name}" is not a parameter of flow {flow.function_name}() '
                        f"in {flow.path}",
                        "parameters",
                        name,
                        hint=did_you_mean(name, properties)
                        or f"its parameters: {', '.join(properties) or '(none)'}",
                    )
        if enforce:
            self._check_parameter_types(parameters, flow)
        missing = [p for p in flow.parameter_schema.get("required", []) if p not in parameters]
        if missing and require_all:
            self.fail(
                f"required parameter(s) of {flow.function_name}() not given: {', '.join(missing)}",
                "parameters",
                hint="give them under `parameters:`, or set enforce_parameter_schema: false",
            )
        return parameters

    def _check_parameter_types(self, parameters: dict[str, Any], flow: FlowInfo) -> None:
        known = {k: v for k, v in parameters.items() if not _is_unresolved(v)}
        properties = flow.parameter_schema.get("properties", {})
        if _plainly_fits(known, properties, self.run.type_checks(properties)):
            return
        validator = self.run.parameter_validator(flow)
        for problem in validator.iter_errors(known):
            path = tuple(problem.absolute_path)
            self.fail(
                f"parameter {'.'.join(str(p) for p in path)}: {show_value(problem.instance)} "
                f"does not fit the flow's signature ({problem.message})",
                "parameters",
                *path,
            )

    def _refuse_unstorable(self, values: Any, *keys: str | int) -> None:
        """Values JSON cannot hold (Infinity, NaN: YAML's `.inf`, `.nan`) or nested past the
        parameter depth limit would be applied, then refuse every run made from them
        (run_parameters.py): refuse them where they are written, as a plan error."""
        if not isinstance(values, dict):
            return
        for name, value in values.items():
            where = ".".join(str(k) for k in (*keys, name))
            try:
                check_storable({name: value}, f"`{where}`")
            except UserError as exc:
                hint = _YAML_NON_FINITE_HINT if exc.hint == NON_FINITE_HINT else exc.hint
                self.fail(exc.message, *keys, name, hint=hint)

    def _work_pool(self, pool_config: dict[str, Any]) -> tuple[str | None, str, dict[str, Any]]:
        name = pool_config.get("name")
        queue = pool_config.get("work_queue_name") or DEFAULT_QUEUE
        job_variables = pool_config.get("job_variables") or {}
        if not name:
            self.fail(
                "deployment has no work pool",
                "work_pool",
                hint="set `work_pool: {name: <pool>}`; declare the pool in work-pools.yaml",
            )
            return None, queue, job_variables
        template = self.run.pool_template(name)
        if template is None:
            self.fail(
                f'work pool "{name}" does not exist',
                "work_pool",
                "name",
                hint=did_you_mean(name, self.run.known_pools())
                or f"declare it in {POOLS_FILE_NAME}, or create it with `reconcile work-pool "
                "create`",
            )
            return None, queue, job_variables
        checked = {k: v for k, v in job_variables.items() if v is not tpl.KNOWN_AFTER_BUILD}
        with contextlib.suppress(tpl.TemplateError):  # reported with the block references
            if not tpl.untemplated(checked):
                checked = tpl.resolve_blocks(
                    checked, lambda s, n: self.run.observed.blocks.get((s, n))
                )
        for problem in job_variable_problems(template, checked):
            self.fail(
                f'{problem.message} (work pool "{name}")',
                "work_pool",
                "job_variables",
                *problem.path,
            )
        return name, queue, job_variables

    def _concurrency(self, value: Any) -> tuple[int | None, dict[str, Any] | None]:
        if value is None:
            return None, None
        if isinstance(value, dict):
            strategy = value.get("collision_strategy")
            if strategy is None:
                self.fail(
                    "concurrency_limit.collision_strategy is required when concurrency_limit "
                    "is a mapping",
                    "concurrency_limit",
                    hint="add `collision_strategy: ENQUEUE` (wait) or `CANCEL_NEW`",
                )
            options: dict[str, Any] = {"collision_strategy": strategy}
            if value.get("grace_period_seconds") is not None:
                options["grace_period_seconds"] = value["grace_period_seconds"]
            return self._positive_int(value.get("limit"), "concurrency_limit", "limit"), options
        return self._positive_int(value, "concurrency_limit"), None

    def _positive_int(self, value: Any, *keys: str) -> int | None:
        if value is None:
            return None
        number: int | None = None
        if isinstance(value, bool):
            number = int(value)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            try:
                parsed = float(value)
                number = int(parsed) if parsed.is_integer() else None
            except ValueError:
                number = None
        if number is None or number < 1:
            self.fail(
                f"{'.'.join(keys)} must be a whole number of at least 1; got {show_value(value)}",
                *keys,
            )
            return None
        return number

    def _lax_bool(self, value: Any, default: bool, key: str) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        self.fail(f"{key} must be true or false; got {show_value(value)}", key)
        return default

    def _tags(self, value: Any) -> list[str]:
        if isinstance(value, str):
            self.note(
                f"tags is the string {value!r}; reading it as one tag (Prefect 3.9 would split "
                "it into single characters)",
                "tags",
                hint=f"write `tags: [{value}]`",
            )
            return [value] if value.strip() else []
        if not isinstance(value, list):
            return []
        for index, tag in enumerate(value):
            if isinstance(tag, (list, dict)):
                self.note(
                    f"tags[{index}] is a {type_name(tag)}; like Prefect, the tag is its text "
                    f"{str(tag)!r}",
                    "tags",
                    index,
                    hint="list each tag on its own line (an alias of a list inside a list does "
                    "not merge into it)",
                )
        return [str(tag) for tag in value if str(tag).strip()]

    def _pull_steps(
        self, outputs: dict[str, Any], job_variables: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if self.draft.pull is None:
            generated = default_pull_steps(
                repository=self.snapshot.repo_id,
                commit=self.snapshot.commit,
                base_dir=self.file.base_dir,
                build_steps=[placed.step for placed in self.draft.build],
                job_variables=job_variables,
            )
            if generated.warning and job_variables.get("image"):
                self.note(
                    generated.warning, "work_pool", "job_variables", "image", hint=generated.hint
                )
            elif generated.warning:
                self.run.note_once(
                    warning(generated.warning, self.document.location(()), generated.hint)
                )
            return generated.steps
        self._check_working_directories(job_variables)
        steps = [placed.step.to_json() for placed in self.draft.pull]
        if not self.file.has_placeholders:
            return steps
        templated: list[dict[str, Any]] = tpl.apply_values(
            steps, outputs, environ=self.run.options.environ, remove_notset=False
        )
        return templated


_JSON_TYPE_CHECKS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}
_PLAIN_KEYWORDS = frozenset({"type", "title", "position", "default", "description", "anyOf"})


def _plainly_fits(
    parameters: dict[str, Any], properties: dict[str, Any], checks: dict[str, _TypeChecks]
) -> bool:
    """True when every value obviously matches its parameter's simple type: then the costly
    JSON Schema validation can be skipped. False means "ask jsonschema", not "invalid".
    `checks` caches `_type_checks` of these properties by name."""
    for name, value in parameters.items():
        prop = properties.get(name)
        if prop is None:
            continue
        if name not in checks:
            checks[name] = _type_checks(prop)
        found = checks[name]
        if found is None or not any(check(value) for check in found):
            return False
    return True


_TypeChecks = tuple[Callable[[Any], bool], ...] | None


def _type_checks(prop: Any) -> _TypeChecks:
    """How to see that a value plainly fits a parameter: it passes one of these checks (one per
    type the parameter allows; a parameter without types takes anything). None: only JSON
    Schema validation can tell."""
    if not set(prop) <= _PLAIN_KEYWORDS | {"items", "additionalProperties"}:
        return None
    if prop.get("items") not in (None, {}) or prop.get("additionalProperties") not in (
        None,
        True,
    ):
        return None
    branches = prop.get("anyOf", [prop] if "type" in prop else [])
    types = [b.get("type") for b in branches if isinstance(b, dict)]
    if not types:
        return (_anything,)
    if len(types) != len(branches) or any(not isinstance(t, str) for t in types):
        return None
    return tuple(_JSON_TYPE_CHECKS[t] for t in types if t in _JSON_TYPE_CHECKS)


def _anything(value: Any) -> bool:
    return True


def _first_use(value: Any, names_it: Callable[[str], bool], path: Path = ()) -> Path:
    """The key path of the first text in `value` that `names_it` accepts; () when none does,
    which locates a diagnostic at the deployment itself."""
    if isinstance(value, str):
        return path if names_it(value) else ()
    if isinstance(value, dict):
        items: list[tuple[str | int, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return ()
    for key, item in items:
        found = _first_use(item, names_it, (*path, key))
        if found:
            return found
    return ()


def _names_variable(name: str) -> Callable[[str], bool]:
    return lambda text: name in tpl.references(text)[0]


def _names_block(slug: str, name: str) -> Callable[[str], bool]:
    return lambda text: (slug, name) in tpl.references(text)[1]


def _is_unresolved(value: Any) -> bool:
    if value is tpl.KNOWN_AFTER_BUILD:
        return True
    return isinstance(value, str) and "{{" in value and bool(tpl.find_placeholders(value))


def _known_after_build(value: Any) -> Any:
    """Replace the templating marker with the JSON form a plan shows as `(known after build)`."""
    if value is tpl.KNOWN_AFTER_BUILD:
        return dict(UNKNOWN_VALUE)
    if isinstance(value, dict):
        return {k: _known_after_build(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_known_after_build(v) for v in value]
    return value


def _restamped(
    outcome: _FileOutcome, commit: str | None, stored: Mapping[str, tuple[str, Owner | None]]
) -> _FileOutcome:
    """A cached file's outcome, its resources recorded as coming from `commit` (the cached
    value itself is left as it is). A deployment the store holds as it is (`stored`: the hash
    and owner of each stored deployment) keeps its old stamp: the plan leaves it alone, and a
    stamp is written only with a change."""

    def stamped(built: _BuiltDeployment) -> _BuiltDeployment:
        declared = built.declared
        if declared is None:
            return built
        resource = declared.resource
        if resource.source_commit == commit or stored.get(resource.key) == (
            resource.hash,
            resource.owner,
        ):
            return built
        resource = dataclasses.replace(resource, source_commit=commit)
        return built._replace(declared=_Declared(resource, declared.document, declared.path))

    deployments = [stamped(b) for b in outcome.deployments]
    if all(new is old for new, old in zip(deployments, outcome.deployments, strict=True)):
        return outcome
    return outcome._replace(deployments=deployments)


def _display(snapshot: Snapshot, path: str) -> str:
    root = snapshot.display_root
    if root in ("", "."):
        return path
    return posixpath.join(root.rstrip("/"), path)
