"""`--store prefect+http://...`: plan and apply into a real `prefect server` (3.9, started once
per session on 127.0.0.1 by tests/infra/prefect_server.py), through the CLI as users run it.
Each test uses its own pool and flow names, so they share the server without meeting."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, GitRepo
from tests.infra.prefect_server import PrefectServer, prefect_executable
from tests.prefect_target.proxy import ForwardingProxy, Verdict

pytestmark = pytest.mark.prefect
AUTH = "admin:s3cret"

FLOW = """\
from prefect import flow


@flow
def {flow}(days: int = 1, note: str = "") -> int:
    return days
"""


def project(pool: str, flow: str, deployments: list[dict[str, Any]]) -> dict[str, str]:
    """A repository: a pools file with `pool` (and a `backfill` queue), a flow, deployments."""
    lines = [
        "name: test-project",
        "prefect-version: 3.9.1",
        "pull:",
        "  - prefect.deployments.steps.set_working_directory:",
        "      directory: /opt/flows",
        "deployments:",
    ]
    for d in deployments:
        lines.append(f"  - name: {d['name']}")
        lines.append(f"    entrypoint: flows/{flow}.py:{flow}")
        lines.append(f"    parameters: {json.dumps(d.get('parameters', {'days': 1}))}")
        if "tags" in d:
            lines.append(f"    tags: {json.dumps(d['tags'])}")
        if "schedule" in d:
            lines.append(f"    schedules: [{{cron: {json.dumps(d['schedule'])}}}]")
        lines.append("    work_pool:")
        lines.append(f"      name: {pool}")
        if "queue" in d:
            lines.append(f"      work_queue_name: {d['queue']}")
        if "job_variables" in d:
            lines.append(f"      job_variables: {json.dumps(d['job_variables'])}")
    pools = (
        f"work_pools:\n  - name: {pool}\n    type: process\n    description: Test pool.\n"
        "    queues:\n      - name: default\n      - name: backfill\n        priority: 5\n"
    )
    return {
        "prefect.yaml": "\n".join(lines) + "\n",
        "work-pools.yaml": pools,
        f"flows/{flow}.py": FLOW.format(flow=flow),
    }


class Names:
    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.pool = f"pool-{suffix}"
        self.flow = f"flow_{suffix}"
        self.flow_name = self.flow.replace("_", "-")

    def key(self, deployment: str) -> str:
        return f"{self.flow_name}/{deployment}"


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def target(prefect_server: PrefectServer) -> str:
    return f"prefect+{prefect_server.api_url}"


def reconcile(
    run_cli: Callable[..., CliResult],
    repo: GitRepo,
    target: str,
    *args: str,
    env: dict[str, str] | None = None,
) -> CliResult:
    return run_cli("apply", str(repo.path), "--store", target, "--no-color", *args, env=env)


def deployments(
    server: PrefectServer, flow_name: str, env: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """The server's deployments of one flow, by name."""
    from reconciler.prefect_target.client import PrefectClient

    with PrefectClient(server.api_url, auth_string=(env or {}).get("PREFECT_API_AUTH_STRING")) as c:
        flows = c.post("flows/filter", {"flows": {"name": {"any_": [flow_name]}}})
        if not flows:
            return {}
        found = c.post("deployments/filter", {"flows": {"id": {"any_": [flows[0]["id"]]}}})
    return {d["name"]: d for d in found}


def snapshot(server: PrefectServer) -> Any:
    """Everything a plan reads from the server, to prove a command changed nothing."""
    keep = ("name", "tags", "parameters", "paused", "job_variables", "description", "pull_steps")
    deps = server.request("POST", "/deployments/filter", {})
    pools = server.request("POST", "/work_pools/filter", {})
    return (
        sorted(tuple((k, json.dumps(d.get(k), sort_keys=True)) for k in keep) for d in deps),
        sorted(p["name"] for p in pools),
    )


