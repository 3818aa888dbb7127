"""The 250 real prefect.yaml files of ../shared/corpus, against what Prefect 3.9.1 did with them.

tests/data/prefect_corpus_expectations.json records Prefect's own loader on each file: whether
the YAML parsed, whether the file passed Prefect's schema, and for each deployment the loaded
config, the effective steps, the converted schedules and whether `prefect deploy` would go on
(`precheck`). Each file is planned here as a repository of its own: the file as prefect.yaml,
a stub flow for every entrypoint it names, a work-pools.yaml declaring every pool it uses, an
environment for its `{{ $VAR }}` placeholders and a store holding the variables and blocks it
references. Then:

- a file Prefect rejects is rejected, every error with a file:line inside the file;
- a deployment Prefect would refuse (no entrypoint, no pool, no name) is an error at its place;
- every deployment Prefect would deploy comes out the same, field by field.

Expected values are worked out here from Prefect's rules
(docs/design-notes.md#prefect-deploy-order), independently of reconciler's own templating code.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from reconciler.core.diagnostics import Diagnostic
from reconciler.desired.build import BuildOptions, BuildResult, RepoInput, build_desired
from reconciler.model.observed import ObservedState
from reconciler.model.resources import UNKNOWN_VALUE, Kind, deployment_key
from reconciler.sources.base import MemorySnapshot
from tests.conftest import CliResult, GitRepo

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "prefect-yaml"
EXPECTATIONS = Path(__file__).resolve().parents[1] / "data" / "prefect_corpus_expectations.json"

if not CORPUS.is_dir():
    _MISSING = (
        f"the prefect.yaml corpus is not at {CORPUS}; it lives in ../shared beside the repository"
    )
    if os.environ.get("CI", "").lower() == "true":
        # In CI the corpus is part of the checkout's surroundings: missing, it is a failure.
        pytest.fail(f"{_MISSING} (CI=true: the corpus tests must run)", pytrace=False)
    pytest.skip(_MISSING, allow_module_level=True)

MAX_SECONDS_PER_FILE = 5.0
STABLE_ANCHOR = "2020-01-01T00:00:00+00:00"  # decided: where an interval without anchor starts
REPO_ID = "corpus"
PREFECT_FILE = "prefect.yaml"
SHOWN_AS = f"{REPO_ID}/{PREFECT_FILE}"

# --- Deliberate differences from Prefect 3.9.1, asserted below as our behaviour ----------------


@dataclass(frozen=True)
class Difference:
    """What we do instead of what Prefect does: `refusal` is a phrase every one of our errors
    for the file contains (the file is refused); None for STRING_TAGS, checked on its own."""

    refusal: str | None
    reason: str


STRING_TAGS = Difference(None, "tags: 'x' is one tag, with a warning; Prefect splits characters")
LEGACY_STEP = Difference(
    "is a Prefect 2 step name",
    "Prefect 2 step names are refused, naming the Prefect 3 step; Prefect fails importing them",
)
MULTI_KEY_STEP = Difference(
    "a step is a mapping with exactly one key",
    "step arguments not indented under the step name: refused; Prefect fails running the step",
)
ABSOLUTE_ENTRYPOINT = Difference(
    "uses an absolute path",
    "an absolute entrypoint names no committed file: refused; Prefect needs it on the deployer",
)

DELIBERATE: dict[str, Difference] = {
    "AbderrahimAl__Bucket2Elasticsearch__prefect.yaml": STRING_TAGS,
    "CBIIT__CCDI-Hub-Prefect-Dataloader__prefect.yaml": LEGACY_STEP,
    "CBIIT__INS-Data__prefect.yaml": LEGACY_STEP,
    "CBIIT__icdc-dataloader__config__prefect-data-hub.yaml": LEGACY_STEP,
    "CBIIT__icdc-dataloader__prefect.yaml": LEGACY_STEP,
    "CBIIT__prefect-hello-world__prefect.yaml": LEGACY_STEP,
    "NitinKeshavB__prefect_acr__prefect.yaml": LEGACY_STEP,
    "NitinKeshavB__prefect_acr__tests__datman_values.yml.yaml": LEGACY_STEP,
    "Newander__Data-Platform-Copilot__flows__prefect.yaml": LEGACY_STEP,
    "2024mt03579__airlines-prefect-workflow__prefect.yaml": MULTI_KEY_STEP,
    "CBIIT__EntryRemoval-Prefect__prefect.yaml": MULTI_KEY_STEP,
    "SteffRhes__prefect_experiments__exp_1__prefect_server__dockerized__exp_3_yaml__prefect.yaml": (
        MULTI_KEY_STEP
    ),
    "jaykae__prefect2-playground__flows__prefect.yaml": MULTI_KEY_STEP,
    "ngahyves__FraudGuard-AI-Agentic-Fraud-Detection__flows__prefect.yaml": Difference(
        "must be a mapping",
        "build step `python: <path>` has no argument mapping: refused; Prefect fails running it",
    ),
    "felipesabate-pullpodev__Proyecto_Moss__prefect__prefect.yaml": ABSOLUTE_ENTRYPOINT,
    "ppatrzyk__rss-store__flows__prefect.yaml": ABSOLUTE_ENTRYPOINT,
}

# --- The corpus and Prefect's verdicts ------------------------------------------------------------


def _expectations() -> dict[str, dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(EXPECTATIONS.read_text(encoding="utf-8"))
    return {record["file"]: record for record in records}


EXPECTED = _expectations()
CORPUS_FILES = sorted(
    p.name for p in CORPUS.iterdir() if p.is_file() and p.name not in ("README.md", "sources.tsv")
)


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(EXPECTED) == CORPUS_FILES
    assert set(DELIBERATE) <= set(CORPUS_FILES)
    assert all(EXPECTED[name]["valid"] for name in DELIBERATE), "Prefect accepts these files"


# --- Prefect's templating rules, for expected values ---------------------------------------------

_PLACEHOLDER = re.compile(r"{{\s*([\w.\-\[\]$]+)\s*}}")
_REMOVED = object()  # a whole-value placeholder with no value: Prefect drops the key
# What each built-in step returns (docs/design-notes.md#builtin-steps and #docker-steps); run_steps
# merges it flat.
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


def _map_text(value: Any, change: Callable[[str], Any]) -> Any:
    """`change` applied to every string inside `value`; `_REMOVED` drops a key or item."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        changed = {k: _map_text(v, change) for k, v in value.items()}
        return {k: v for k, v in changed.items() if v is not _REMOVED}
    if isinstance(value, list):
        return [item for item in (_map_text(v, change) for v in value) if item is not _REMOVED]
    return value


