"""`reconcile import --from-prefect2 FILE... --blocks-from prefect+http://HOST/api` (issue 19):
Prefect 2 deployment.yaml files that name their infrastructure and storage blocks only, the
block documents read from a real `prefect server` (the session's, tests/infra/prefect_server.py).

Prefect 3 has no Process / DockerContainer block types any more: the test registers `process`,
`docker-container`, `kubernetes-job` and `github` block types and schemas shaped like Prefect
2's (secret fields: env entries, a SecretStr-like token), then block documents, and runs the
import as a user would (a subprocess). The written files plan without errors (a kubernetes
deployment against the server, once its pool is made as the report says); secrets never
leave the server (read masked) and come out as placeholders to provide; a --blocks file wins
over the server; an unreachable server, a refused key and a missing block write nothing."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.prefect_rules.job_templates import default_base_job_template
from reconciler.prefect_rules.yamlload import load_yaml
from tests.conftest import CliResult, GitRepo
from tests.infra.prefect_server import PrefectRequestFailed, PrefectServer

pytestmark = pytest.mark.prefect

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "examples" / "01-data-project" / "flows"
DB_SECRET = "p2-server-db-secret"
DSN_SECRET = "postgresql://etl:p2-dsn-secret@db/warehouse"  # secret by its schema, not its name
TOKEN_SECRET = "ghp_p2-server-token-secret"
AUTH = "admin:s3cret"

# Prefect 2 block schemas, as its Process, DockerContainer and GitHub blocks registered them
# (fields trimmed to what the worker's job variables and the pull steps take).
SCHEMAS: dict[str, dict[str, Any]] = {
    "process": {
        "title": "Process",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["process"], "default": "process"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "name": {"type": "string"},
            "command": {"type": "array", "items": {"type": "string"}},
            "stream_output": {"type": "boolean", "default": True},
            "working_dir": {"type": "string", "format": "path"},
        },
        "secret_fields": ["env.DB_PASSWORD", "env.WAREHOUSE_DSN"],
        "block_schema_references": {},
    },
    "docker-container": {
        "title": "DockerContainer",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["docker-container"]},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "name": {"type": "string"},
            "command": {"type": "array", "items": {"type": "string"}},
            "image": {"type": "string"},
            "image_pull_policy": {"enum": ["IF_NOT_PRESENT", "ALWAYS", "NEVER"]},
            "image_registry": {"type": "object"},
            "networks": {"type": "array", "items": {"type": "string"}},
            "network_mode": {"type": "string"},
            "auto_remove": {"type": "boolean", "default": False},
            "volumes": {"type": "array", "items": {"type": "string"}},
            "stream_output": {"type": "boolean", "default": True},
            "memswap_limit": {"type": "string"},
            "mem_limit": {"type": "string"},
            "privileged": {"type": "boolean", "default": False},
        },
        "secret_fields": [],
        "block_schema_references": {},
    },
    "kubernetes-job": {
        "title": "KubernetesJob",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["kubernetes-job"]},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "name": {"type": "string"},
            "command": {"type": "array", "items": {"type": "string"}},
            "image": {"type": "string"},
            "namespace": {"type": "string", "default": "default"},
            "service_account_name": {"type": "string"},
            "image_pull_policy": {"enum": ["IfNotPresent", "Always", "Never"]},
            "finished_job_ttl": {"type": "integer"},
            "job_watch_timeout_seconds": {"type": "integer"},
            "pod_watch_timeout_seconds": {"type": "integer", "default": 60},
            "stream_output": {"type": "boolean", "default": True},
            "job": {"type": "object"},
            "customizations": {"type": "array", "items": {"type": "object"}},
            "cluster_config": {"type": "object"},
        },
        "secret_fields": [],
        "block_schema_references": {},
    },
    "github-credentials": {
        "title": "GitHubCredentials",
        "type": "object",
        "properties": {"token": {"type": "string", "format": "password", "writeOnly": True}},
        "secret_fields": ["token"],
        "block_schema_references": {},
    },
    "github": {
        "title": "GitHub",
        "type": "object",
        "properties": {
            "repository": {"type": "string"},
            "reference": {"type": "string"},
            "access_token": {"type": "string", "format": "password", "writeOnly": True},
            "include_git_objects": {"type": "boolean", "default": True},
        },
        "secret_fields": ["access_token"],
        "block_schema_references": {},
    },
}


def ensure_block_type(server: PrefectServer, slug: str) -> tuple[str, str]:
    """(block type id, block schema id) of `slug`, registered when missing."""
    try:
        block_type = server.request("GET", f"/block_types/slug/{slug}")
    except PrefectRequestFailed:
        title = SCHEMAS[slug]["title"]
        block_type = server.request("POST", "/block_types/", {"name": title, "slug": slug})
    fields = {**SCHEMAS[slug], "block_type_slug": slug}
    schema = server.request(
        "POST",
        "/block_schemas/",
        {"fields": fields, "block_type_id": block_type["id"], "capabilities": [], "version": "2"},
    )
    return block_type["id"], schema["id"]


def make_block(server: PrefectServer, slug: str, name: str, data: dict[str, Any]) -> str:
    """The new block document's id."""
    type_id, schema_id = ensure_block_type(server, slug)
    return server.request(  # type: ignore[no-any-return]
        "POST",
        "/block_documents/",
        {"name": name, "data": data, "block_type_id": type_id, "block_schema_id": schema_id},
    )["id"]


