"""The job configuration a worker backend executes, rendered with Prefect 3.9's rules.

Place: worker, between claiming a run and starting it. The inputs are the pool's base job
template, the deployment's `job_variables`, the run's `job_variables` and what the run is (a
`RunContext`); the output is a `ProcessJob` or a `DockerJob`. Everything is pure except two
documented defaults (`environ=None` reads `os.environ`, as Prefect's worker does).

The stages follow docs/design-notes.md#job-configuration
(`BaseJobConfiguration.resolve_for_flow_run`):

1. `merge_job_variables`: deployment variables, then the run's; `env` merged one level.
2. `render_job_configuration`: Prefect's `from_template_and_values` (defaults that are not
   None, `env` merges, dotted keys, `apply_values` with `remove_notset=True`).
3. `resolve_job_references`: `{{ prefect.blocks.* }}` then `{{ prefect.variables.* }}`, from
   lookups the worker passes in (the store); block values are reported as `secrets`, and so
   are environment values that plans mask (`environment_secrets`).
4. Typing, as pydantic would (a missing key takes the field's default), then
   `prepare_for_flow_run`: the run's environment and attribution variables, `None` values
   dropping keys, labels, `{{ ctx.* }}` in the name, and the command.

The command is the one difference from Prefect: when none is configured the job runs our own
runner (`python -m reconciler.worker.flow_runner`) instead of Prefect's engine. An explicit
`command` is kept as Prefect keeps it (a string) and split with POSIX `shlex` rules into the
argv the backend runs, as Prefect's process worker and docker-py do.
"""

from __future__ import annotations

import copy
import datetime
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reconciler import __version__
from reconciler.core.errors import UserError
from reconciler.core.masking import looks_secret
from reconciler.prefect_rules.job_templates import default_base_job_template
from reconciler.prefect_rules.templating import (
    NOTSET,
    BlockLookup,
    PlaceholderKind,
    TemplateError,
    TemplatePath,
    apply_values,
    find_placeholders,
    references,
    resolve_blocks,
    resolve_variables,
)
from reconciler.worker.docker_rules import (
    PULL_POLICIES,
    container_api_url,
    container_name,
    default_pull_policy,
    docker_labels,
    inferred_network_mode,
    resolved_volume,
    volume_problem,
)

RUNNER_MODULE: Final = "reconciler.worker.flow_runner"
"""The module a job runs when its configuration names no command."""

VariableLookup = Callable[[str], Any]
"""`lookup(name)` returns the variable's value; raises KeyError when there is no such variable."""

# The fields of prefect-docker's DockerWorkerJobConfiguration: `container_create_kwargs`
# entries with these names are dropped, the job configuration decides them.
DOCKER_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "command",
        "env",
        "labels",
        "name",
        "image",
        "registry_credentials",
        "image_pull_policy",
        "networks",
        "network_mode",
        "auto_remove",
        "volumes",
        "stream_output",
        "mem_limit",
        "memswap_limit",
        "privileged",
        "container_create_kwargs",
    }
)

_TRUE_WORDS: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_WORDS: Final = frozenset({"0", "off", "f", "false", "n", "no"})


class JobConfigError(UserError, ValueError):
    """A job configuration that cannot be built; the run cannot start.

    Messages name fields and say what kind of value they got, never the value (it may come
    from a secret block); only volume specifications are quoted."""