@dataclass
class PrefectTemplating:
    """`prefect deploy`'s passes over one deployment (docs/design-notes.md#prefect-deploy-order),
    with reconciler's decided exceptions: block references stay as written, step outputs are
    unknown."""

    environ: Mapping[str, str]
    variables: Mapping[str, Any]
    outputs: frozenset[str] = frozenset()

    def deployment_value(self, value: Any) -> Any:
        value = _map_text(value, self._variables)
        value = _map_text(value, self._environment)
        return _map_text(value, lambda text: self._step_outputs(text, remove_missing=True))

    def pull_steps(self, steps: Any) -> Any:
        value = _map_text(steps, self._environment)
        return _map_text(value, lambda text: self._step_outputs(text, remove_missing=False))

    def _variables(self, text: str) -> Any:
        names = _PLACEHOLDER.findall(text)
        if len(names) == 1 and _PLACEHOLDER.fullmatch(text) and _is_variable(names[0]):
            return copy.deepcopy(self.variables.get(_variable_name(names[0]), ""))
        return _PLACEHOLDER.sub(
            lambda m: (
                str(self.variables.get(_variable_name(m[1]), "")) if _is_variable(m[1]) else m[0]
            ),
            text,
        )

    def _environment(self, text: str) -> str:
        return _PLACEHOLDER.sub(
            lambda m: self.environ.get(m[1][1:], m[0]) if m[1].startswith("$") else m[0], text
        )

    def _step_outputs(self, text: str, *, remove_missing: bool) -> Any:
        standard = [n for n in _PLACEHOLDER.findall(text) if _is_standard(n)]
        if not standard:
            return text
        if any(_first_segment(n) in self.outputs for n in standard):
            return dict(UNKNOWN_VALUE)
        if not remove_missing:
            return text
        if _PLACEHOLDER.fullmatch(text):
            return _REMOVED
        return _PLACEHOLDER.sub(lambda m: "" if _is_standard(m[1]) else m[0], text)