def deployment_yaml(name: str, entrypoint: str, infrastructure: str, storage: str) -> str:
    slug, block = infrastructure.split("/")
    return f"""\
###
### A complete description of a Prefect Deployment for flow '{name}'
###
name: {name}
description: null
version: null
work_queue_name: default
work_pool_name: null
tags: []
parameters: {{}}
schedule:
  cron: 0 4 * * *
  timezone: UTC
is_schedule_active: true
infra_overrides: {{}}
infrastructure:
  _block_document_name: {block}
  _block_type_slug: {slug}

###
### DO NOT EDIT BELOW THIS LINE
###
flow_name: {name}
manifest_path: null
storage: {storage}
path: {"null" if storage != "null" else "/srv/flows/data-project"}
entrypoint: {entrypoint}
parameter_openapi_schema: null
timestamp: '2023-09-14T08:12:31.000000+00:00'
triggers: []
enforce_parameter_schema: null
"""


class Blocks:
    """This test's block names (a uuid suffix: the server is the session's)."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.process = f"nightly-{suffix}"
        self.docker = f"reports-{suffix}"
        self.repo = f"repo-{suffix}"


@pytest.fixture
def blocks(prefect_server: PrefectServer) -> Blocks:
    names = Blocks()
    make_block(
        prefect_server,
        "process",
        names.process,
        {
            "type": "process",
            "env": {"DB_PASSWORD": DB_SECRET, "WAREHOUSE_DSN": DSN_SECRET, "LOG_LEVEL": "INFO"},
            "labels": {},
            "stream_output": True,
            "working_dir": "/srv/flows/data-project",
        },
    )
    make_block(
        prefect_server,
        "docker-container",
        names.docker,
        {
            "type": "docker-container",
            "image": "registry.local/reports:2023.09",
            "image_pull_policy": "ALWAYS",
            "auto_remove": True,
            "networks": ["flows"],
            "volumes": ["/data:/data:ro"],
            "stream_output": True,
            "env": {"TZ": "UTC"},
            "mem_limit": "2g",
        },
    )
    make_block(
        prefect_server,
        "github",
        names.repo,
        {
            "repository": "https://github.com/acme/data-project.git",
            "reference": "main",
            "access_token": TOKEN_SECRET,
        },
    )
    return names


def write_deployments(work: Path, names: Blocks) -> list[Path]:
    work.mkdir(exist_ok=True)
    nightly = work / "nightly.yaml"
    nightly.write_text(
        deployment_yaml("orders-nightly", "flows/etl.py:ingest", f"process/{names.process}", "null")
    )
    reports = work / "reports.yaml"
    reports.write_text(
        deployment_yaml(
            "reports-emea",
            "flows/etl.py:build_reports",
            f"docker-container/{names.docker}",
            f"github/{names.repo}",
        )
    )
    return [nightly, reports]


def parsed(path: Path) -> dict[str, Any]:
    document = load_yaml(path.read_bytes(), path.name)
    assert not [d for d in document.diagnostics if d.is_error]
    assert isinstance(document.data, dict)
    return document.data


def test_named_blocks_are_read_from_the_server_and_the_files_plan(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    blocks: Blocks,
    store_url: str,
    tmp_path: Path,
) -> None:
    files = write_deployments(tmp_path / "p2", blocks)
    out = tmp_path / "out"
    done = run_cli(
        "import", "--from-prefect2", *map(str, files),
        "--blocks-from", f"prefect+{prefect_server.api_url}", "--out", str(out),
    )  # fmt: skip
    assert done.code == 0, done.output
    assert "translated 2 deployment(s)" in done.stdout
    assert "is not in any --blocks file" not in done.stdout
    written = {p.name: p.read_text() for p in out.iterdir()}
    assert sorted(written) == ["prefect.yaml", "work-pools.yaml"]
    for secret in (DB_SECRET, DSN_SECRET, TOKEN_SECRET, "********"):
        assert all(secret not in text for text in written.values())
        assert secret not in done.output
    # the block schema's secret fields: placeholders, listed as values to provide
    assert "{{ $DB_PASSWORD }}: environment variable DB_PASSWORD" in done.stdout
    assert "{{ $ACCESS_TOKEN }}: environment variable ACCESS_TOKEN" in done.stdout
    assert (
        "{{ $WAREHOUSE_DSN_SECRET }}: environment variable WAREHOUSE_DSN_SECRET when planning; "
        f"used by block process/{blocks.process}"
    ) in done.stdout

    nightly, reports = parsed(out / "prefect.yaml")["deployments"]
    assert nightly["work_pool"] == {
        "name": blocks.process,
        "work_queue_name": "default",
        "job_variables": {
            "env": {
                "DB_PASSWORD": "{{ $DB_PASSWORD }}",
                "WAREHOUSE_DSN": "{{ $WAREHOUSE_DSN_SECRET }}",
                "LOG_LEVEL": "INFO",
            },
            "working_dir": "/srv/flows/data-project",
        },
    }
    assert reports["work_pool"] == {
        "name": blocks.docker,
        "work_queue_name": "default",
        "job_variables": {
            "image": "registry.local/reports:2023.09",
            "image_pull_policy": "Always",
            "auto_remove": True,
            "networks": ["flows"],
            "volumes": ["/data:/data:ro"],
            "env": {"TZ": "UTC"},
            "mem_limit": "2g",
        },
    }
    assert reports["pull"] == [
        {
            "prefect.deployments.steps.git_clone": {
                "id": "clone",
                "repository": "https://github.com/acme/data-project.git",
                "branch": "main",
                "access_token": "{{ $ACCESS_TOKEN }}",
            }
        }
    ]
    assert parsed(out / "work-pools.yaml")["work_pools"] == [
        {"name": blocks.process, "type": "process"},
        {"name": blocks.docker, "type": "docker"},
    ]

    repo = make_repo({})
    shutil.copytree(FLOWS, repo.path / "flows")
    for path in out.iterdir():
        shutil.copy(path, repo.path / path.name)
    repo.commit(message="translated")
    env = {"DB_PASSWORD": "x", "ACCESS_TOKEN": "y", "WAREHOUSE_DSN_SECRET": "z"}
    planned = run_cli("--dry-run", "--store", store_url, "--no-color", str(repo.path), env=env)
    assert planned.code == 0, planned.output
    assert "error" not in planned.output
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in planned.stdout


def test_a_kubernetes_job_block_from_the_server_becomes_a_kubernetes_pool_applied_there(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    tmp_path: Path,
) -> None:
    name = f"orders-k8s-{uuid.uuid4().hex[:8]}"
    make_block(
        prefect_server,
        "kubernetes-job",
        name,
        {
            "type": "kubernetes-job",
            "image": "registry.local/orders:2023.10",
            "namespace": "flows",
            "image_pull_policy": "Always",
            "finished_job_ttl": 3600,
            "pod_watch_timeout_seconds": 60,
            "command": ["python", "-m", "prefect.engine"],
            "customizations": [{"op": "add", "path": "/spec/backoffLimit", "value": 2}],
            "job": {"apiVersion": "batch/v1", "kind": "Job"},
        },
    )
    source = tmp_path / "k8s.yaml"
    source.write_text(
        deployment_yaml("orders-k8s", "flows/etl.py:ingest", f"kubernetes-job/{name}", "null")
    )
    out = tmp_path / "out"
    url = f"prefect+{prefect_server.api_url}"
    done = run_cli(
        "import", "--from-prefect2", str(source), "--blocks-from", url, "--out", str(out)
    )
    assert done.code == 0, done.output
    assert "prefect work-pool create" not in done.stdout  # declared, not left to be made
    assert 'infrastructure setting "customizations" has no job variable' in done.stdout
    assert parsed(out / "work-pools.yaml") == {"work_pools": [{"name": name, "type": "kubernetes"}]}
    (entry,) = parsed(out / "prefect.yaml")["deployments"]
    assert entry["work_pool"]["job_variables"] == {
        "image": "registry.local/orders:2023.10",
        "namespace": "flows",
        "image_pull_policy": "Always",
        "finished_job_ttl": 3600,
        "command": "python -m prefect.engine",
    }

    # the files apply into the server: the kubernetes pool (with our template), then again
    repo = make_repo({})
    shutil.copytree(FLOWS, repo.path / "flows")
    shutil.copy(out / "prefect.yaml", repo.path / "prefect.yaml")
    shutil.copy(out / "work-pools.yaml", repo.path / "work-pools.yaml")
    repo.commit(message="translated")
    applied = run_cli("--store", url, "--no-color", str(repo.path))
    assert applied.code == 0, applied.output
    assert "error" not in applied.output
    assert "warning" not in applied.output  # Prefect's workers run kubernetes pools
    assert "Apply complete! Resources: 3 added, 0 changed, 0 destroyed." in applied.stdout
    pool = prefect_server.request("GET", f"/work_pools/{name}")
    assert pool["type"] == "kubernetes"
    template = default_base_job_template("kubernetes")
    assert pool["base_job_template"]["job_configuration"] == template["job_configuration"]
    again = run_cli("--store", url, "--no-color", str(repo.path))
    assert again.code == 0, again.output
    assert "No changes." in again.stdout


def test_a_blocks_file_wins_over_the_server(
    run_cli: Callable[..., CliResult],
    prefect_server: PrefectServer,
    blocks: Blocks,
    tmp_path: Path,
) -> None:
    files = write_deployments(tmp_path / "p2", blocks)
    given = tmp_path / "blocks.json"
    given.write_text(f'{{"docker-container/{blocks.docker}": {{"image": "from-the-file:1"}}}}')
    out = tmp_path / "out"
    done = run_cli(
        "import", "--from-prefect2", *map(str, files), "--blocks", str(given),
        "--blocks-from", f"prefect+{prefect_server.api_url}", "--out", str(out),
    )  # fmt: skip
    assert done.code == 0, done.output
    _, reports = parsed(out / "prefect.yaml")["deployments"]
    assert reports["work_pool"]["job_variables"] == {"image": "from-the-file:1"}


def test_a_block_the_server_does_not_have_is_refused_and_nothing_written(
    run_cli: Callable[..., CliResult],
    prefect_server: PrefectServer,
    blocks: Blocks,
    tmp_path: Path,
) -> None:
    nightly, reports = write_deployments(tmp_path / "p2", blocks)
    reports.write_text(reports.read_text().replace(blocks.docker, "no-such-block"))
    out = tmp_path / "out"
    url = f"prefect+{prefect_server.api_url}"
    done = run_cli(
        "import", "--from-prefect2", str(nightly), str(reports), "--blocks-from", url,
        "--out", str(out),
    )  # fmt: skip
    assert done.code == 1, done.output
    assert (
        f"error: infrastructure block docker-container/no-such-block named by {reports} does "
        f"not exist on the Prefect server at {prefect_server.api_url}"
    ) in done.stderr
    assert "hint: create it there, give it in a --blocks file" in done.stderr
    assert "Traceback" not in done.output
    assert not out.exists()


def test_an_unreachable_server_is_refused_and_nothing_written(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    files = write_deployments(tmp_path / "p2", Blocks())
    out = tmp_path / "out"
    done = run_cli(
        "import", "--from-prefect2", *map(str, files),
        "--blocks-from", f"prefect+http://127.0.0.1:{port}/api", "--out", str(out),
    )  # fmt: skip
    assert done.code == 1, done.output
    assert f"cannot reach the Prefect API at http://127.0.0.1:{port}/api" in done.stderr
    assert "hint: check that the server is running" in done.stderr
    assert "Traceback" not in done.output
    assert not out.exists()
    not_prefect = run_cli(
        "import", "--from-prefect2", *map(str, files), "--blocks-from", "http://x/api",
        "--out", str(out),
    )  # fmt: skip
    assert not_prefect.code == 1
    assert "'http://x/api' is not a Prefect URL" in not_prefect.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def guarded_server() -> Iterator[PrefectServer]:
    from tests.infra.prefect_server import PrefectUnavailable, running_prefect_server

    try:
        with running_prefect_server({"PREFECT_SERVER_API_AUTH_STRING": AUTH}) as server:
            yield server
    except PrefectUnavailable as exc:  # pragma: no cover - the fixture's own rule
        pytest.skip(str(exc))


def test_a_refused_key_is_refused_and_nothing_written_nor_printed(
    run_cli: Callable[..., CliResult], guarded_server: PrefectServer, tmp_path: Path
) -> None:
    files = write_deployments(tmp_path / "p2", Blocks())
    out = tmp_path / "out"
    done = run_cli(
        "import", "--from-prefect2", *map(str, files),
        "--blocks-from", f"prefect+{guarded_server.api_url}", "--out", str(out),
        env={"PREFECT_API_AUTH_STRING": "admin:nope-x"},
    )  # fmt: skip
    assert done.code == 1, done.output
    assert "refused the API key (401 Unauthorized)" in done.stderr
    assert "hint: set PREFECT_API_KEY" in done.stderr
    assert "nope-x" not in done.output
    assert not out.exists()


def test_a_nested_credentials_block_comes_out_as_a_placeholder_token(
    run_cli: Callable[..., CliResult],
    prefect_server: PrefectServer,
    blocks: Blocks,
    tmp_path: Path,
) -> None:
    """A GitHub storage block whose token sits in a credentials block of its own: the server
    inlines the child (its own secret field masked, which the parent's schema does not list);
    the token still comes out as a placeholder, never as the mask or the value."""
    secret = "ghp_nested-credentials-secret"
    credentials = make_block(
        prefect_server, "github-credentials", f"creds-{blocks.repo}", {"token": secret}
    )
    nested = f"nested-{blocks.repo}"
    make_block(
        prefect_server,
        "github",
        nested,
        {
            "repository": "https://github.com/acme/data-project.git",
            "credentials": {"$ref": {"block_document_id": credentials}},
        },
    )
    work = tmp_path / "p2"
    work.mkdir()
    source = work / "nested.yaml"
    source.write_text(
        deployment_yaml(
            "orders-nested", "flows/etl.py:ingest", f"process/{blocks.process}", f"github/{nested}"
        )
    )
    out = tmp_path / "out"
    done = run_cli(
        "import", "--from-prefect2", str(source),
        "--blocks-from", f"prefect+{prefect_server.api_url}", "--out", str(out),
    )  # fmt: skip
    assert done.code == 0, done.output
    text = (out / "prefect.yaml").read_text()
    assert secret not in text + done.output
    assert "********" not in text
    (deployment,) = parsed(out / "prefect.yaml")["deployments"]
    (clone,) = [step["prefect.deployments.steps.git_clone"] for step in deployment["pull"]]
    assert clone["access_token"] == "{{ $TOKEN }}"
    assert "{{ $TOKEN }}: environment variable TOKEN" in done.stdout
