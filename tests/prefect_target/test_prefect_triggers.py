"""Deployment `triggers:` applied to a real `prefect server` (3.9) as Prefect automations,
through the CLI: made owned and pointing at the deployment's id, planned again as no change,
changed, pruned; an automation made by hand is never touched."""

from __future__ import annotations

from collections.abc import Callable
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