def _is_variable(name: str) -> bool:
    return name.startswith("prefect.variables.")


def _variable_name(name: str) -> str:
    return name.removeprefix("prefect.variables.")


def _is_standard(name: str) -> bool:
    return not name.startswith(("prefect.variables.", "prefect.blocks.", "$", "ctx."))


def _first_segment(name: str) -> str:
    return re.split(r"[.\[]", name, maxsplit=1)[0]


def step_outputs(steps: list[dict[str, Any]]) -> frozenset[str]:
    """The names `{{ ... }}` can use after these build and push steps ran."""
    names: set[str] = set()
    for step in steps:
        for function, body in step.items():
            names.update(_STEP_OUTPUTS.get(function.rsplit(".", 1)[-1], ()))
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                names.add(body["id"])
    return frozenset(names)


# --- One corpus file as a repository -------------------------------------------------------------


@dataclass
class CorpusRepository:
    """Everything `build_desired` reads for one corpus file."""

    files: dict[str, bytes]
    environ: dict[str, str]
    observed: ObservedState

    def build(self) -> BuildResult:
        snapshot = MemorySnapshot(self.files, repo_id=REPO_ID)
        return build_desired(
            [RepoInput(snapshot)], self.observed, BuildOptions(environ=self.environ)
        )


def corpus_text(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def raw_deployments(content: bytes) -> list[dict[str, Any]]:
    """The deployment mappings as yaml.safe_load reads them (Prefect's first step); [] when
    the file is not YAML or has no list of deployments."""
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError:
        return []
    found = data.get("deployments") if isinstance(data, dict) else None
    return [d for d in found if isinstance(d, dict)] if isinstance(found, list) else []


def placeholder_names(content: bytes) -> set[str]:
    return set(_PLACEHOLDER.findall(content.decode("utf-8", errors="replace")))


def environment_for(names: set[str]) -> dict[str, str]:
    """A value for every `{{ $VAR }}`: the name in lower case with dashes, e.g.
    `$PREFECT_WORK_POOL` -> `prefect-work-pool`."""
    return {n[1:]: n[1:].lower().replace("_", "-") for n in names if n.startswith("$")}


def variables_for(names: set[str]) -> dict[str, str]:
    return {_variable_name(n): f"value-of-{_variable_name(n)}" for n in names if _is_variable(n)}


def blocks_for(names: set[str]) -> dict[tuple[str, str], Any]:
    """Block documents holding every key path the file reads from them."""
    blocks: dict[tuple[str, str], Any] = {}
    for name in sorted(names):
        if not name.startswith("prefect.blocks."):
            continue
        parts = name.removeprefix("prefect.blocks.").split(".")
        if len(parts) < 2:
            continue
        data = blocks.setdefault((parts[0], parts[1]), {})
        path = parts[2:] or ["value"]
        for key in path[:-1]:
            data = data.setdefault(key, {})
        data[path[-1]] = f"secret-{'-'.join(parts)}"
    return blocks


def flow_stubs(entrypoints: set[str]) -> dict[str, bytes]:
    """A module for every entrypoint, each function `@flow def f(**kwargs): pass`."""
    functions: dict[str, set[str]] = {}
    for entrypoint in entrypoints:
        if ":" in entrypoint:
            path, function = entrypoint.rsplit(":", 1)
        else:
            module, _, function = entrypoint.rpartition(".")
            path = module.replace(".", "/") + ".py"
        if path and function.isidentifier():
            functions.setdefault(path, set()).add(function)
    return {
        path: (
            "from prefect import flow\n"
            + "".join(f"\n\n@flow\ndef {name}(**kwargs):\n    pass\n" for name in sorted(names))
        ).encode()
        for path, names in functions.items()
    }


DOCKER_ONLY_VARIABLES = frozenset(
    {
        "image",
        "image_pull_policy",
        "registry_credentials",
        "networks",
        "network_mode",
        "auto_remove",
        "volumes",
        "mem_limit",
        "memswap_limit",
        "privileged",
        "container_create_kwargs",
    }
)


def pool_type(job_variables: list[dict[str, Any]]) -> str:
    """docker when some deployment sets a variable only docker pools have, else process."""
    used = {key for variables in job_variables for key in variables}
    return "docker" if used & DOCKER_ONLY_VARIABLES else "process"


def pools_file(pools: Mapping[str, str]) -> bytes:
    declared = [{"name": name, "type": kind} for name, kind in sorted(pools.items())]
    return yaml.safe_dump({"work_pools": declared}, sort_keys=False).encode()


def corpus_repository(content: bytes, name: str) -> CorpusRepository:
    names = placeholder_names(content)
    environ = environment_for(names)
    variables = variables_for(names)
    templating = PrefectTemplating(environ, variables)
    deployments = raw_deployments(content) + [d["config"] for d in EXPECTED[name]["deployments"]]
    entrypoints = {d["entrypoint"] for d in deployments if isinstance(d.get("entrypoint"), str)}
    by_pool: dict[str, list[dict[str, Any]]] = {}
    for deployment in deployments:
        pool = deployment.get("work_pool")
        if not isinstance(pool, dict) or not isinstance(pool.get("name"), str):
            continue
        pool_name = templating.deployment_value(pool["name"])
        variables_given = templating.deployment_value(pool.get("job_variables") or {})
        if isinstance(pool_name, str) and pool_name:
            by_pool.setdefault(pool_name, []).append(
                variables_given if isinstance(variables_given, dict) else {}
            )
    pools = {pool: pool_type(variables) for pool, variables in by_pool.items()}
    files = {PREFECT_FILE: content, **flow_stubs(entrypoints)}
    if pools:
        files["work-pools.yaml"] = pools_file(pools)
    observed = ObservedState(revision=0, variables=variables, blocks=blocks_for(names))
    return CorpusRepository(files, environ, observed)


# --- What our result says ------------------------------------------------------------------------


def errors_of(result: BuildResult) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.is_error]


