"""Deployment triggers from prefect.yaml, end to end: checked at plan time with `file:line`
(nothing applied on an error), stored with their deployment and shown in the plan, and firing
through the evaluator; removing one from the file stops it after the apply."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from reconciler.model.runs import NewRun, RunState
from reconciler.scheduling.triggers import Evaluator
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo, store_dump
from tests.e2e.helpers import apply_in_process, assert_refused, project

pytestmark = pytest.mark.e2e
RunCli = Callable[..., CliResult]

TWO = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
  - name: report
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
    parameters: {days: 7}
"""

TRIGGER = """\
    triggers:
      - name: after-nightly
        expect: [prefect.flow-run.Completed]
        match_related:
          prefect.resource.role: deployment
          prefect.resource.name: nightly
        parameters:
          region: "{{ event.resource.name }}"
"""

BAD = """\
    triggers:
      - expects: [prefect.flow-run.Completed]
        within: soon
        parameters:
          region: "{{ event.resource.name "
"""


def test_bad_triggers_are_refused_with_their_lines(
    make_repo: Callable[..., GitRepo], store_url: str, run_cli: RunCli
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO}))
    apply_in_process(store_url, repo)
    repo.commit({"prefect.yaml": TWO + BAD}, "bad triggers")
    before = store_dump(store_url)
    result = run_cli(str(repo.path), "--store", store_url)
    assert_refused(
        result,
        "prefect.yaml:10:9: error: unknown key `expects` in a trigger",
        'did you mean "expect"?',
        'prefect.yaml:11:17: error: `within` must be a duration; got "soon"',
        "prefect.yaml:13:19: error: the template does not parse",
    )
    assert store_dump(store_url) == before


def _complete_nightly(store_url: str) -> str:
    store = open_store(store_url)
    try:
        run = store.create_run(NewRun("ingest/nightly", "ingest", "etl", "default", time.time()))
        store.set_run_state(run.id, RunState.RUNNING)
        store.set_run_state(run.id, RunState.COMPLETED)
        return run.name
    finally:
        store.close()


def _evaluate_and_count(store_url: str) -> list[dict[str, object]]:
    store = open_store(store_url)
    try:
        Evaluator(store).tick()
        return [r.parameters for r in store.list_runs(deployment="ingest/report")]
    finally:
        store.close()


def test_trigger_in_the_plan_fires_and_stops_when_removed(
    make_repo: Callable[..., GitRepo], store_url: str, run_cli: RunCli
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO + TRIGGER}))
    plan = run_cli(str(repo.path), "--dry-run", "--store", store_url)
    assert plan.code == 0, plan.output
    assert "+ triggers" in plan.stdout and "after-nightly" in plan.stdout
    apply_in_process(store_url, repo)
    _evaluate_and_count(store_url)  # the evaluator sees the trigger
    name = _complete_nightly(store_url)
    assert _evaluate_and_count(store_url) == [{"days": 7, "region": name}]

    repo.commit({"prefect.yaml": TWO}, "no trigger")
    plan = run_cli(str(repo.path), "--dry-run", "--store", store_url)
    assert "- triggers" in plan.stdout or "triggers" in plan.stdout, plan.stdout
    apply_in_process(store_url, repo)
    _complete_nightly(store_url)
    assert len(_evaluate_and_count(store_url)) == 1


AUTOMATIONS = """\
automations:
  - name: report-after-nightly
    trigger:
      expect: [prefect.flow-run.Completed]
      match_related: {prefect.resource.role: deployment, prefect.resource.name: nightly}
    actions:
      - type: run-deployment
        deployment: ingest/report
        parameters: {region: "{{ event.resource.name }}"}
"""

BAD_AUTOMATIONS = """\
automations:
  - name: broken
    trigger: {expect: [x], within: soon}
    actions:
      - {type: run-deployment}
"""


def test_automations_are_planned_applied_fired_and_pruned(
    make_repo: Callable[..., GitRepo], store_url: str, run_cli: RunCli
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO, "automations.yaml": AUTOMATIONS}))
    plan = run_cli(str(repo.path), "--dry-run", "--store", store_url)
    assert plan.code == 0, plan.output
    assert '+ automation "report-after-nightly"' in plan.stdout
    apply_in_process(store_url, repo)
    _evaluate_and_count(store_url)
    name = _complete_nightly(store_url)
    assert _evaluate_and_count(store_url) == [{"days": 7, "region": name}]

    repo.commit({"automations.yaml": BAD_AUTOMATIONS}, "broken automation")
    before = store_dump(store_url)
    assert_refused(
        run_cli(str(repo.path), "--store", store_url),
        "automations.yaml:3:36: error: `within` must be a duration",
        "automations.yaml:5:9: error: a run-deployment action needs `deployment`",
    )
    assert store_dump(store_url) == before

    repo.remove("automations.yaml")
    repo.commit(message="no automations")
    pruned = run_cli(str(repo.path), "--store", store_url, "--allow-empty")
    assert pruned.code == 0, pruned.output
    assert '- automation "report-after-nightly"' in pruned.stdout
    _complete_nightly(store_url)
    assert len(_evaluate_and_count(store_url)) == 1


def test_event_ls(make_repo: Callable[..., GitRepo], store_url: str, run_cli: RunCli) -> None:
    repo = make_repo(project({"prefect.yaml": TWO}))
    apply_in_process(store_url, repo)
    _complete_nightly(store_url)
    listed = run_cli(
        "event", "ls", "--event", "prefect.flow-run.*", "-o", "json", "--store", store_url
    )
    assert listed.code == 0, listed.output
    names = [e["event"] for e in json.loads(listed.stdout)]
    assert names == [
        "prefect.flow-run.Completed",
        "prefect.flow-run.Running",
        "prefect.flow-run.Scheduled",
    ]
    table = run_cli("event", "ls", "--resource", "nothing*", "--store", store_url)
    assert table.code == 0 and table.stdout.strip() == "OCCURRED  EVENT  RESOURCE  ID"
