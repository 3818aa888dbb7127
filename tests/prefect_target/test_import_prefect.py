"""`reconcile import --from prefect+http://...` (issue 19): a real `prefect server` filled by
Prefect's own `prefect deploy --all` from corpus-like prefect.yaml files and a pool made by
hand, imported into files, then planned back against the same server: collisions without
--adopt, only `adopt` with it (the round trip: no field diffs), `No changes.` once adopted, and
the adopted deployments owned and pruned from then on. Secrets are never written; an
unreachable server or a refused key writes nothing.

The server is the session's (tests/infra/prefect_server.py), shared with other tests: each test
uses its own pool names (a uuid suffix) and imports with `--pool` so it reads only its own."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.prefect_rules.job_templates import default_base_job_template
from tests.conftest import CliResult, GitRepo
from tests.infra.prefect_server import PrefectServer, prefect_executable
from tests.prefect_target.test_prefect_target import Names, kubernetes_project, project

pytestmark = pytest.mark.prefect
SECRET = "hunter2-in-clear"
AUTH = "admin:s3cret"

ETL_FLOW = """\
from prefect import flow


@flow(name="etl-{suffix}")
def etl(days: int = 1, source: str = "s3") -> int:
    return days


@flow(name="ingest-{suffix}")
def ingest(table: str = "orders", full: bool = False) -> str:
    return table
"""

REPORT_FLOW = """\
from prefect import flow


@flow(name="report-{suffix}")
def report(kind: str = "daily") -> str:
    return kind
"""

# Shapes from ../shared/corpus/prefect-yaml: a shared pull section, several deployments per
# file, cron with a time zone, interval, rrule, parameters, tags, job variables (one
# credential), a concurrency limit.
ETL_YAML = """\
name: data-platform
prefect-version: 3.9.1

pull:
- prefect.deployments.steps.git_clone:
    repository: https://git.example.com/data/flows.git
    branch: main

deployments:
- name: etl-nightly
  version:
  tags: [etl, nightly]
  description: Nightly load of the warehouse.
  entrypoint: flows/etl.py:etl
  parameters:
    days: 3
    source: gcs
  work_pool:
    name: {etl_pool}
    work_queue_name: backfill
    job_variables:
      env:
        LOG_LEVEL: debug
        DB_PASSWORD: {secret}
  schedules:
  - cron: 0 2 * * *
    timezone: Europe/Lisbon
    day_or: true
    active: true
- name: etl-hourly
  tags: [etl]
  entrypoint: flows/etl.py:etl
  parameters: {{days: 1}}
  work_pool:
    name: {etl_pool}
    job_variables: {{}}
  schedules:
  - interval: 3600
- name: ingest-orders
  entrypoint: flows/etl.py:ingest
  concurrency_limit: 2
  parameters:
    table: orders
  work_pool:
    name: {etl_pool}
  schedules:
  - cron: 30 6 * * 1-5
    timezone: America/New_York
  - cron: 0 12 * * 6
    active: false
"""

REPORTS_YAML = """\
name: reports
prefect-version: 3.9.1

deployments:
- name: weekly-report
  entrypoint: flows/report.py:report
  tags: [reports]
  parameters:
    kind: weekly
  pull:
  - prefect.deployments.steps.set_working_directory:
      directory: /opt/reports
  work_pool:
    name: {report_pool}
    job_variables:
      working_dir: /opt/reports
  schedules:
  - cron: 0 8 * * 1
    timezone: UTC
  - rrule: FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=6;BYMINUTE=0
    timezone: Europe/Berlin
- name: adhoc-report
  entrypoint: flows/report.py:report
  pull:
  - prefect.deployments.steps.set_working_directory:
      directory: /opt/reports
  work_pool:
    name: {report_pool}