def line_count(content: bytes) -> int:
    return max(1, len(content.decode("utf-8", errors="replace").splitlines()))


def assert_located_in_file(errors: list[Diagnostic], content: bytes) -> None:
    lines = line_count(content)
    for problem in errors:
        where = problem.location
        assert where is not None, f"error without a location: {problem.render()}"
        assert where.file == SHOWN_AS, problem.render()
        assert where.line is not None and 1 <= where.line <= lines, problem.render()


def deployments_of(result: BuildResult) -> dict[str, dict[str, Any]]:
    assert result.desired is not None
    return {r.key: r.spec for r in result.desired.resources if r.kind is Kind.DEPLOYMENT}


def rendered(result: BuildResult) -> str:
    return "\n".join(d.render() for d in result.diagnostics)


# --- Expected deployments ------------------------------------------------------------------------


def deployment_name(config: dict[str, Any]) -> str:
    """RunnerDeployment strips a `.py` suffix from the name."""
    name: str = config["name"]
    return PurePosixPath(name).stem if name.endswith(".py") else name


def flow_name(entrypoint: str) -> str:
    function = entrypoint.rsplit(":", 1)[-1] if ":" in entrypoint else entrypoint.rsplit(".")[-1]
    return function.replace("_", "-")


def runner_tags(tags: Any) -> list[str]:
    """RunnerDeployment's ListOfNonEmptyStrings: `str(tag)` of every item that is not blank."""
    return [str(tag) for tag in tags if str(tag).strip()]


def lax_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in {"1", "on", "t", "true", "y", "yes"}
    return bool(value)


def expected_concurrency(value: Any) -> tuple[Any, Any]:
    if isinstance(value, dict):
        options = {"collision_strategy": value.get("collision_strategy")}
        if value.get("grace_period_seconds") is not None:
            options["grace_period_seconds"] = value["grace_period_seconds"]
        return value.get("limit"), options
    return value, None


