"""Deployment `triggers:` applied to a real `prefect server` (3.9) as Prefect automations,
through the CLI: made owned and pointing at the deployment's id, planned again as no change,
changed, pruned; an automation made by hand is never touched."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, GitRepo
from tests.infra.prefect_server import PrefectServer
from tests.prefect_target.test_prefect_target import Names, deployments, project, reconcile

pytestmark = pytest.mark.prefect


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def target(prefect_server: PrefectServer) -> str:
    return f"prefect+{prefect_server.api_url}"


def with_trigger(names: Names, threshold: int | None) -> dict[str, str]:
    files = project(names.pool, names.flow, [{"name": "nightly"}])
    if threshold is not None:
        files["prefect.yaml"] += (
            "    triggers:\n"
            f"      - name: {names.pool}-on-upstream\n"
            "        description: Run after upstream.\n"
            f"        expect: [upstream.{names.pool}.done]\n"
            f"        match: {{prefect.resource.id: upstream.{names.pool}}}\n"
            f"        threshold: {threshold}\n"
            "        within: 60\n"
            "        parameters:\n"
            '          note: "{{ event.event }}"\n'
        )
    return files


def runs_after_event(
    server: PrefectServer, deployment_id: str, pool: str, seconds: float = 45
) -> list[dict[str, Any]]:
    """The flow runs of a deployment after the trigger's event was sent (again every few
    seconds: the server's triggers service loads a new automation a moment after it is made)."""
    deadline = time.monotonic() + seconds
    sent = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - sent > 5:
            event = {
                "id": str(uuid.uuid4()),
                "occurred": datetime.datetime.now(datetime.UTC).isoformat(),
                "event": f"upstream.{pool}.done",
                "resource": {"prefect.resource.id": f"upstream.{pool}"},
            }
            server.request("POST", "/events", [event])
            sent = time.monotonic()
        body = {"deployments": {"id": {"any_": [deployment_id]}}}
        runs: list[dict[str, Any]] = server.request("POST", "/flow_runs/filter", body)
        if runs:
            return runs
        time.sleep(0.5)
    return []


def automations(server: PrefectServer) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.request("POST", "/automations/filter", {})
    return found