# --- what a run contributes ----------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """The run being started, and who starts it: Prefect's flow_run, flow, deployment,
    work_pool, worker_name and worker_id arguments of `prepare_for_flow_run`.

    Optional parts that are None are unknown and contribute nothing (no label, no variable).
    `flow_run_fields` and `flow_fields` are the records' other JSON fields (parameters, tags,
    ...), visible to `{{ ctx.flow_run.* }}` and `{{ ctx.flow.* }}` in the job name.
    `version` is what Prefect puts in the `prefect.io/version` label (its own version).
    A naive `deployment_updated` is taken as UTC.
    """

    flow_run_id: str
    flow_run_name: str
    flow_id: str | None = None
    flow_name: str | None = None
    deployment_id: str | None = None
    deployment_name: str | None = None
    deployment_updated: datetime.datetime | None = None
    work_pool_id: str | None = None
    work_pool_name: str | None = None
    worker_id: str | None = None
    worker_name: str | None = None
    version: str = __version__
    flow_run_fields: Mapping[str, Any] = field(default_factory=dict)
    flow_fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_flow(self) -> bool:
        return self.flow_id is not None or self.flow_name is not None or bool(self.flow_fields)

    @property
    def has_deployment(self) -> bool:
        return self.deployment_id is not None or self.deployment_name is not None

    def attribution_env(self) -> dict[str, str]:
        """PREFECT__WORKER_ID ... PREFECT__DEPLOYMENT_NAME, those that are known."""
        env: dict[str, str] = {}
        if self.worker_id is not None:
            env["PREFECT__WORKER_ID"] = self.worker_id
        if self.worker_name is not None:
            env["PREFECT__WORKER_NAME"] = self.worker_name
        if self.flow_id:
            env["PREFECT__FLOW_ID"] = self.flow_id
        if self.flow_name:
            env["PREFECT__FLOW_NAME"] = self.flow_name
        if self.deployment_id:
            env["PREFECT__DEPLOYMENT_ID"] = self.deployment_id
        if self.deployment_name:
            env["PREFECT__DEPLOYMENT_NAME"] = self.deployment_name
        return env

    def base_labels(self) -> dict[str, str]:
        """The `prefect.io/*` labels, in Prefect's order: run, pool, worker, flow, deployment."""
        labels = {
            "prefect.io/flow-run-id": self.flow_run_id,
            "prefect.io/flow-run-name": self.flow_run_name,
            "prefect.io/version": self.version,
        }
        _put_known(labels, "prefect.io/work-pool-name", self.work_pool_name)
        _put_known(labels, "prefect.io/work-pool-id", self.work_pool_id)
        _put_known(labels, "prefect.io/worker-name", self.worker_name)
        if self.has_flow:
            _put_known(labels, "prefect.io/flow-id", self.flow_id)
            _put_known(labels, "prefect.io/flow-name", self.flow_name)
        if self.has_deployment:
            _put_known(labels, "prefect.io/deployment-id", self.deployment_id)
            _put_known(labels, "prefect.io/deployment-name", self.deployment_name)
            if self.deployment_updated is not None:
                labels["prefect.io/deployment-updated"] = _utc_iso(self.deployment_updated)
        return labels

    def template_context(self) -> dict[str, Any]:
        """`{"flow": ..., "flow_run": ...}`: what `{{ ctx.* }}` in a job name reads."""
        flow_run = dict(self.flow_run_fields)
        flow_run["id"] = self.flow_run_id
        flow_run["name"] = self.flow_run_name
        for key, value in (("flow_id", self.flow_id), ("deployment_id", self.deployment_id)):
            if value is not None or key not in flow_run:
                flow_run[key] = value
        flow: dict[str, Any] = {}
        if self.has_flow:
            flow = dict(self.flow_fields)
            for key, value in (("id", self.flow_id), ("name", self.flow_name)):
                if value is not None or key not in flow:
                    flow[key] = value
        return {"flow": flow, "flow_run": flow_run}


def _put_known(labels: dict[str, str], key: str, value: str | None) -> None:
    if value is not None:
        labels[key] = value