def test_plan_apply_again_edit_and_prune(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    repo = make_repo(
        project(
            names.pool,
            names.flow,
            [
                {"name": "nightly", "tags": ["etl"], "schedule": "0 2 * * *"},
                {"name": "backfill", "queue": "backfill", "parameters": {"days": 30}},
            ],
        )
    )
    before = snapshot(prefect_server)
    planned = reconcile(run_cli, repo, target, "--dry-run")
    assert planned.code == 0, planned.output
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in planned.stdout
    assert snapshot(prefect_server) == before  # a dry-run writes nothing

    applied = reconcile(run_cli, repo, target)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 5 added, 0 changed, 0 destroyed." in applied.stdout
    held = deployments(prefect_server, names.flow_name)
    assert sorted(held) == ["backfill", "nightly"]
    owner_tag = f"reconciler:owner={repo.path}::prefect.yaml"
    assert sorted(held["nightly"]["tags"]) == sorted(["etl", owner_tag])
    assert held["backfill"]["work_queue_name"] == "backfill"
    assert held["nightly"]["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
    pool = prefect_server.request("GET", f"/work_pools/{names.pool}")
    assert pool["description"].startswith("Test pool.\n\n[reconciler:owner=")

    again = reconcile(run_cli, repo, target)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout

    # an edit: one field of one deployment, shown as such
    files = project(
        names.pool,
        names.flow,
        [
            {"name": "nightly", "tags": ["etl"], "schedule": "0 3 * * *"},
            {"name": "backfill", "queue": "backfill", "parameters": {"days": 60}},
        ],
    )
    repo.commit(files)
    edited = reconcile(run_cli, repo, target)
    assert edited.code == 0, edited.output
    assert "~ parameters.days = 30 -> 60" in edited.stdout
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in edited.stdout
    held = deployments(prefect_server, names.flow_name)
    assert held["backfill"]["parameters"] == {"days": 60}
    assert [s["schedule"]["cron"] for s in held["nightly"]["schedules"]] == ["0 3 * * *"]
    assert "No changes." in reconcile(run_cli, repo, target).stdout

    # prune: a deployment removed from the file is deleted from Prefect
    files = project(names.pool, names.flow, [{"name": "nightly", "schedule": "0 3 * * *"}])
    repo.commit(files)
    pruned = reconcile(run_cli, repo, target)
    assert pruned.code == 0, pruned.output
    assert f'- deployment "{names.key("backfill")}"' in pruned.stdout
    assert sorted(deployments(prefect_server, names.flow_name)) == ["nightly"]

    # --no-prune keeps what left the file; the empty-owner guard refuses emptying a file
    repo.commit({"prefect.yaml": "name: test-project\ndeployments: []\n"})
    kept = reconcile(run_cli, repo, target, "--no-prune")
    assert kept.code == 0, kept.output
    assert "No changes." in kept.stdout
    refused = reconcile(run_cli, repo, target)
    assert refused.code == 1
    assert "would delete every object of" in refused.output
    assert sorted(deployments(prefect_server, names.flow_name)) == ["nightly"]


def make_by_hand(server: PrefectServer, flow_name: str, name: str, pool: str) -> None:
    """A deployment made with Prefect's own Python client, as `prefect deploy` would."""
    code = f"""
import asyncio
from prefect.client.orchestration import get_client

async def main():
    async with get_client() as client:
        flow_id = await client.create_flow_from_name({flow_name!r})
        await client.create_deployment(
            flow_id=flow_id, name={name!r}, entrypoint="x.py:f", work_pool_name={pool!r},
            tags=["by-hand"],
        )

asyncio.run(main())
"""
    done = subprocess.run(
        [str(Path(prefect_executable()).parent / "python"), "-c", code],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_hand_made_deployment_left_alone_and_a_collision_is_an_error(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    repo = make_repo(project(names.pool, names.flow, [{"name": "ours"}]))
    assert reconcile(run_cli, repo, target).code == 0
    make_by_hand(prefect_server, names.flow_name, "theirs", names.pool)

    # prune never touches it, and a plan does not show it
    result = reconcile(run_cli, repo, target)
    assert result.code == 0, result.output
    assert "No changes." in result.stdout
    assert sorted(deployments(prefect_server, names.flow_name)) == ["ours", "theirs"]

    # declaring its name is an error naming it; nothing is applied
    repo.commit(project(names.pool, names.flow, [{"name": "ours"}, {"name": "theirs"}]))
    before = snapshot(prefect_server)
    refused = reconcile(run_cli, repo, target)
    assert refused.code == 1
    line = (
        project(names.pool, names.flow, [{"name": "ours"}, {"name": "theirs"}])["prefect.yaml"]
        .splitlines()
        .index("  - name: theirs")
        + 1
    )
    assert (
        f'prefect.yaml:{line}: error: deployment "{names.key("theirs")}" already exists in '
        "Prefect and was not made by reconciler" in refused.stderr
    )
    assert "nothing was applied" in refused.output
    assert snapshot(prefect_server) == before
    theirs = deployments(prefect_server, names.flow_name)["theirs"]
    assert theirs["tags"] == ["by-hand"]


def test_drift_in_prefect_shows_in_the_plan_and_apply_reverts_it(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    repo = make_repo(project(names.pool, names.flow, [{"name": "nightly", "tags": ["etl"]}]))
    assert reconcile(run_cli, repo, target).code == 0
    held = deployments(prefect_server, names.flow_name)["nightly"]
    # someone changes it in the UI: parameters, paused, and a tag
    prefect_server.request(
        "PATCH",
        f"/deployments/{held['id']}",
        {"parameters": {"days": 99}, "paused": True, "tags": [*held["tags"], "hotfix"]},
    )
    drift = reconcile(run_cli, repo, target, "--dry-run", "--detailed-exitcode")
    assert drift.code == 2, drift.output
    assert "~ parameters.days = 99 -> 1" in drift.stdout
    assert "~ paused" in drift.stdout
    assert '"hotfix"' in drift.stdout
    reverted = reconcile(run_cli, repo, target)
    assert reverted.code == 0, reverted.output
    held = deployments(prefect_server, names.flow_name)["nightly"]
    assert held["parameters"] == {"days": 1}
    assert held["paused"] is False
    assert "hotfix" not in held["tags"]
    assert "No changes." in reconcile(run_cli, repo, target).stdout


def test_a_job_variable_the_pools_schema_rejects_is_refused_before_anything_is_applied(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    """The pool's schema is checked at plan time (the same rules Prefect applies on create,
    where it answers 409): the error names the deployment's file:line:column, and the server
    is left as it was."""
    files = project(
        names.pool,
        names.flow,
        [{"name": "good"}, {"name": "bad", "job_variables": {"stream_output": "loud"}}],
    )
    repo = make_repo(files)
    before = snapshot(prefect_server)
    result = reconcile(run_cli, repo, target)
    assert result.code == 1, result.output
    line = next(
        number
        for number, text in enumerate(files["prefect.yaml"].splitlines(), start=1)
        if "loud" in text
    )
    assert f"prefect.yaml:{line}:" in result.stderr
    assert 'job variable "stream_output"' in result.stderr
    assert "nothing was applied" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(prefect_server) == before


def kubernetes_project(names: Names, job_variables: dict[str, Any]) -> dict[str, str]:
    """`project` with its pool declared as a kubernetes pool, with a job-variable default."""
    files = project(names.pool, names.flow, [{"name": "k8s", "job_variables": job_variables}])
    files["work-pools.yaml"] = files["work-pools.yaml"].replace(
        "type: process\n", "type: kubernetes\n    job_variables: {namespace: flows}\n"
    )
    return files


def test_a_kubernetes_pool_and_its_deployments_are_applied_into_prefect(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    """Prefect's server takes a kubernetes pool without prefect-kubernetes installed: the
    pool's base job template (ours, with the declared defaults) is sent with it."""
    variables = {"image": "registry.local/etl:1", "backoff_limit": 2, "env": {"A": "1"}}
    repo = make_repo(kubernetes_project(names, variables))
    planned = reconcile(run_cli, repo, target, "--dry-run")
    assert planned.code == 0, planned.output
    assert "warning" not in planned.output  # Prefect's kubernetes worker runs it there
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in planned.stdout

    applied = reconcile(run_cli, repo, target)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in applied.stdout
    pool = prefect_server.request("GET", f"/work_pools/{names.pool}")
    assert pool["type"] == "kubernetes"
    properties = pool["base_job_template"]["variables"]["properties"]
    assert properties["namespace"]["default"] == "flows"
    assert pool["base_job_template"]["job_configuration"]["job_manifest"]["kind"] == "Job"
    held = deployments(prefect_server, names.flow_name)
    assert held["k8s"]["job_variables"] == variables
    assert held["k8s"]["work_pool_name"] == names.pool

    again = reconcile(run_cli, repo, target)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout

    # a job variable the kubernetes template rejects: refused at its line, nothing applied
    files = kubernetes_project(names, {**variables, "image_pull_policy": "ALWAYS"})
    repo.commit(files)
    before = snapshot(prefect_server)
    refused = reconcile(run_cli, repo, target)
    assert refused.code == 1, refused.output
    line = next(
        number
        for number, text in enumerate(files["prefect.yaml"].splitlines(), start=1)
        if "ALWAYS" in text
    )
    assert f"prefect.yaml:{line}:" in refused.stderr
    assert 'job variable "image_pull_policy" must be one of "IfNotPresent", "Always", "Never"' in (
        refused.stderr
    )
    assert "Traceback" not in refused.output
    assert snapshot(prefect_server) == before


def test_a_deployment_prefect_refuses_is_named_with_its_line_and_what_was_applied(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    guarded_server: PrefectServer,
    names: Names,
) -> None:
    """Prefect's own 422 (here: parameters over the server's size limit, a rule only the
    server knows) stops the apply after its phase; the message holds Prefect's field message
    and the deployment's file:line, and lists what was applied; fixed, the next run converges."""
    env = {"PREFECT_API_AUTH_STRING": AUTH}
    url = f"prefect+{guarded_server.api_url}"
    big = {"days": 1, "note": "x" * 400}
    files = project(names.pool, names.flow, [{"name": "good"}, {"name": "big", "parameters": big}])
    repo = make_repo(files)
    result = reconcile(run_cli, repo, url, env=env)
    assert result.code == 1, result.output
    line = files["prefect.yaml"].splitlines().index("  - name: big") + 1
    assert (
        f"prefect.yaml:{line}: + deployment {names.key('big')}: Prefect refused it (422): "
        "parameters: Flow run parameters must be less than 200 bytes" in result.stderr
    )
    assert "xxxxxxxx" not in result.stderr  # Prefect echoes the request: never shown
    assert f"+ work-pool {names.pool}" in result.stderr  # applied, and said so
    assert f"+ work-queue {names.pool}/backfill" in result.stderr
    assert "Apply complete" not in result.stdout
    assert "Traceback" not in result.output
    assert sorted(deployments(guarded_server, names.flow_name, env)) == ["good"]
    repo.commit(project(names.pool, names.flow, [{"name": "good"}, {"name": "big"}]))
    fixed = reconcile(run_cli, repo, url, env=env)
    assert fixed.code == 0, fixed.output
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in fixed.stdout


def test_a_stopped_server_is_a_clear_error(
    run_cli: Callable[..., CliResult], make_repo: Callable[..., GitRepo], names: Names
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = make_repo(project(names.pool, names.flow, [{"name": "nightly"}]))
    result = reconcile(run_cli, repo, f"prefect+http://127.0.0.1:{port}/api")
    assert result.code == 1
    assert f"cannot reach the Prefect API at http://127.0.0.1:{port}/api" in result.stderr
    assert "connection refused" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""  # no plan, nothing half-reported


def test_worker_start_on_a_prefect_target_points_to_prefects_worker(
    run_cli: Callable[..., CliResult], target: str
) -> None:
    result = run_cli("worker", "start", "--pool", "etl", "--store", target)
    assert result.code == 1
    assert "prefect worker start --pool etl" in result.stderr
    history = run_cli("history", "--store", target)
    assert history.code == 1
    assert "is a Prefect server" in history.stderr


@pytest.fixture(scope="module")
def guarded_server() -> Any:
    from tests.infra.prefect_server import PrefectUnavailable, running_prefect_server

    try:
        settings = {
            "PREFECT_SERVER_API_AUTH_STRING": AUTH,
            "PREFECT_SERVER_API_MAX_PARAMETER_SIZE": "200",
        }
        with running_prefect_server(settings) as s:
            yield s
    except PrefectUnavailable as exc:  # pragma: no cover - the fixture's own rule
        pytest.skip(str(exc))


def test_a_refused_api_key_is_a_clear_error_and_never_printed(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    guarded_server: PrefectServer,
    names: Names,
) -> None:
    repo = make_repo(project(names.pool, names.flow, [{"name": "nightly"}]))
    url = f"prefect+{guarded_server.api_url}"
    wrong = reconcile(run_cli, repo, url, env={"PREFECT_API_AUTH_STRING": "admin:wrong-one"})
    assert wrong.code == 1
    assert "refused the API key (401 Unauthorized)" in wrong.stderr
    assert "wrong-one" not in wrong.output
    assert wrong.stdout == ""
    key_file = repo.path.parent / "key"
    key_file.write_text("pnu_not-a-key\n")
    keyed = reconcile(run_cli, repo, url, env={"PREFECT_API_KEY_FILE": str(key_file)})
    assert keyed.code == 1
    assert "401" in keyed.stderr
    assert "pnu_not-a-key" not in keyed.output
    right = reconcile(run_cli, repo, url, env={"PREFECT_API_AUTH_STRING": AUTH})
    assert right.code == 0, right.output
    assert "Apply complete! Resources: 4 added" in right.stdout


RUN_FLOW = """\
from pathlib import Path

from prefect import flow


@flow
def stamp(out: str) -> str:
    Path(out).write_text("{version}")
    return "{version}"
"""


def test_prefects_worker_runs_an_applied_deployment_from_the_pinned_commit(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    tmp_path: Path,
) -> None:
    """No pull steps in the file: the generated clone is pinned to the applied commit, and
    Prefect's own process worker runs that code, even after a newer commit that was not
    applied."""
    import time

    from tests.infra.prefect_server import running_prefect_worker

    out = tmp_path / "stamp.txt"
    prefect_yaml = (
        "name: run-project\nprefect-version: 3.9.1\ndeployments:\n"
        "  - name: stamp\n    entrypoint: flows/stamp.py:stamp\n"
        f"    parameters: {{out: {json.dumps(str(out))}}}\n"
        f"    work_pool:\n      name: {names.pool}\n"
    )
    pools = f"work_pools:\n  - name: {names.pool}\n    type: process\n"
    repo = make_repo(
        {
            "prefect.yaml": prefect_yaml,
            "work-pools.yaml": pools,
            "flows/stamp.py": RUN_FLOW.format(version="applied"),
        }
    )
    applied_commit = repo.git("rev-parse", "HEAD")
    result = reconcile(run_cli, repo, target)
    assert result.code == 0, result.output
    held = deployments(prefect_server, "stamp")["stamp"]
    clone = held["pull_steps"][0]["prefect.deployments.steps.git_clone"]
    assert clone["commit_sha"] == applied_commit
    repo.commit({"flows/stamp.py": RUN_FLOW.format(version="not-applied")})

    run = prefect_server.request("POST", f"/deployments/{held['id']}/create_flow_run", {})
    state = None
    with running_prefect_worker(prefect_server, names.pool, query_seconds=1, cwd=tmp_path):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            state = prefect_server.request("GET", f"/flow_runs/{run['id']}")["state"]["type"]
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(1)
    log = (prefect_server.home / f"worker-{names.pool}.log").read_text(errors="replace")
    assert state == "COMPLETED", log[-3000:]
    assert out.read_text() == "applied"


def test_the_daemon_applies_into_prefect_and_reverts_drift_there(
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    start_daemon: Any,
) -> None:
    repo = make_repo(project(names.pool, names.flow, [{"name": "nightly"}]))
    commit = repo.git("rev-parse", "HEAD")
    daemon = start_daemon(
        {
            "target": target,
            "drift_interval": "1s",
            "repositories": [{"name": "flows", "path": str(repo.path)}],
        }
    )
    daemon.wait_for(
        lambda s: (
            s.get("flows", {}).get("applied_commit") == commit and s["flows"]["state"] == "Synced"
        ),
        timeout=90,
    )
    held = deployments(prefect_server, names.flow_name)["nightly"]
    prefect_server.request("PATCH", f"/deployments/{held['id']}", {"parameters": {"days": 7}})
    status = daemon.wait_for(
        lambda s: "drift reverted" in (s["flows"]["message"] or ""), timeout=90
    )
    assert f"~deployment {names.key('nightly')}" in status["flows"]["message"]
    assert deployments(prefect_server, names.flow_name)["nightly"]["parameters"] == {"days": 1}


class _RateLimitingProxy(ForwardingProxy):
    """The real server behind a proxy that answers `429 Too Many Requests` (with
    `Retry-After: 0`) to every third request, as a rate-limited Prefect Cloud would."""

    def __init__(self, upstream: str) -> None:
        self.limited = 0
        self.seen = 0
        super().__init__(upstream, answer_first=self._limit)

    def _limit(self, _request: object, _body: bytes | None) -> Verdict:
        self.seen += 1
        if self.seen % 3:
            return None
        self.limited += 1
        return 429, None, {"Retry-After": "0"}


def test_rate_limits_are_waited_out(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    names: Names,
) -> None:
    deps = [{"name": f"d{i}"} for i in range(6)]
    repo = make_repo(project(names.pool, names.flow, deps))
    proxy = _RateLimitingProxy(prefect_server.api_url)
    try:
        result = reconcile(run_cli, repo, f"prefect+{proxy.url}")
        again = reconcile(run_cli, repo, f"prefect+{proxy.url}")
    finally:
        proxy.close()
    assert result.code == 0, result.output
    assert "Apply complete! Resources: 9 added" in result.stdout
    assert proxy.limited >= 3
    assert "No changes." in again.stdout
    assert sorted(deployments(prefect_server, names.flow_name)) == [d["name"] for d in deps]


def test_triggers_are_planned_as_automations_and_automations_yaml_is_refused(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    files = project(names.pool, names.flow, [{"name": "nightly"}])
    files["prefect.yaml"] += (
        "    triggers:\n"
        "      - expect: [prefect.flow-run.Completed]\n"
        "        match_related: {prefect.resource.role: deployment}\n"
    )
    repo = make_repo(files)
    planned = reconcile(run_cli, repo, target, "--dry-run")
    assert planned.code == 0, planned.output
    assert "not applied" not in planned.stderr  # triggers are Prefect automations now
    trigger_key = f"deployment-trigger:{names.key('nightly')}/nightly__automation_1"
    assert f'+ automation "{trigger_key}" {{' in planned.stdout
    assert "Plan: 5 to add" in planned.stdout

    automation = (
        "automations:\n  - name: after-nightly\n    trigger:\n"
        "      expect: [prefect.flow-run.Completed]\n    actions:\n"
        f"      - {{type: run-deployment, deployment: {names.key('nightly')}}}\n"
    )
    repo.commit({"automations.yaml": automation}, "an automation")
    before = snapshot(prefect_server)
    refused = reconcile(run_cli, repo, target)
    assert refused.code == 1, refused.output
    assert 'automations.yaml: error: automation "after-nightly" cannot be applied to a Prefect' in (
        refused.stderr
    )
    assert "nothing was applied" in refused.stderr
    assert snapshot(prefect_server) == before


def test_a_pools_type_change_is_a_plan_error_at_its_line_and_nothing_is_applied(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    files = project(names.pool, names.flow, [{"name": "nightly"}])
    repo = make_repo(files)
    assert reconcile(run_cli, repo, target).code == 0
    pools = files["work-pools.yaml"].replace("type: process", "type: docker")
    pools = pools.replace("description: Test pool.", "description: Now for Docker.")
    repo.commit({"work-pools.yaml": pools}, "the pool becomes a docker pool")
    before = snapshot(prefect_server)
    refused = reconcile(run_cli, repo, target)
    assert refused.code == 1, refused.output
    assert (
        f'work-pools.yaml:2: error: work pool "{names.pool}" is of type process in Prefect, '
        "which cannot change a pool's type to docker"
    ) in refused.output
    assert f"prefect work-pool delete {names.pool}" in refused.output
    assert snapshot(prefect_server) == before
    pool = prefect_server.request("GET", f"/work_pools/{names.pool}")
    assert pool["type"] == "process" and pool["description"].startswith("Test pool.")