def expected_pull_steps(
    record: dict[str, Any], templating: PrefectTemplating, job_variables: dict[str, Any]
) -> Any:
    if record["explicit_no_pull"]:
        return []
    if record["effective_pull"] == "<default>":
        return expected_default_pull_steps(record["effective_build"], job_variables)
    return templating.pull_steps(record["effective_pull"])


def expected_default_pull_steps(build: list[Any], job_variables: dict[str, Any]) -> Any:
    """Deliberate difference: Prefect's non-interactive rules, except that its last resort (the
    absolute directory of the deploying machine) is a clone of the repository instead."""
    work_in = "prefect.deployments.steps.set_working_directory"
    for step in build:
        body = step.get("prefect_docker.deployments.steps.build_docker_image")
        if body is not None:
            if body.get("dockerfile") == "auto":
                return [{work_in: {"directory": f"/opt/prefect/{REPO_ID}"}}]
            return []
    if job_variables.get("image"):
        return [{work_in: {"directory": "/opt/prefect"}}]
    clone = {"id": "clone-repository", "repository": REPO_ID}
    return [{"prefect.deployments.steps.git_clone": clone}]


def _anchor(text: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def expected_schedule(converted: dict[str, Any]) -> dict[str, Any]:
    """Prefect's converted schedule in the terms of our spec (kind, text, seconds, zone...)."""
    inner = converted["schedule"]
    kind = {"CronSchedule": "cron", "IntervalSchedule": "interval", "RRuleSchedule": "rrule"}[
        inner["__type__"]
    ]
    wanted: dict[str, Any] = {"type": kind, "timezone": inner.get("timezone") or "UTC"}
    if kind == "cron":
        wanted.update(cron=inner["cron"], day_or=inner["day_or"])
    elif kind == "rrule":
        wanted["rrule"] = inner["rrule"]
    else:
        wanted["interval_seconds"] = inner["interval"]
        # Prefect anchors an interval without anchor_date at "now"; we decided on a fixed one.
        wanted["anchor_date"] = _anchor(inner.get("anchor_date", STABLE_ANCHOR))
    wanted.update(
        active=converted.get("active", True),
        parameters=converted.get("parameters") or {},
        slug=converted.get("slug"),
    )
    return wanted


def comparable_schedule(ours: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    picked = {key: ours.get(key) for key in wanted}
    if "anchor_date" in picked:
        picked["anchor_date"] = _anchor(ours["anchor_date"])
    return picked


def expected_spec(record: dict[str, Any], repository: CorpusRepository) -> dict[str, Any]:
    """The fields of one deployment Prefect would deploy, as our spec writes them."""
    config = record["config"]
    outputs = step_outputs([*record["effective_build"], *record["effective_push"]])
    templating = PrefectTemplating(repository.environ, dict(repository.observed.variables), outputs)
    templated = templating.deployment_value(
        {k: v for k, v in config.items() if k not in ("schedule", "schedules", "triggers")}
    )
    pool = templated.get("work_pool") or {}
    limit, options = expected_concurrency(templated.get("concurrency_limit"))
    written_version = {"version": templated["version"]} if templated.get("version") else {}
    return {
        **written_version,
        "entrypoint": templated["entrypoint"],
        "parameters": templated.get("parameters", {}),
        "work_pool_name": pool.get("name"),
        "work_queue_name": pool.get("work_queue_name") or "default",
        "job_variables": pool.get("job_variables") or {},
        "paused": lax_bool(templated.get("paused"), False),
        "description": templated.get("description"),
        "tags": runner_tags(templated.get("tags") or []),
        "concurrency_limit": limit,
        "concurrency_options": options,
        "pull_steps": expected_pull_steps(record, templating, pool.get("job_variables") or {}),
    }


def prefect_error_lines(expected: dict[str, Any], content: bytes) -> set[int]:
    """The lines Prefect's first complaint about a file points at: the marks of its YAML
    error, or every line of the value at the `loc` of its first validation error."""
    if expected["yaml"] != "ok":
        return {int(n) for n in re.findall(r"line (\d+)", expected["yaml_error"])}
    node: yaml.Node | None = yaml.compose(content)
    first = node
    for part in expected["errors"][0]["loc"]:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == part]
            if not found:
                break
            first, node = found[-1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            first = node = node.value[part]
        else:
            break
    assert first is not None and node is not None
    return set(range(first.start_mark.line + 1, node.end_mark.line + 2))


def deployable(record: dict[str, Any]) -> bool:
    return bool(record["precheck"] == "ok")


# --- The corpus test -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file_matches_prefect(name: str) -> None:
    content = corpus_text(name)
    expected = EXPECTED[name]
    repository = corpus_repository(content, name)
    started = time.monotonic()
    result = repository.build()
    assert time.monotonic() - started < MAX_SECONDS_PER_FILE
    problems = errors_of(result)
    difference = DELIBERATE.get(name)

    if expected["yaml"] != "ok" or not expected["valid"]:
        assert problems, f"Prefect rejects {name} but we accepted it:\n{rendered(result)}"
        assert_located_in_file(problems, content)
        lines = {p.location.line for p in problems if p.location}
        assert lines & prefect_error_lines(expected, content), rendered(result)
        return

    records = expected["deployments"]
    if not records:
        assert problems, f"{name} has no deployments; Prefect's deploy fails on it"
        assert_located_in_file(problems, content)
        assert any("no `deployments` list" in p.message for p in problems), rendered(result)
        return

    if difference is not None and difference.refusal is not None:
        assert_refused_for(difference.refusal, result, content)
        return
    refused = [i for i, r in enumerate(records) if not deployable(r)]
    if refused:
        assert_refused_deployments_reported(result, content, refused)
        result = without_refused(content, name, refused).build()
        records = [r for r in records if deployable(r)]
    assert not errors_of(result), rendered(result)
    ours = deployments_of(result)
    for record in records:
        assert_same_deployment(record, ours, repository, difference, result)
    assert len(ours) == len({deployment_key(*k) for k in expected_keys(records)})


def expected_keys(records: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for record in records:
        config = record["config"]
        yield flow_name(config["entrypoint"]), deployment_name(config)


def assert_same_deployment(
    record: dict[str, Any],
    ours: dict[str, dict[str, Any]],
    repository: CorpusRepository,
    difference: Difference | None,
    result: BuildResult,
) -> None:
    config = record["config"]
    key = deployment_key(flow_name(config["entrypoint"]), deployment_name(config))
    assert key in ours, f"{key} missing; we have {sorted(ours)}"
    spec = ours[key]
    wanted = expected_spec(record, repository)
    if difference == STRING_TAGS:
        assert isinstance(config["tags"], str)
        wanted["tags"] = [config["tags"]]
        assert any("tags is the string" in d.message for d in result.diagnostics)
    got = {field: spec.get(field) for field in wanted}
    assert got == wanted, key
    converted = record["schedules_converted"] or []
    wanted_schedules = [expected_schedule(s) for s in converted]
    got_schedules = [
        comparable_schedule(s, w) for s, w in zip(spec["schedules"], wanted_schedules, strict=False)
    ]
    assert len(spec["schedules"]) == len(wanted_schedules), key
    assert got_schedules == wanted_schedules, key


def assert_refused_deployments_reported(
    result: BuildResult, content: bytes, refused: list[int]
) -> None:
    problems = errors_of(result)
    assert_located_in_file(problems, content)
    starts = deployment_start_lines(content)
    reported = {deployment_at(starts, p.location.line) for p in problems if p.location}
    assert reported == set(refused), rendered(result)


def deployment_start_lines(content: bytes) -> list[int]:
    """First line of each item of `deployments:` (YAML node marks are 0-based)."""
    root = yaml.compose(content)
    assert isinstance(root, yaml.MappingNode)
    for key, value in root.value:
        if key.value == "deployments" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def deployment_at(starts: list[int], line: int | None) -> int | None:
    if line is None:
        return None
    before = [i for i, start in enumerate(starts) if start <= line]
    return before[-1] if before else None


def without_refused(content: bytes, name: str, refused: list[int]) -> CorpusRepository:
    """The same file without the deployments Prefect would refuse, to compare the others."""
    data = yaml.safe_load(content)
    data["deployments"] = [d for i, d in enumerate(data["deployments"]) if i not in refused]
    trimmed = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
    repository = corpus_repository(content, name)
    repository.files[PREFECT_FILE] = trimmed
    return repository


def assert_refused_for(phrase: str, result: BuildResult, content: bytes) -> None:
    problems = errors_of(result)
    assert problems, f"expected a refusal ({phrase}):\n{rendered(result)}"
    assert_located_in_file(problems, content)
    assert all(phrase in p.message for p in problems), rendered(result)


# --- The CLI on a sample, in real git repositories ------------------------------------------------


@dataclass(frozen=True)
class CliSample:
    name: str
    why: str
    accepted: bool
    output: str = ""  # a text the output must contain


CLI_SAMPLE = (
    CliSample("Bishop0272__TestAlloc__prefect.yaml", "CRLF line endings", True),
    CliSample(
        "ngahyves__FraudGuard-AI-Agentic-Fraud-Detection__flows__prefect.yaml",
        "CRLF line endings, a build step without arguments",
        False,
    ),
    CliSample(
        "OlegPodlipalin__kedro_prefect__prefect.yml.yaml",
        "anchors, merge keys, the pool name from an environment variable",
        True,
    ),
    CliSample(
        "genomehubs__data__flows__prefect.yaml",
        "53 aliases, 34 deployments, blocks and variables",
        True,
    ),
    CliSample(
        "tig0826__prefect-workflow__dqx__prefect.yaml",
        "a key written twice inside a deployment",
        True,
        "written twice",
    ),
    CliSample(
        "cabanaquinta__travel_agency__prefect__prefect.yaml",
        "a top-level key written twice",
        True,
        "written twice",
    ),
    CliSample("NitinKeshavB__prefect_acr__tests__pre.yaml", "not YAML", False, "not valid YAML"),
    CliSample(
        "gcharikumar__Mobile-First-Retail-Analytics__etl__prefect.yaml",
        "a Python docstring, not YAML",
        False,
        "not valid YAML",
    ),
    CliSample(
        "3commacapital__prefect-flows__prefect.yaml",
        "schedule keys Prefect rejects",
        False,
        'unknown key "max_active_runs"',
    ),
    CliSample(
        "BayoAdejare__lightning-containers__prefect.yaml",
        "deployments is a mapping",
        False,
        "must be a list",
    ),
    CliSample(
        "2501Pr0ject__DontREADME__prefect.yaml",
        "deployments without an entrypoint",
        False,
        "deployment has no entrypoint",
    ),
)


def seed_store(run_cli: Callable[..., CliResult], store_url: str, observed: ObservedState) -> None:
    """The variables and blocks the file reads, set the way a user sets them."""
    for name, value in observed.variables.items():
        done = run_cli("variable", "set", "--store", store_url, name, str(value))
        assert done.code == 0, done.output
    for (slug, name), data in observed.blocks.items():
        ref = f"{slug}/{name}"
        done = run_cli("secret", "set", "--store", store_url, "--json", ref, stdin=json.dumps(data))
        assert done.code == 0, done.output


@pytest.mark.e2e
@pytest.mark.parametrize("sample", CLI_SAMPLE, ids=lambda s: s.name)
def test_cli_on_corpus_file(
    sample: CliSample,
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    repository = corpus_repository(corpus_text(sample.name), sample.name)
    repo = make_repo(repository.files)
    seed_store(run_cli, store_url, repository.observed)
    started = time.monotonic()
    done = run_cli("--dry-run", "--store", store_url, str(repo.path), env=repository.environ)
    assert time.monotonic() - started < 30, f"{sample.name} took too long"
    assert "Traceback" not in done.output, done.output
    assert sample.output in done.output, done.output
    if sample.accepted:
        assert done.code == 0, done.output
        assert "Plan: " in done.stdout, done.output
    else:
        assert done.code == 1, done.output
        assert re.search(r"prefect\.yaml:\d+:\d+: error: ", done.output), done.output