def test_a_deployment_trigger_becomes_an_owned_automation_changed_and_pruned(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    hand_made_name = f"{names.pool}-by-hand"
    repo = make_repo(with_trigger(names, threshold=1))
    planned = reconcile(run_cli, repo, target, "--dry-run")
    assert planned.code == 0, planned.output
    key = f"deployment-trigger:{names.key('nightly')}/{names.pool}-on-upstream"
    assert f'+ automation "{key}" {{' in planned.stdout, planned.stdout
    assert "not applied" not in planned.stderr

    applied = reconcile(run_cli, repo, target)
    assert applied.code == 0, applied.output
    deployment = deployments(prefect_server, names.flow_name)["nightly"]
    ours = [a for a in automations(prefect_server) if a["name"] == f"{names.pool}-on-upstream"]
    assert len(ours) == 1
    made = ours[0]
    assert made["description"] == (
        f"Run after upstream.\n\n[reconciler:owner={repo.path}::prefect.yaml]"
    )
    assert made["enabled"] is True
    assert made["trigger"]["expect"] == [f"upstream.{names.pool}.done"]
    assert made["trigger"]["threshold"] == 1
    assert made["trigger"]["within"] == 60.0
    (action,) = made["actions"]
    assert action["type"] == "run-deployment"
    assert action["source"] == "selected"
    assert action["deployment_id"] == deployment["id"]
    assert action["parameters"] == {"note": "{{ event.event }}"}
    related = prefect_server.request(
        "GET", f"/automations/related-to/prefect.deployment.{deployment['id']}"
    )
    assert [a["id"] for a in related] == [made["id"]]  # owned by the deployment, as Prefect does

    # Prefect's own automations engine (the server's triggers service) runs what was applied:
    # a matching event makes a flow run of the deployment, its parameter templated from it.
    runs = runs_after_event(prefect_server, deployment["id"], names.pool)
    assert runs, "no flow run of the deployment within 45 s of the event"
    assert runs[0]["parameters"] == {"days": 1, "note": f"upstream.{names.pool}.done"}

    # an automation made by hand (in the UI, or by `prefect deploy`) for the same deployment
    hand_made = prefect_server.request(
        "POST",
        "/automations/",
        {
            "name": hand_made_name,
            "trigger": {
                "type": "event",
                "match": {},
                "match_related": {},
                "after": [],
                "expect": ["by.hand"],
                "for_each": [],
                "posture": "Reactive",
                "threshold": 1,
                "within": 0,
            },
            "actions": [
                {"type": "run-deployment", "source": "selected", "deployment_id": deployment["id"]}
            ],
        },
    )

    again = reconcile(run_cli, repo, target)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout

    repo.commit(with_trigger(names, threshold=3), "threshold 3")
    changed = reconcile(run_cli, repo, target)
    assert changed.code == 0, changed.output
    assert f'~ automation "{key}" {{' in changed.stdout, changed.stdout
    assert "trigger.threshold = 1 -> 3" in changed.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in changed.stdout
    now = prefect_server.request("GET", f"/automations/{made['id']}")
    assert now["trigger"]["threshold"] == 3
    assert now["description"] == made["description"]  # the owner line survives an update
    assert "No changes." in reconcile(run_cli, repo, target).stdout

    repo.commit(with_trigger(names, threshold=None), "no trigger")
    pruned = reconcile(run_cli, repo, target)
    assert pruned.code == 0, pruned.output
    assert f'- automation "{key}"' in pruned.stdout, pruned.stdout
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in pruned.stdout
    left = [a["id"] for a in automations(prefect_server)]
    assert made["id"] not in left
    assert hand_made["id"] in left  # never touched
    assert "nightly" in deployments(prefect_server, names.flow_name)
    assert "No changes." in reconcile(run_cli, repo, target).stdout


COMPOSITE = """\
    triggers:
      - name: {pool}-both
        enabled: false
        require: all
        within: PT5M
        schedule_after: 30
        job_variables: {{env: {{MODE: triggered}}}}
        triggers:
          - expect: [b.done, a.done]
            match_related: [{{prefect.resource.role: flow, prefect.resource.name: [x, y]}}]
          - triggers:
              - expect: first
              - posture: Proactive
                expect: [second]
                for_each: [prefect.resource.id]
      - expect: [plain]
"""


def test_composite_triggers_plan_no_change_once_applied_and_duplicate_names_are_refused(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    files = project(names.pool, names.flow, [{"name": "nightly"}])
    files["prefect.yaml"] += COMPOSITE.format(pool=names.pool)
    repo = make_repo(files)
    applied = reconcile(run_cli, repo, target)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 6 added" in applied.stdout
    made = {a["name"]: a for a in automations(prefect_server)}
    both = made[f"{names.pool}-both"]
    assert both["enabled"] is False
    assert both["trigger"]["type"] == "compound"
    assert both["trigger"]["within"] == 300.0
    assert both["trigger"]["triggers"][1]["type"] == "sequence"
    assert both["trigger"]["triggers"][1]["triggers"][1]["within"] == 10.0  # Prefect's default
    assert both["actions"][0]["schedule_after"] == 30.0
    assert both["actions"][0]["job_variables"] == {"env": {"MODE": "triggered"}}
    assert "nightly__automation_2" in made  # Prefect's default name: DEPLOYMENT__automation_N

    again = reconcile(run_cli, repo, target)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout

    files["prefect.yaml"] += "      - name: nightly__automation_2\n        expect: [other]\n"
    repo.commit(files, "two triggers named alike")
    before = automations(prefect_server)
    refused = reconcile(run_cli, repo, target)
    assert refused.code == 1, refused.output
    assert (
        f'two triggers of deployment "{names.key("nightly")}" are named "nightly__automation_2"'
        in refused.stderr
    )
    assert "give each trigger of the deployment its own `name:`" in refused.stderr
    assert automations(prefect_server) == before


def test_a_proactive_trigger_prefect_would_refuse_is_a_plan_error_and_nothing_is_applied(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    files = project(names.pool, names.flow, [{"name": "nightly"}])
    files["prefect.yaml"] += (
        "    triggers:\n      - name: quick\n        posture: Proactive\n"
        "        expect: [heartbeat]\n        within: 5\n"
    )
    repo = make_repo(files)
    refused = reconcile(run_cli, repo, target)
    assert refused.code == 1, refused.output
    assert (
        f'error: trigger "quick" of deployment "{names.key("nightly")}" is Proactive with '
        "`within` 5 s: Prefect refuses under 10 s" in refused.stderr
    )
    assert "set `within` to 10 s or more to apply it to a Prefect server" in refused.stderr
    assert "nothing was applied" in refused.stderr
    assert deployments(prefect_server, names.flow_name) == {}
    assert not [a for a in automations(prefect_server) if a["name"] == "quick"]


def test_a_deployment_deleted_by_hand_gets_its_automation_again_and_the_old_one_pruned(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    repo = make_repo(with_trigger(names, threshold=2))
    assert reconcile(run_cli, repo, target).code == 0
    old = deployments(prefect_server, names.flow_name)["nightly"]
    (first,) = [a for a in automations(prefect_server) if a["name"] == f"{names.pool}-on-upstream"]
    prefect_server.request("DELETE", f"/deployments/{old['id']}")  # Prefect keeps its automation

    again = reconcile(run_cli, repo, target)
    assert again.code == 0, again.output
    assert f'- automation "deployment-trigger:?/{old["id"]}/{names.pool}-on-upstream"' in (
        again.stdout
    )
    assert "Plan: 2 to add, 0 to change, 1 to destroy." in again.stdout
    new = deployments(prefect_server, names.flow_name)["nightly"]
    (second,) = [a for a in automations(prefect_server) if a["name"] == f"{names.pool}-on-upstream"]
    assert second["id"] != first["id"]
    assert second["actions"][0]["deployment_id"] == new["id"]
    assert "No changes." in reconcile(run_cli, repo, target).stdout


def test_an_automation_prefect_deploy_made_is_a_collision_then_adopted_not_doubled(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
) -> None:
    """`prefect deploy` made the deployment and its trigger's automation; the same file applied
    by reconciler is refused until adopted, and then takes that automation over rather than
    making a second one that would start every run twice."""
    from tests.prefect_target.test_import_prefect import prefect_cli

    repo = make_repo(with_trigger(names, threshold=1))
    prefect_server.request("POST", "/work_pools/", {"name": names.pool, "type": "process"})
    prefect_cli(prefect_server, repo.path, "--no-prompt", "deploy", "--all")
    (deployment,) = deployments(prefect_server, names.flow_name).values()
    related = f"/automations/related-to/prefect.deployment.{deployment['id']}"
    (theirs,) = prefect_server.request("GET", related)
    key = f"deployment-trigger:{names.flow_name}/nightly/{names.pool}-on-upstream"

    refused = reconcile(run_cli, repo, target)
    assert refused.code == 1, refused.output
    assert f'automation "{key}" already exists in Prefect and was not made by reconciler' in (
        refused.output
    )
    assert prefect_server.request("GET", related) == [theirs]

    adopted = reconcile(run_cli, repo, target, "--adopt")
    assert adopted.code == 0, adopted.output
    assert f'# automation "{key}" will be adopted' in adopted.stdout
    (now,) = prefect_server.request("GET", related)
    assert now["id"] == theirs["id"], "taken over, not made again"
    assert now["description"].endswith(f"[reconciler:owner={repo.path}::prefect.yaml]")
    again = reconcile(run_cli, repo, target)
    assert "No changes." in again.stdout, again.output


def test_import_writes_the_automations_back_as_triggers_and_adoption_round_trips(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    tmp_path: Path,
) -> None:
    """`prefect deploy` of a deployment with an event trigger and a compound one; `reconcile
    import --from` writes both back into the deployment's `triggers:`; the imported files,
    adopted, plan every automation as adopted with no field to change, then "No changes."."""
    from tests.prefect_target.test_import_prefect import prefect_cli

    files = with_trigger(names, threshold=2)
    files["prefect.yaml"] += (
        "      - name: both-done\n"
        "        type: compound\n"
        "        require: all\n"
        "        within: 300\n"
        "        triggers:\n"
        f"          - expect: [a.{names.pool}.done]\n"
        f"          - expect: [b.{names.pool}.done]\n"
        "            posture: Proactive\n"
        "            within: 120\n"
    )
    deployed = make_repo(files, name="deployed")
    prefect_server.request("POST", "/work_pools/", {"name": names.pool, "type": "process"})
    prefect_cli(prefect_server, deployed.path, "--no-prompt", "deploy", "--all")

    repo = make_repo(name="gitops")
    out = run_cli("import", "--from", target, "--out", str(repo.path), "--pool", names.pool)
    assert out.code == 0, out.output
    written = (repo.path / "prefect.yaml").read_text()
    assert f"name: {names.pool}-on-upstream" in written and "name: both-done" in written
    assert "threshold: 2" in written and "require: all" in written
    repo.commit({f"flows/{names.flow}.py": files[f"flows/{names.flow}.py"]}, "import")

    adopted = reconcile(run_cli, repo, target, "--adopt")
    assert adopted.code == 0, adopted.output
    for name in (f"{names.pool}-on-upstream", "both-done"):
        key = f"deployment-trigger:{names.flow_name}/nightly/{name}"
        assert f'# automation "{key}" will be adopted' in adopted.stdout
        block = adopted.stdout.split(f'= automation "{key}" {{\n', 1)[1].split("\n    }", 1)[0]
        assert block.strip().startswith("~ owner = null -> "), block  # nothing else differs
        assert len(block.strip().splitlines()) == 1, block
    assert "0 to add, 0 to change, 0 to destroy" in adopted.stdout, adopted.stdout
    (deployment,) = deployments(prefect_server, names.flow_name).values()
    related = prefect_server.request(
        "GET", f"/automations/related-to/prefect.deployment.{deployment['id']}"
    )
    assert len(related) == 2, "taken over, not made again"
    again = reconcile(run_cli, repo, target)
    assert "No changes." in again.stdout, again.output