"""


class Pools:
    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:8]
        self.etl = f"etl-{self.suffix}"
        self.report = f"report-{self.suffix}"
        self.hand = f"hand-{self.suffix}"

    @property
    def all(self) -> list[str]:
        return [self.etl, self.report, self.hand]


def prefect_cli(server: PrefectServer, cwd: Path, *args: str) -> str:
    """Prefect's own CLI against `server` (never a temporary server)."""
    done = subprocess.run(
        [str(prefect_executable()), *args],
        cwd=cwd,
        env=server.env({"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def fill_server(server: PrefectServer, work: Path, pools: Pools) -> None:
    """Pools and queues made by hand, then `prefect deploy --all` of two prefect.yaml files."""
    work.mkdir()
    (work / "flows").mkdir()
    (work / "flows" / "etl.py").write_text(ETL_FLOW.format(suffix=pools.suffix))
    (work / "flows" / "report.py").write_text(REPORT_FLOW.format(suffix=pools.suffix))
    (work / "prefect.yaml").write_text(ETL_YAML.format(etl_pool=pools.etl, secret=SECRET))
    (work / "reports.yaml").write_text(REPORTS_YAML.format(report_pool=pools.report))
    template = json.loads(
        prefect_cli(server, work, "work-pool", "get-default-base-job-template", "--type", "process")
    )
    template["variables"]["properties"]["working_dir"]["default"] = "/srv/flows"
    (work / "template.json").write_text(json.dumps(template))
    prefect_cli(
        server,
        work,
        "work-pool",
        "create",
        pools.etl,
        "--type",
        "process",
        "--base-job-template",
        "template.json",
    )
    prefect_cli(
        server,
        work,
        "work-queue",
        "create",
        "backfill",
        "--pool",
        pools.etl,
        "--priority",
        "5",
        "--limit",
        "3",
    )
    prefect_cli(server, work, "work-pool", "create", pools.report, "--type", "process")
    prefect_cli(server, work, "work-pool", "create", pools.hand, "--type", "process")
    prefect_cli(server, work, "deploy", "--all", "--prefect-file", "prefect.yaml")
    prefect_cli(server, work, "deploy", "--all", "--prefect-file", "reports.yaml")


def deployments_of(server: PrefectServer, pools: Pools) -> dict[str, dict[str, Any]]:
    found = server.request(
        "POST", "/deployments/filter", {"work_pools": {"name": {"any_": pools.all}}}
    )
    return {d["name"]: d for d in found}


def snapshot(server: PrefectServer, pools: Pools) -> Any:
    keep = ("name", "tags", "parameters", "paused", "job_variables", "description", "pull_steps")
    deps = deployments_of(server, pools).values()
    found = server.request("POST", "/work_pools/filter", {})
    return (
        sorted(tuple((k, json.dumps(d.get(k), sort_keys=True)) for k in keep) for d in deps),
        sorted((p["name"], str(p.get("description"))) for p in found if p["name"] in pools.all),
    )


def import_args(target: str, pools: Pools, out: Path) -> list[str]:
    args = ["import", "--from", target, "--out", str(out)]
    for pool in pools.all:
        args += ["--pool", pool]
    return args


@pytest.fixture
def pools() -> Pools:
    return Pools()


@pytest.fixture
def target(prefect_server: PrefectServer) -> str:
    return f"prefect+{prefect_server.api_url}"


def test_import_from_prefect_round_trips_and_adoption_takes_ownership(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    pools: Pools,
    tmp_path: Path,
) -> None:
    fill_server(prefect_server, tmp_path / "deployed", pools)
    assert len(deployments_of(prefect_server, pools)) == 5

    repo = make_repo(name="gitops")
    before = snapshot(prefect_server, pools)
    imported = run_cli(*import_args(target, pools, repo.path))
    assert imported.code == 0, imported.output
    assert "imported 5 deployment(s), 3 work pool(s)" in imported.stdout
    assert snapshot(prefect_server, pools) == before  # read-only
    texts = {p.name: p.read_text() for p in repo.path.iterdir() if p.is_file()}
    assert sorted(texts) == ["prefect.yaml", "work-pools.yaml"]
    # secrets never written: the credential is a placeholder to provide
    assert all(SECRET not in text for text in texts.values())
    assert "{{ $DB_PASSWORD }}" in texts["prefect.yaml"]
    assert "{{ $DB_PASSWORD }}: environment variable DB_PASSWORD" in imported.stdout
    assert SECRET not in imported.output
    # made by hand, and said so; the owner tag is never written
    assert "made by hand" in texts["prefect.yaml"]
    assert "concurrency_limit: 2" in texts["prefect.yaml"]
    assert "FREQ=MONTHLY" in texts["prefect.yaml"]
    assert "reconciler:owner" not in texts["prefect.yaml"] + texts["work-pools.yaml"]
    pools_yaml = texts["work-pools.yaml"]
    assert f"name: {pools.hand}" in pools_yaml
    assert "working_dir: /srv/flows" in pools_yaml  # what differs from the type's default
    assert "name: backfill" in pools_yaml and "priority: 5" in pools_yaml
    assert "concurrency_limit: 3" in pools_yaml

    # the files go into the repository with the flows
    flows = tmp_path / "deployed" / "flows"
    repo.commit(
        {f"flows/{f.name}": f.read_text() for f in flows.glob("*.py")}, "import from Prefect"
    )
    env = {"DB_PASSWORD": SECRET}

    refused = run_cli("--dry-run", "--store", target, "--no-color", str(repo.path), env=env)
    assert refused.code == 1, refused.output
    assert "already exists in Prefect and was not made by reconciler" in refused.stderr
    assert f'deployment "etl-{pools.suffix}/etl-nightly"' in refused.stderr
    assert snapshot(prefect_server, pools) == before

    shown = run_cli(
        "--dry-run", "--adopt", "--store", target, "--no-color", str(repo.path), env=env
    )
    assert shown.code == 0, shown.output
    assert "Plan: 12 to adopt, 0 to add, 0 to change, 0 to destroy." in shown.stdout
    for name in ("etl-nightly", "etl-hourly", "ingest-orders", "weekly-report", "adhoc-report"):
        assert f'/{name}" will be adopted' in shown.stdout
    assert f'work-pool "{pools.hand}" will be adopted' in shown.stdout
    # the round trip: nothing but the owner changes
    diffs = [
        line.strip()
        for line in shown.stdout.splitlines()
        if line.strip().startswith(("+", "-", "~")) and not line.strip().startswith("~ owner")
    ]
    assert diffs == [], shown.stdout
    assert SECRET not in shown.output
    assert snapshot(prefect_server, pools) == before

    adopted = run_cli("adopt", "-y", "--store", target, "--no-color", str(repo.path), env=env)
    assert adopted.code == 0, adopted.output
    owned = deployments_of(prefect_server, pools)
    owner_tag = f"reconciler:owner={repo.path}::prefect.yaml"
    assert all(owner_tag in d["tags"] for d in owned.values()), owned
    assert owned["etl-nightly"]["job_variables"]["env"]["DB_PASSWORD"] == SECRET
    assert "etl" in owned["etl-nightly"]["tags"]  # its own tags kept beside the owner's
    hand = prefect_server.request("GET", f"/work_pools/{pools.hand}")
    assert hand["description"] == f"[reconciler:owner={repo.path}::work-pools.yaml]"

    again = run_cli("--dry-run", "--store", target, "--no-color", str(repo.path), env=env)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout

    # owned now: removed from the file, it is pruned
    text = (repo.path / "prefect.yaml").read_text()
    repo.commit({"prefect.yaml": _without_deployment(text, "adhoc-report")}, "drop adhoc")
    pruned = run_cli("--store", target, "--no-color", str(repo.path), env=env)
    assert pruned.code == 0, pruned.output
    assert "1 to destroy" in pruned.stdout, pruned.stdout
    assert sorted(deployments_of(prefect_server, pools)) == [
        "etl-hourly",
        "etl-nightly",
        "ingest-orders",
        "weekly-report",
    ]


def _without_deployment(text: str, name: str) -> str:
    """The imported prefect.yaml without the entry of deployment `name` (and its comment)."""
    lines = text.splitlines(keepends=True)
    entry = lines.index(f"  - name: {name}\n")
    start = entry
    while lines[start - 1].startswith("  # deployment "):
        start -= 1
    end = entry + 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    return "".join(lines[:start] + lines[end:])


def test_import_from_an_unreachable_server_writes_nothing(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    result = run_cli("import", "--from", f"prefect+http://127.0.0.1:{port}/api", "--out", str(out))
    assert result.code == 1
    assert f"cannot reach the Prefect API at http://127.0.0.1:{port}/api" in result.stderr
    assert "hint: check that the server is running" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
    no_host = run_cli("import", "--from", "prefect+http:///api", "--out", str(out))
    assert no_host.code == 1
    assert "names no host" in no_host.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def guarded_server() -> Any:
    from tests.infra.prefect_server import PrefectUnavailable, running_prefect_server

    try:
        with running_prefect_server({"PREFECT_SERVER_API_AUTH_STRING": AUTH}) as s:
            yield s
    except PrefectUnavailable as exc:  # pragma: no cover - the fixture's own rule
        pytest.skip(str(exc))


def test_import_with_a_refused_key_writes_nothing_and_never_prints_it(
    run_cli: Callable[..., CliResult], guarded_server: PrefectServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    url = f"prefect+{guarded_server.api_url}"
    wrong = run_cli(
        "import", "--from", url, "--out", str(out), env={"PREFECT_API_AUTH_STRING": "admin:nope-x"}
    )
    assert wrong.code == 1
    assert "refused the API key (401 Unauthorized)" in wrong.stderr
    assert "nope-x" not in wrong.output
    assert not out.exists() or not any(out.iterdir())
    keyed = run_cli(
        "import", "--from", url, "--out", str(out), env={"PREFECT_API_KEY": "pnu_not-a-key"}
    )
    assert keyed.code == 1
    assert "401" in keyed.stderr
    assert "pnu_not-a-key" not in keyed.output
    assert not out.exists() or not any(out.iterdir())


def test_import_of_what_reconciler_applied_into_its_own_repository_changes_nothing(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    target: str,
) -> None:
    names = Names()
    deployments = [
        {"name": "nightly", "schedule": "0 2 * * *", "tags": ["etl"], "queue": "backfill"},
        {"name": "hourly", "parameters": {"days": 2}, "job_variables": {"env": {"A": "1"}}},
    ]
    repo = make_repo(project(names.pool, names.flow, deployments))
    applied = run_cli("--store", target, "--no-color", str(repo.path))
    assert applied.code == 0, applied.output

    imported = run_cli(
        "import", "--from", target, "--out", str(repo.path), "--pool", names.pool, "--force"
    )
    assert imported.code == 0, imported.output
    text = (repo.path / "prefect.yaml").read_text()
    assert f"owned by {repo.path} (prefect.yaml)" in text
    assert "reconciler:owner" not in text
    repo.commit(message="imported over the originals")
    again = run_cli("--dry-run", "--store", target, "--no-color", str(repo.path))
    assert again.code == 0, again.output
    assert "No changes." in again.stdout, again.stdout


def test_kubernetes_pools_are_imported_into_work_pools_yaml_and_round_trip(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
) -> None:
    """A kubernetes pool applied by reconciler (our template, a namespace default) and one
    made by hand with a template of its own (as prefect-kubernetes' worker installs one): both
    are written to work-pools.yaml, and the files plan back without a change."""
    names = Names()
    variables = {"image": "registry.local/etl:1", "backoff_limit": 2}
    repo = make_repo(kubernetes_project(names, variables))
    applied = run_cli("--store", target, "--no-color", str(repo.path))
    assert applied.code == 0, applied.output
    hand = f"hand-k8s-{uuid.uuid4().hex[:8]}"
    own = default_base_job_template("kubernetes")
    own["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["nodeSelector"] = {
        "pool": "flows"
    }
    prefect_server.request(
        "POST", "/work_pools/", {"name": hand, "type": "kubernetes", "base_job_template": own}
    )

    args = ["--out", str(repo.path), "--pool", names.pool, "--pool", hand, "--force"]
    imported = run_cli("import", "--from", target, *args)
    assert imported.code == 0, imported.output
    assert "work-pools.yaml does not declare" not in imported.stdout
    declared = {
        p["name"]: p
        for p in yaml.safe_load((repo.path / "work-pools.yaml").read_text())["work_pools"]
    }
    assert declared[names.pool]["type"] == "kubernetes"
    assert declared[names.pool]["job_variables"] == {"namespace": "flows"}
    assert "base_job_template" not in declared[names.pool]  # ours: only what differs
    assert declared[hand]["type"] == "kubernetes"
    assert declared[hand]["base_job_template"] == own  # not ours: written whole
    repo.commit(message="imported over the originals")

    shown = run_cli("--dry-run", "--adopt", "--store", target, "--no-color", str(repo.path))
    assert shown.code == 0, shown.output
    assert "warning" not in shown.output
    assert f'work-pool "{hand}" will be adopted' in shown.stdout
    diffs = [
        line.strip()
        for line in shown.stdout.splitlines()
        if line.strip().startswith(("+", "-", "~")) and not line.strip().startswith("~ owner")
    ]
    assert diffs == [], shown.stdout
    adopted = run_cli("adopt", "-y", "--store", target, "--no-color", str(repo.path))
    assert adopted.code == 0, adopted.output
    again = run_cli("--dry-run", "--store", target, "--no-color", str(repo.path))
    assert again.code == 0, again.output
    assert "No changes." in again.stdout, again.stdout