def _utc_iso(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat()


# --- what a backend executes ---------------------------------------------------------------


@dataclass(frozen=True)
class ProcessJob:
    """A flow run as a local process (Prefect's ProcessJobConfiguration, prepared).

    `command` is the argv to run: the configured command string split with `shlex`, or the
    default runner command when none was configured (`command_configured` says which).
    `env` is the whole environment of the process: the worker's environment, then the job's
    (the worker's base variables, the run's, the job variables' `env`), as Prefect builds it.
    `working_dir` None means: run in a fresh temporary directory.
    `secrets` are the block values the configuration used: mask them in anything shown.
    """

    command: list[str]
    command_configured: bool
    env: dict[str, str] = field(repr=False)
    working_dir: str | None
    stream_output: bool
    name: str
    labels: dict[str, str]
    secrets: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


@dataclass(frozen=True)
class RegistryCredentials:
    """A docker-registry-credentials block: `docker login` before a pull."""

    username: str
    password: str = field(repr=False)
    registry_url: str
    reauth: bool = True


@dataclass(frozen=True)
class DockerJob:
    """A flow run as a Docker container (prefect-docker's DockerWorkerJobConfiguration,
    prepared).

    `command` is the container's argv (a configured string split with `shlex`, as docker-py
    does; else the default runner command). `env` is the container's whole environment: the
    worker's own environment is not inherited. `labels` are in Docker's form
    (`prefect.io/flow-run-id` becomes `io.prefect.flow-run-id`); `name` is the container
    name made Docker-safe, None when nothing of it is left. `network_mode` and
    `image_pull_policy` are as configured: `effective_network_mode()` and `pull_policy()`
    apply Prefect's defaults.
    """

    image: str
    command: list[str]
    command_configured: bool
    env: dict[str, str] = field(repr=False)
    labels: dict[str, str]
    name: str | None
    volumes: list[str]
    networks: list[str]
    network_mode: str | None
    mem_limit: str | None
    memswap_limit: str | None
    privileged: bool
    auto_remove: bool
    image_pull_policy: str | None
    stream_output: bool
    registry_credentials: RegistryCredentials | None = field(repr=False)
    container_create_kwargs: dict[str, Any] | None = field(repr=False)
    secrets: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def pull_policy(self) -> str:
        """The configured policy; else `Always` for a `latest` tag or none, `IfNotPresent`
        for any other tag or a digest (Kubernetes' rule, as prefect-docker applies it)."""
        return self.image_pull_policy or default_pull_policy(self.image)

    def effective_network_mode(self, platform: str | None = None) -> str | None:
        """The configured mode; else None with networks; else `host` on Linux when the
        job's PREFECT_API_URL points at this machine; else None."""
        if self.network_mode:
            return self.network_mode
        if self.networks:
            return None
        return inferred_network_mode(self.env.get("PREFECT_API_URL"), platform)

    def extra_create_kwargs(self) -> dict[str, Any]:
        """`container_create_kwargs` without the keys the job configuration owns."""
        kwargs = self.container_create_kwargs or {}
        return {
            key: copy.deepcopy(value) for key, value in kwargs.items() if key not in DOCKER_FIELDS
        }

    def resolved_volumes(self, cwd: str | os.PathLike[str]) -> list[str]:
        """The volumes with relative bind sources (`.`, `./x`, `../x`) made absolute against
        `cwd`, the worker's working directory."""
        return [resolved_volume(volume, cwd) for volume in self.volumes]


# --- 1. job variables ----------------------------------------------------------------------


def merge_job_variables(
    deployment_vars: Mapping[str, Any], run_vars: Mapping[str, Any]
) -> dict[str, Any]:
    """The deployment's job variables with the run's on top (stage 1).

    Everything is replaced at the top level, except `env` when the deployment's is a mapping:
    then the run's `env` entries are merged into it (a `null` entry is kept, and later removes
    the variable). The inputs are not changed.
    """
    merged = copy.deepcopy(dict(deployment_vars))
    overrides = copy.deepcopy(dict(run_vars))
    if isinstance(merged.get("env"), dict) and "env" in overrides:
        run_env = overrides.pop("env")
        if not isinstance(run_env, Mapping):
            raise JobConfigError(
                f"the run's job variable `env` is {_kind(run_env)}, not a mapping, and the "
                "deployment's `env` is a mapping to merge it into",
                hint="give the run's `env` as a mapping of names to values, or leave it out",
            )
        merged["env"].update(run_env)
    merged.update(overrides)
    return merged


# --- 2. rendering --------------------------------------------------------------------------


def render_job_configuration(
    base_job_template: Mapping[str, Any],
    job_variables: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The pool's `job_configuration` with the job variables applied (stage 2).

    Variable defaults that are None are skipped; `env` defaults, the configuration's own `env`
    mapping and the job variables' `env` merge one level; dotted keys (`env.FOO`) are
    expanded, the nested form winning; a whole-value placeholder without a value removes its
    key (so the field's default applies); an embedded one becomes "". Job variables that no
    placeholder uses are ignored. `{{ $NAME }}` reads `environ` (default: `os.environ`, as
    Prefect does). Block and variable placeholders are left for `resolve_job_references`.
    """
    configuration, schema = _template_parts(base_job_template)
    base_config: dict[str, Any] = copy.deepcopy(dict(configuration))
    variables = _variable_defaults(schema)

    default_env = variables.get("env")
    if default_env:
        if isinstance(base_config.get("env"), dict):
            base_config["env"] = _merged_env(base_config["env"], default_env, "env default")
        else:
            base_config["env"] = copy.deepcopy(default_env)

    variables.update(expand_dotted_keys(copy.deepcopy(dict(job_variables))))

    job_env = variables.get("env")
    if isinstance(base_config.get("env"), dict) and job_env:
        base_config["env"] = _merged_env(base_config["env"], job_env, "job variable `env`")

    try:
        rendered = apply_values(
            base_config,
            variables,
            environ=os.environ if environ is None else environ,
            remove_notset=True,
        )
    except TemplateError as error:
        raise _template_error(error) from None
    return dict(rendered)


def _template_parts(template: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    configuration = template.get("job_configuration")
    schema = template.get("variables")
    if not isinstance(configuration, Mapping) or not isinstance(schema, Mapping):
        raise JobConfigError(
            "the work pool's base job template needs both a `job_configuration` mapping and a "
            "`variables` mapping",
            hint="fix the pool's base_job_template, or leave it empty to use the default",
        )
    return configuration, schema


def _variable_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`{name: default}` for declared variables whose default is not None."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    return {
        name: copy.deepcopy(prop["default"])
        for name, prop in properties.items()
        if isinstance(prop, Mapping) and prop.get("default") is not None
    }


def _merged_env(base: Mapping[str, Any], more: object, what: str) -> dict[str, Any]:
    if not isinstance(more, Mapping):
        raise JobConfigError(
            f"the {what} is {_kind(more)}, not a mapping, and cannot be merged into the "
            "configuration's `env`",
            hint="give `env` as a mapping of names to values",
        )
    return {**base, **copy.deepcopy(dict(more))}


def expand_dotted_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """`{"env.FOO": 1, "env": {"BAR": 2}}` -> `{"env": {"FOO": 1, "BAR": 2}}` (stage 2).

    Dotted keys are set first (`a[0]` is `a.0`); plain keys are then put on top, deep-merged
    when both sides are mappings, else replacing.
    """
    expanded: dict[str, Any] = {}
    for key, value in values.items():
        if "." in key:
            _set_in_dict(expanded, key, value)
    for key, value in values.items():
        if "." in key:
            continue
        if isinstance(expanded.get(key), dict) and isinstance(value, dict):
            expanded[key] = _deep_merge(expanded[key], value)
        else:
            expanded[key] = value
    return expanded


def _set_in_dict(target: dict[str, Any], key_path: str, value: Any) -> None:
    keys = key_path.replace("[", ".").replace("]", "").split(".")
    current = target
    for key in keys[:-1]:
        step = current.setdefault(key, {})
        if not isinstance(step, dict):
            raise JobConfigError(
                f"job variable {key_path!r} goes through {key!r}, which another job variable "
                f"already sets to {_kind(step)}",
                hint="give each job variable once, either dotted or nested",
            )
        current = step
    current[keys[-1]] = value


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- 3. blocks and variables ---------------------------------------------------------------


def resolve_job_references(
    configuration: Mapping[str, Any],
    *,
    blocks: BlockLookup | None = None,
    variables: VariableLookup | None = None,
) -> tuple[dict[str, Any], frozenset[str]]:
    """Replace `{{ prefect.blocks.* }}`, then `{{ prefect.variables.* }}` (stage 3).

    `blocks(slug, name)` returns a block's data or None; `variables(name)` returns a
    variable's value or raises KeyError. Without a lookup there are no blocks (a reference is
    an error) or no variables (a reference becomes "", Prefect's rule for a missing variable).
    Returns the configuration and every string of the blocks it used, for masking.
    """
    secrets: set[str] = set()

    def recording_lookup(slug: str, name: str) -> Any | None:
        data = blocks(slug, name) if blocks is not None else None
        secrets.update(_strings_in(data))
        return data

    try:
        resolved = resolve_blocks(dict(configuration), recording_lookup)
        names, _ = references(resolved)
        known: dict[str, Any] = {}
        for name in sorted(names):
            if variables is None:
                continue
            try:
                known[name] = variables(name)
            except KeyError:
                continue
        resolved = resolve_variables(resolved, known)
    except TemplateError as error:
        raise _template_error(error) from None
    return dict(resolved), frozenset(secrets)


def _strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings_in(item)


def _template_error(error: TemplateError) -> JobConfigError:
    where = _render_path(error.path)
    prefix = f"job configuration `{where}`: " if where else "job configuration: "
    return JobConfigError(prefix + error.message)


def _render_path(path: TemplatePath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --- 4. typing and preparing ---------------------------------------------------------------


class _Fields:
    """The rendered configuration read as pydantic reads a job configuration: a missing key
    takes the field's default, unknown keys are ignored, values must have the field's type."""

    def __init__(self, configuration: Mapping[str, Any]) -> None:
        self._values = configuration

    def _get(self, key: str, default: Any) -> tuple[bool, Any]:
        if key in self._values:
            return True, self._values[key]
        return False, default

    def optional_text(self, key: str) -> str | None:
        _, value = self._get(key, None)
        if value is None or isinstance(value, str):
            return value
        raise _type_error(key, value, "text or null")

    def text(self, key: str) -> str | None:
        """A required-typed text field: None when missing (the caller picks the default)."""
        present, value = self._get(key, None)
        if not present:
            return None
        if isinstance(value, str):
            return value
        raise _type_error(key, value, "text")

    def boolean(self, key: str, default: bool) -> bool:
        _, value = self._get(key, default)
        parsed = _lax_bool(value)
        if parsed is None:
            raise _type_error(key, value, "true or false")
        return parsed

    def text_list(self, key: str) -> list[str]:
        _, value = self._get(key, [])
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
        raise _type_error(key, value, "a list of text")

    def text_mapping(self, key: str) -> dict[str, str]:
        _, value = self._get(key, {})
        if isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return dict(value)
        raise _type_error(key, value, "a mapping of text to text")

    def env(self) -> dict[str, str | None]:
        """`env`: values become text with `str()`, except null, which is kept."""
        _, value = self._get("env", {})
        if not isinstance(value, Mapping):
            raise _type_error("env", value, "a mapping of names to values")
        return {str(k): (None if v is None else str(v)) for k, v in value.items()}

    def optional_mapping(self, key: str) -> dict[str, Any] | None:
        _, value = self._get(key, None)
        if value is None:
            return None
        if isinstance(value, Mapping):
            return copy.deepcopy(dict(value))
        raise _type_error(key, value, "a mapping or null")

    def command(self) -> str | None:
        """`command`: an empty one is None (not configured)."""
        return self.optional_text("command") or None


def _lax_bool(value: object) -> bool | None:
    """Pydantic's lax booleans: true/false, 0/1, and words such as "yes" and "off"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _type_error(key: str, value: object, expected: str) -> JobConfigError:
    return JobConfigError(
        f"job configuration field `{key}` must be {expected}, but the rendered value is "
        f"{_kind(value)}",
        hint=f"fix the `{key}` job variable (deployment, run or pool default), or remove it "
        "to use the default",
    )


def _split_command(command: str) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise JobConfigError(
            f"the configured command cannot be split into arguments: {error}",
            hint="fix the quoting of the `command` job variable",
        ) from None
    if not argv:
        raise JobConfigError(
            "the configured command is blank",
            hint="remove the `command` job variable to run the flow with the default command",
        )
    return argv


@dataclass(frozen=True)
class _Prepared:
    """What the base `prepare_for_flow_run` leaves: env (None values dropped), labels, name."""

    env: dict[str, str]
    labels: dict[str, str]
    name: str


def _prepare(
    fields: _Fields,
    context: RunContext,
    base_env: Mapping[str, str],
    environ: Mapping[str, str],
) -> _Prepared:
    env: dict[str, str | None] = {
        **base_env,
        "PREFECT__FLOW_RUN_ID": context.flow_run_id,
        **context.attribution_env(),
        **fields.env(),
    }
    labels = {**context.base_labels(), **fields.text_mapping("labels")}
    return _Prepared(
        env={key: value for key, value in env.items() if value is not None},
        labels=labels,
        name=_job_name(fields.optional_text("name"), context, environ),
    )


def _job_name(name: str | None, context: RunContext, environ: Mapping[str, str]) -> str:
    """A configured name with `{{ ctx.flow.* }}`/`{{ ctx.flow_run.* }}` filled in; else (or
    when that leaves nothing) the run's name."""
    rendered: object = name
    if name:
        value = apply_values(
            name, {"ctx": context.template_context()}, environ=environ, remove_notset=True
        )
        if value is not NOTSET:
            rendered = value
    rendered = rendered or context.flow_run_name
    return rendered if isinstance(rendered, str) else str(rendered)


def _prepared_configuration(
    base_job_template: Mapping[str, Any],
    pool_type: str,
    deployment_vars: Mapping[str, Any],
    run_vars: Mapping[str, Any],
    environ: Mapping[str, str],
    blocks: BlockLookup | None,
    variables: VariableLookup | None,
) -> tuple[_Fields, frozenset[str]]:
    template = base_job_template or default_base_job_template(pool_type)
    values = merge_job_variables(deployment_vars, run_vars)
    rendered = render_job_configuration(template, values, environ=environ)
    resolved, secrets = resolve_job_references(rendered, blocks=blocks, variables=variables)
    fields = _Fields(resolved)
    from_environment = environment_secrets([template, values], fields.env(), environ=environ)
    return fields, secrets | from_environment


def environment_secrets(
    templates: Sequence[object],
    job_env: Mapping[str, str | None],
    *,
    environ: Mapping[str, str],
) -> frozenset[str]:
    """The environment values a job uses that plans mask (`masking.looks_secret` on the
    variable's name): those `{{ $NAME }}` placeholders in `templates` read, and the values of
    the job's `env` that equal such a variable of `environ` (a placeholder the plan already
    resolved, with the same environment)."""
    found = {
        environ[name]
        for placeholder in find_placeholders(list(templates))
        if placeholder.kind is PlaceholderKind.ENV
        and looks_secret(name := placeholder.name.lstrip("$"))
        and environ.get(name)
    }
    secret_values = {value for name, value in environ.items() if value and looks_secret(name)}
    found.update(value for value in job_env.values() if value in secret_values)
    return frozenset(found)


def process_job(
    base_job_template: Mapping[str, Any],
    deployment_vars: Mapping[str, Any],
    run_vars: Mapping[str, Any],
    context: RunContext,
    *,
    default_command: Sequence[str] | None = None,
    base_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    blocks: BlockLookup | None = None,
    variables: VariableLookup | None = None,
) -> ProcessJob:
    """The process job of a run, as Prefect's process worker prepares it (#process-runs).

    An empty `base_job_template` is the default process template (what a worker installs).
    `default_command` runs when no command is configured (default:
    `[sys.executable, "-m", "reconciler.worker.flow_runner"]`). `base_env` is the worker's own
    settings for every run (Prefect's explicitly-set settings): job `env` overrides it, and a
    job `env` entry of null removes it. `environ` (default `os.environ`) is the worker's
    environment: `{{ $NAME }}` reads it and the process inherits it; a null `env` entry does
    not remove an inherited variable (Prefect drops nulls before adding the environment).
    """
    environment = os.environ if environ is None else environ
    fields, secrets = _prepared_configuration(
        base_job_template, "process", deployment_vars, run_vars, environment, blocks, variables
    )
    command = fields.command()
    stream_output = fields.boolean("stream_output", True)
    working_dir = fields.optional_text("working_dir")
    prepared = _prepare(fields, context, base_env or {}, environment)
    return ProcessJob(
        command=(
            _split_command(command)
            if command is not None
            else list(default_command or (sys.executable, "-m", RUNNER_MODULE))
        ),
        command_configured=command is not None,
        env={**environment, **prepared.env},
        working_dir=None if working_dir is None else str(Path(working_dir)),
        stream_output=stream_output,
        name=prepared.name,
        labels=prepared.labels,
        secrets=secrets,
    )


def docker_job(
    base_job_template: Mapping[str, Any],
    deployment_vars: Mapping[str, Any],
    run_vars: Mapping[str, Any],
    context: RunContext,
    *,
    default_command: Sequence[str] | None = None,
    default_image: str | None = None,
    base_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    blocks: BlockLookup | None = None,
    variables: VariableLookup | None = None,
    platform: str | None = None,
) -> DockerJob:
    """The container job of a run, as prefect-docker's worker prepares it (#docker-runs).

    An empty `base_job_template` is the default docker template. `default_command` runs when
    no command is configured (default: `["python", "-m", "reconciler.worker.flow_runner"]`,
    the image's Python). `default_image` replaces Prefect's "the worker's Prefect image" when
    no image is configured; without one that is an error. `base_env` is the worker's own
    settings (a local PREFECT_API_URL in it is rewritten to `host.docker.internal` unless the
    container uses the host network); `environ` (default `os.environ`) is only read by
    `{{ $NAME }}` placeholders: a container does not inherit the worker's environment.
    `platform` (default `sys.platform`) decides the inferred `host` network mode.
    """
    environment = os.environ if environ is None else environ
    fields, secrets = _prepared_configuration(
        base_job_template, "docker", deployment_vars, run_vars, environment, blocks, variables
    )
    command = fields.command()
    image = fields.text("image") or default_image
    if not image:
        raise JobConfigError(
            "the docker job has no image: the `image` job variable is not set and the worker "
            "has no default image",
            hint="set `image` in the deployment's job_variables or as the pool's default",
        )
    pull_policy = fields.optional_text("image_pull_policy")
    if pull_policy is not None and pull_policy not in PULL_POLICIES:
        raise JobConfigError(
            f"job configuration field `image_pull_policy` must be one of "
            f"{', '.join(PULL_POLICIES)} or null",
            hint="fix the `image_pull_policy` job variable",
        )
    volumes = fields.text_list("volumes")
    for volume in volumes:
        check_volume(volume)
    networks = fields.text_list("networks")
    network_mode = fields.optional_text("network_mode")
    job_env = fields.env()

    worker_env = dict(base_env or {})
    api_url = job_env.get("PREFECT_API_URL", worker_env.get("PREFECT_API_URL"))
    mode_during_prepare = network_mode or (
        None if networks else inferred_network_mode(api_url, platform)
    )
    if worker_env.get("PREFECT_API_URL") and mode_during_prepare != "host":
        worker_env["PREFECT_API_URL"] = container_api_url(worker_env["PREFECT_API_URL"])

    prepared = _prepare(fields, context, worker_env, environment)
    labels = docker_labels({**prepared.labels, "io.prefect.version": context.version})
    return DockerJob(
        image=image,
        command=(
            _split_command(command)
            if command is not None
            else list(default_command or ("python", "-m", RUNNER_MODULE))
        ),
        command_configured=command is not None,
        env=prepared.env,
        labels=labels,
        name=container_name(prepared.name),
        volumes=volumes,
        networks=networks,
        network_mode=network_mode,
        mem_limit=fields.optional_text("mem_limit"),
        memswap_limit=fields.optional_text("memswap_limit"),
        privileged=fields.boolean("privileged", False),
        auto_remove=fields.boolean("auto_remove", False),
        image_pull_policy=pull_policy,
        stream_output=fields.boolean("stream_output", True),
        registry_credentials=_registry_credentials(fields.optional_mapping("registry_credentials")),
        container_create_kwargs=fields.optional_mapping("container_create_kwargs"),
        secrets=secrets,
    )


def _registry_credentials(data: Mapping[str, Any] | None) -> RegistryCredentials | None:
    if data is None:
        return None
    missing = [
        key
        for key in ("username", "password", "registry_url")
        if not isinstance(data.get(key), str)
    ]
    if missing:
        raise JobConfigError(
            "job configuration field `registry_credentials` needs text values for "
            + ", ".join(f"`{key}`" for key in missing),
            hint="point `registry_credentials` at a docker-registry-credentials block with "
            "username, password and registry_url",
        )
    reauth = _lax_bool(data.get("reauth", True))
    if reauth is None:
        raise _type_error("registry_credentials.reauth", data.get("reauth"), "true or false")
    return RegistryCredentials(
        username=data["username"],
        password=data["password"],
        registry_url=data["registry_url"],
        reauth=reauth,
    )


def check_volume(volume: str) -> None:
    """Raise JobConfigError unless prefect-docker accepts `volume` (see `volume_problem`)."""
    problem = volume_problem(volume)
    if problem:
        raise JobConfigError(
            f"invalid volume {volume!r}: {problem}",
            hint="write volumes as HOST_PATH:CONTAINER_PATH[:ro|rw] or NAME:CONTAINER_PATH",
        )
