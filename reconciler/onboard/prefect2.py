"""Prefect 2 `deployment.yaml` files (what `prefect deployment build` wrote) to Prefect 3
`prefect.yaml` and `work-pools.yaml`, as Prefect's guide for upgrading from agents to workers
does it by hand:

- the infrastructure block becomes a work pool of the matching type (`process` -> `process`,
  `docker-container` -> `docker`, `kubernetes-job` -> `kubernetes`; others have no pool type
  and are reported) and its settings become the deployment's job variables, where the pool
  type's base job template declares them (reconciler/prefect_rules/job_templates.py),
  together with `infra_overrides`; a kubernetes job's `job` manifest, `customizations`
  (JSON patches) and `cluster_config` have no job variable and are reported. Every pool
  (kubernetes ones too, run by Prefect's kubernetes worker) is written to work-pools.yaml;
- the storage block becomes pull steps: none (local) -> `set_working_directory` to the path
  the deployment was built in; `local-file-system` -> its basepath; `github` / `gitlab` /
  `git` repository blocks -> `git_clone`; `s3`, `gcs`, `azure` -> the `pull_from_*` step of
  the matching Prefect integration; the deployment's `path` inside the storage is where the
  flow runs;
- `schedule` + `is_schedule_active` become one entry of `schedules`; `work_queue_name`
  becomes the pool's queue.

An infrastructure or storage block is given inline (as the build wrote it) or by name only,
its document then read from a `--blocks` file: JSON or YAML, a mapping
`{"SLUG/NAME": {fields}}` or a list of `{block_type_slug, name, data}`, or else from a Prefect
server (`--blocks-from`, `read_block`: reconciler/prefect_target/blocks.py). A `--blocks` file
wins over the server: the server is asked only for blocks no file gives, and a block it does
not have either is an error naming the block and the deployment file. Whatever has no
Prefect 3 equivalent is listed in the result (`untranslated`), never dropped silently.
Secrets follow the import's rule (reconciler/onboard/secrets.py); a block's secret fields
from the server (masked there) are written as placeholders to provide."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.errors import UserError
from reconciler.onboard.secrets import Needed, SecretRule
from reconciler.onboard.yaml_emit import Commented, emit
from reconciler.prefect_rules.job_templates import default_base_job_template

POOL_TYPES = {"process": "process", "docker-container": "docker", "kubernetes-job": "kubernetes"}
"""Prefect 2 infrastructure block type -> the work-pool type (all declared in work-pools.yaml)."""
_NO_JOB_VARIABLE = {
    "job": "a whole Kubernetes job manifest: carry what differs from the kubernetes pool's "
    "`job_manifest` into its base job template by hand",
    "customizations": "JSON patches of the job manifest: apply them to the kubernetes pool's "
    "base job template (`job_manifest`) by hand",
    "cluster_config": "give the kubernetes pool's workers their cluster (in-cluster config, or a "
    "Prefect 3 kubernetes-cluster-config block)",
}
"""Prefect 2 infrastructure settings that no worker job variable takes, and what to do."""
_IGNORED_INFRA_KEYS = frozenset({"type", "block_type_slug"})
_PULL_POLICIES = {"IF_NOT_PRESENT": "IfNotPresent", "ALWAYS": "Always", "NEVER": "Never"}
"""Prefect 2's DockerContainer spelling -> the docker worker's."""
_COMPUTED_KEYS = frozenset(
    {
        "flow_name",
        "manifest_path",
        "parameter_openapi_schema",
        "timestamp",
        "infrastructure",
        "storage",
        "schedule",
        "is_schedule_active",
        "infra_overrides",
        "work_queue_name",
        "work_pool_name",
        "path",
        "triggers",
        "enforce_parameter_schema",
        "name",
        "description",
        "version",
        "tags",
        "parameters",
        "entrypoint",
        "schedules",
        "paused",
        "work_pool_queue_name",
    }
)


@dataclass
class Prefect2Result:
    prefect_yaml: str
    pools_yaml: str | None
    deployments: list[str]
    needed: list[Needed] = field(default_factory=list)
    untranslated: list[str] = field(default_factory=list)


@dataclass
class _Pool:
    name: str
    type: str
    queues: list[str] = field(default_factory=list)


ReadBlock = Callable[[str, str], tuple[dict[str, Any], tuple[str, ...]] | None]
"""(slug, name) -> (fields, secret field paths) of a block a server holds; None: no such block."""


def translate_files(
    files: Sequence[Path],
    blocks_files: Sequence[Path],
    read_block: ReadBlock | None = None,
    server: str = "",
) -> Prefect2Result:
    """Translate `files`; named blocks come from `blocks_files`, then from `read_block` (the
    Prefect server `server`) for those no file gives."""
    blocks: dict[tuple[str, str], Any] = {}
    for path in blocks_files:
        blocks.update(_read_blocks(path))
    documents = [(path, _read_mapping(path)) for path in files]
    fetched: dict[tuple[str, str], tuple[dict[str, Any], tuple[str, ...]]] = {}
    if read_block is not None:
        for path, document in documents:
            for kind in ("infrastructure", "storage"):
                ref = _reference(document.get(kind))
                if ref is None or ref in blocks or ref in fetched:
                    continue
                found = read_block(*ref)
                if found is None:
                    raise UserError(
                        f"{kind} block {ref[0]}/{ref[1]} named by {path} does not exist on "
                        f"the Prefect server at {server}",
                        "create it there, give it in a --blocks file, or correct its name in "
                        f"{path}",
                    )
                fetched[ref] = found
    return translate(documents, blocks, fetched)


def translate(
    documents: Sequence[tuple[Path, Mapping[str, Any]]],
    blocks: Mapping[tuple[str, str], Any],
    server_blocks: Mapping[tuple[str, str], tuple[dict[str, Any], tuple[str, ...]]] | None = None,
) -> Prefect2Result:
    """`server_blocks`: (fields, secret field paths) of blocks read from a server; their secret
    fields become placeholders to provide."""
    rule = SecretRule({k: v for k, v in blocks.items() if k[0] in ("secret", "string")})
    if server_blocks:
        blocks = dict(blocks)
        for (slug, name), (data, secret_fields) in sorted(server_blocks.items()):
            ref = f"{slug}/{name}"
            blocks[(slug, name)] = rule.hide_fields(data, secret_fields, f"block {ref}", ref)
    untranslated: list[str] = []
    pools: dict[str, _Pool] = {}
    entries: list[Any] = []
    names: list[str] = []
    for path, document in documents:
        entry = _deployment(path, document, blocks, rule, pools, untranslated)
        if entry is not None:
            names.append(str(document.get("name")))
            entries.append(Commented((f"deployment {document.get('name')}: from {path}",), entry))
    if not entries:
        raise UserError("no deployment could be translated", "; ".join(untranslated) or None)
    prefect_yaml = emit(
        {"prefect-version": "3.9.1", "deployments": entries},
        (
            "Translated from Prefect 2 deployment files by `reconcile import --from-prefect2`.",
            "Infrastructure blocks became work pools (work-pools.yaml) and job variables;",
            "storage blocks became pull steps.",
        ),
    )
    pools_yaml = None
    if pools:
        pools_yaml = emit(
            {
                "work_pools": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "queues": [{"name": q} for q in sorted(set(p.queues))],
                    }
                    if p.queues
                    else {"name": p.name, "type": p.type}
                    for p in sorted(pools.values(), key=lambda p: p.name)
                ]
            },
            ("Work pools for the translated deployments (one per infrastructure block).",),
        )
    return Prefect2Result(prefect_yaml, pools_yaml, names, sorted(rule.needed), untranslated)


# --- reading ---------------------------------------------------------------------------------


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a deployment file is a mapping (name, flow_name, ...)")
    return data


def _read_blocks(path: Path) -> dict[tuple[str, str], Any]:
    data = _read_mapping_or_list(path)
    found: dict[tuple[str, str], Any] = {}
    if isinstance(data, dict):
        for ref, fields in data.items():
            slug, _, name = str(ref).partition("/")
            if not name or not isinstance(fields, dict):
                raise UserError(
                    f'{path}: block "{ref}" must be written "SLUG/NAME": {{fields}}',
                    'for example "docker-container/etl": {"image": "etl:1"}',
                )
            found[(slug, name)] = fields
    else:
        for item in data:
            if not isinstance(item, dict) or not {"block_type_slug", "name"} <= item.keys():
                raise UserError(f"{path}: each block is a mapping with block_type_slug and name")
            fields = item.get("data", {})
            found[(str(item["block_type_slug"]), str(item["name"]))] = fields
    return found


def _read_mapping_or_list(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError):
        raise UserError(f"{path}: not valid JSON or YAML") from None
    if not isinstance(data, dict | list):
        raise UserError(f"{path}: the blocks file is a mapping or a list of blocks")
    return data


def _reference(value: Any) -> tuple[str, str] | None:
    """(slug, name) of a block the deployment file names without giving its fields."""
    if isinstance(value, str):
        slug, _, name = value.partition("/")
        return (slug, name) if slug and name else None
    if not isinstance(value, dict):
        return None
    kind: Any = value.get("_block_type_slug") or value.get("block_type_slug") or value.get("type")
    title: Any = value.get("_block_document_name")
    fields = {k for k in value if not str(k).startswith("_")}
    if fields - {"block_type_slug", "type"} or value.get("_is_anonymous"):
        return None
    if isinstance(kind, str) and isinstance(title, str) and not title.startswith("anonymous-"):
        return kind, title
    return None


def _block(
    value: Any,
    kind: str,
    where: str,
    blocks: Mapping[tuple[str, str], Any],
    untranslated: list[str],
) -> tuple[str | None, str | None, dict[str, Any]]:
    """(slug, name, fields) of an inline or named block; name None when anonymous."""
    if value is None:
        return None, None, {}
    if isinstance(value, str):  # "SLUG/NAME"
        ref_slug, _, ref_name = value.partition("/")
        stored = blocks.get((ref_slug, ref_name))
        if stored is None:
            untranslated.append(f"{where}: {kind} block {value} is not in any --blocks file")
            return ref_slug, ref_name, {}
        return ref_slug, ref_name, dict(stored)
    if not isinstance(value, dict):
        untranslated.append(f"{where}: {kind} is not a block document")
        return None, None, {}
    slug: Any = value.get("_block_type_slug") or value.get("block_type_slug") or value.get("type")
    name: Any = value.get("_block_document_name")
    anonymous = bool(value.get("_is_anonymous")) or (
        isinstance(name, str) and name.startswith("anonymous-")
    )
    fields = {k: v for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(slug, str) and isinstance(name, str) and (slug, name) in blocks:
        fields = {**blocks[(slug, name)], **fields}
    only_reference = not (fields.keys() - {"block_type_slug", "type"})
    if only_reference and isinstance(slug, str) and isinstance(name, str):
        stored = blocks.get((slug, name))
        if stored is None:
            untranslated.append(f"{where}: {kind} block {slug}/{name} is not in any --blocks file")
        else:
            fields = dict(stored)
    return (
        str(slug) if slug else None,
        None if anonymous or not isinstance(name, str) else name,
        fields,
    )


# --- one deployment --------------------------------------------------------------------------


def _deployment(
    path: Path,
    document: Mapping[str, Any],
    blocks: Mapping[tuple[str, str], Any],
    rule: SecretRule,
    pools: dict[str, _Pool],
    untranslated: list[str],
) -> dict[str, Any] | None:
    name = document.get("name")
    where = f"{path} ({name})"
    if not isinstance(name, str) or not isinstance(document.get("entrypoint"), str):
        untranslated.append(f"{path}: not a Prefect 2 deployment (no name or entrypoint)")
        return None
    entry: dict[str, Any] = {"name": name, "entrypoint": document["entrypoint"]}
    for key in ("description", "version"):
        if document.get(key) is not None:
            entry[key] = document[key]
    if document.get("tags"):
        entry["tags"] = list(document["tags"])
    if document.get("parameters"):
        entry["parameters"] = rule.scrub(dict(document["parameters"]), f"deployment {name}")
    if document.get("enforce_parameter_schema") is not None:
        entry["enforce_parameter_schema"] = bool(document["enforce_parameter_schema"])
    schedule = _schedule(document, where, untranslated)
    if schedule is not None:
        entry["schedules"] = [schedule]
    pool = _work_pool(document, where, blocks, rule, pools, untranslated)
    if pool is not None:
        entry["work_pool"] = pool
    entry["pull"] = _pull_steps(document, where, blocks, rule, untranslated)
    if document.get("triggers"):
        untranslated.append(f"{where}: triggers (automations) are not declared in prefect.yaml")
    for key in sorted(set(document) - _COMPUTED_KEYS):
        untranslated.append(f'{where}: "{key}" has no Prefect 3 equivalent; left out')
    return entry


def _schedule(
    document: Mapping[str, Any], where: str, untranslated: list[str]
) -> dict[str, Any] | None:
    raw = document.get("schedule")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        untranslated.append(f"{where}: schedule is not a mapping")
        return None
    entry: dict[str, Any] = {}
    if raw.get("cron") is not None:
        entry["cron"] = raw["cron"]
        if raw.get("day_or") is False:
            entry["day_or"] = False
    elif raw.get("interval") is not None:
        entry["interval"] = raw["interval"]
        if raw.get("anchor_date") is not None:
            entry["anchor_date"] = str(raw["anchor_date"])
    elif raw.get("rrule") is not None:
        entry["rrule"] = raw["rrule"]
    else:
        untranslated.append(f"{where}: schedule {sorted(raw)} is not cron, interval or rrule")
        return None
    if raw.get("timezone"):
        entry["timezone"] = raw["timezone"]
    if document.get("is_schedule_active") is False:
        entry["active"] = False
    return entry


def _work_pool(
    document: Mapping[str, Any],
    where: str,
    blocks: Mapping[tuple[str, str], Any],
    rule: SecretRule,
    pools: dict[str, _Pool],
    untranslated: list[str],
) -> dict[str, Any] | None:
    slug, block_name, fields = _block(
        document.get("infrastructure"), "infrastructure", where, blocks, untranslated
    )
    slug = slug or "process"  # an agent without an infrastructure block ran a local process
    pool_type = POOL_TYPES.get(slug)
    queue = document.get("work_queue_name") or "default"
    named = document.get("work_pool_name")
    if pool_type is None:
        untranslated.append(
            f'{where}: infrastructure "{slug}" has no work-pool type here (process, docker, '
            "kubernetes); the deployment names a pool you must make"
        )
        pool_name = named or f"{slug}-pool"
        block = {"name": pool_name, "work_queue_name": queue}
        return block
    pool_name = named or block_name or f"{pool_type}-pool"
    pool = pools.setdefault(pool_name, _Pool(pool_name, pool_type))
    if pool.type != pool_type:
        untranslated.append(
            f'{where}: pool "{pool_name}" is used with types {pool.type} and {pool_type}; '
            f"kept {pool.type}"
        )
    if queue != "default":
        pool.queues.append(queue)
    declared = (default_base_job_template(pool.type).get("variables") or {}).get("properties", {})
    job_variables: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _IGNORED_INFRA_KEYS or value is None or value in ({}, []):
            continue
        if key == "image_pull_policy" and isinstance(value, str):
            value = _PULL_POLICIES.get(value, value)
        if key == "image_registry":
            untranslated.append(
                f"{where}: image_registry: give the pool's `registry_credentials` a Prefect 3 "
                "docker-registry-credentials block instead"
            )
            continue
        if key in _NO_JOB_VARIABLE and key not in declared:
            untranslated.append(
                f'{where}: infrastructure setting "{key}" has no job variable in {pool.type} '
                f"pools: {_NO_JOB_VARIABLE[key]}"
            )
            continue
        if key == "command" and isinstance(value, list):  # Prefect 2: argv; workers: a text
            value = shlex.join(str(part) for part in value)
        default = declared.get(key, {}).get("default") if isinstance(declared, dict) else None
        if key not in declared:
            untranslated.append(
                f'{where}: infrastructure setting "{key}" is not a job variable of {pool.type} '
                "pools; left out"
            )
        elif value != default:
            job_variables[key] = value
    for dotted, value in (document.get("infra_overrides") or {}).items():
        target = job_variables
        parts = str(dotted).split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    entry: dict[str, Any] = {"name": pool_name, "work_queue_name": queue}
    if job_variables:
        entry["job_variables"] = rule.scrub(job_variables, f"deployment {document.get('name')}")
    return entry


def _pull_steps(
    document: Mapping[str, Any],
    where: str,
    blocks: Mapping[tuple[str, str], Any],
    rule: SecretRule,
    untranslated: list[str],
) -> list[Any]:
    slug, _, fields = _block(document.get("storage"), "storage", where, blocks, untranslated)
    sub = str(document.get("path") or "").strip("/")
    name = str(document.get("name"))

    def scrub(value: dict[str, Any]) -> Any:
        return rule.scrub(value, f"deployment {name}")

    if slug is None:
        directory = document.get("path")
        if not directory:
            untranslated.append(f"{where}: no storage and no path: no pull step written")
            return []
        return [{"prefect.deployments.steps.set_working_directory": {"directory": directory}}]
    if slug == "local-file-system":
        base = str(fields.get("basepath") or ".")
        directory = f"{base.rstrip('/')}/{sub}" if sub else base
        return [{"prefect.deployments.steps.set_working_directory": {"directory": directory}}]
    if slug in ("github", "gitlab-repository", "git-repository", "gitlab"):
        repository = fields.get("repository") or fields.get("url")
        clone: dict[str, Any] = {"id": "clone", "repository": repository}
        if fields.get("reference"):
            clone["branch"] = fields["reference"]
        credentials = fields.get("access_token") or fields.get("credentials")
        if isinstance(credentials, Mapping):  # a credentials block (GitHubCredentials...)
            token = credentials.get("token") or credentials.get("access_token")
            if token is None and credentials:
                untranslated.append(
                    f"{where}: {slug} credentials without a token: give git_clone its "
                    "`credentials` block by hand"
                )
            credentials = token
        if credentials:
            clone["access_token"] = credentials
        steps: list[Any] = [{"prefect.deployments.steps.git_clone": scrub(clone)}]
        if sub:
            steps.append(
                {
                    "prefect.deployments.steps.set_working_directory": {
                        "directory": "{{ clone.directory }}/" + sub
                    }
                }
            )
        return steps
    cloud = {
        "s3": ("prefect_aws.deployments.steps.pull_from_s3", "prefect-aws"),
        "gcs": ("prefect_gcp.deployments.steps.pull_from_gcs", "prefect-gcp"),
        "azure": ("prefect_azure.deployments.steps.pull_from_azure_blob_storage", "prefect-azure"),
    }
    if slug in cloud:
        step, package = cloud[slug]
        bucket_path = str(fields.get("bucket_path") or fields.get("container") or "")
        bucket, _, folder = bucket_path.partition("/")
        body: dict[str, Any] = {"requires": package, "bucket": bucket, "folder": folder}
        secrets = {
            k: v
            for k, v in fields.items()
            if k not in ("bucket_path", "container") and v is not None
        }
        if secrets:
            body["credentials"] = secrets
            untranslated.append(
                f"{where}: {slug} storage settings became the step's `credentials`; a Prefect 3 "
                "credentials block is the better home for them"
            )
        return [{step: scrub(body)}]
    untranslated.append(f'{where}: storage block type "{slug}" has no pull step; none written')
    return []
