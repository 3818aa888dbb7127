"""`reconcile` planning from the command line: exit codes, which tree is read (--ref,
--worktree, --prefect-file, files in subdirectories), the three output forms, and deployments
with build steps (`(known after build)`, --skip-build)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.model.resources import Kind
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import (
    FLOW,
    PREFECT,
    TWO_DEPLOYMENTS,
    Dump,
    apply_in_process,
    assert_refused,
    keys,
    new_repo,
    project,
    run_many,
)

pytestmark = pytest.mark.e2e

PLAN_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "plan.schema.json"


def json_plan(result: CliResult) -> dict[str, Any]:
    assert result.code in (0, 2), result.output
    plan: dict[str, Any] = json.loads(result.stdout)
    return plan


def changed(plan: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["action"], c["key"]) for c in plan["changes"]]


def test_exit_codes(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(project())
    store = ("--store", store_url)

    planned = run_cli("--dry-run", "--detailed-exitcode", *store, str(repo.path))
    assert planned.code == 2, planned.output
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in planned.stdout

    applied = run_cli(*store, str(repo.path))
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 5 added, 0 changed, 0 destroyed." in applied.stdout

    for result in run_many(
        run_cli,
        ["--dry-run", "--detailed-exitcode", *store, str(repo.path)],
        ["--detailed-exitcode", *store, str(repo.path)],
    ):
        assert result.code == 0, result.output
        assert "No changes." in result.stdout

    repo.commit({"prefect.yaml": PREFECT.replace("{name: etl}", "{name: missing}")})
    broken = run_cli("--dry-run", "--detailed-exitcode", *store, str(repo.path))
    assert_refused(broken, 'work pool "missing" does not exist')


def test_ref_plans_an_older_commit(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    repo = make_repo(project())
    first = repo.git("rev-parse", "HEAD")
    repo.git("tag", "v1")
    repo.commit({"prefect.yaml": TWO_DEPLOYMENTS})

    old = run_cli("--ref", "v1", "--store", store_url, str(repo.path))
    assert old.code == 0, old.output
    assert keys(store_url, Kind.DEPLOYMENT) == ["ingest/nightly"]
    store = open_store(store_url, readonly=True)
    try:
        recorded = store.get(Kind.DEPLOYMENT, "ingest/nightly")
    finally:
        store.close()
    assert recorded is not None and recorded.source_commit == first

    at_first, at_head = run_many(
        run_cli,
        ["--dry-run", "-o", "json", "--ref", first, "--store", store_url, str(repo.path)],
        ["--dry-run", "-o", "json", "--store", store_url, str(repo.path)],
    )
    assert changed(json_plan(at_first)) == []
    assert json_plan(at_first)["sources"][0]["commit"] == first
    assert changed(json_plan(at_head)) == [("create", "ingest/hourly")]


def test_committed_tree_by_default_working_copy_with_worktree(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    repo.write({"prefect.yaml": PREFECT + "    parameters: {days: 7}\n"})  # not committed

    committed, worktree = run_many(
        run_cli,
        ["--dry-run", "--store", store_url, str(repo.path)],
        ["--dry-run", "--worktree", "--store", store_url, str(repo.path)],
    )
    assert committed.code == 0 and "No changes." in committed.stdout, committed.output
    assert worktree.code == 0, worktree.output
    assert "+ parameters.days = 7" in worktree.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in worktree.stdout


def test_prefect_file_glob_narrows_planning_and_pruning(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    reports = PREFECT.replace("nightly", "weekly").replace("flows/", "../flows/")
    repo = make_repo(project({"reports/prefect.yaml": reports}))
    apply_in_process(store_url, repo)
    repo.commit(
        {
            "prefect.yaml": PREFECT.replace("nightly", "hourly"),
            "reports/prefect.yaml": reports + "    parameters: {days: 7}\n",
        }
    )

    narrowed, everything = run_many(
        run_cli,
        ["--dry-run", "-o", "json", "--prefect-file", "reports/prefect.yaml"],
        ["--dry-run", "-o", "json"],
        cwd=repo.path,
        env={"RECONCILER_STORE": store_url},
    )
    assert changed(json_plan(narrowed)) == [("update", "ingest/weekly")]
    assert json_plan(narrowed)["sources"][0]["files"] == ["reports/prefect.yaml", "work-pools.yaml"]
    assert changed(json_plan(everything)) == [
        ("create", "ingest/hourly"),
        ("delete", "ingest/nightly"),
        ("update", "ingest/weekly"),
    ]


def test_prefect_files_in_subdirectories_resolve_entrypoints_from_their_directory(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    team = PREFECT.replace("nightly", "team-nightly")
    good = make_repo(project({"teams/a/prefect.yaml": team, "teams/a/flows/etl.py": FLOW}))
    wrong = make_repo({**project(), "teams/b/prefect.yaml": team}, name="wrong")

    planned, refused = run_many(
        run_cli,
        ["--dry-run", "-o", "json", "--store", store_url, str(good.path)],
        ["--dry-run", "--store", store_url, str(wrong.path)],
    )
    creates = {c["key"]: c for c in json_plan(planned)["changes"] if c["kind"] == "deployment"}
    team_deployment = creates["ingest/team-nightly"]
    assert team_deployment["owner"]["file"] == "teams/a/prefect.yaml"
    assert team_deployment["desired"]["path"] == "teams/a"
    assert team_deployment["desired"]["flow_path"] == "teams/a/flows/etl.py"
    assert creates["ingest/nightly"]["desired"]["flow_path"] == "flows/etl.py"

    assert_refused(
        refused,
        f"{wrong.path}/teams/b/prefect.yaml:3:17: error: entrypoint file "
        "'teams/b/flows/etl.py' not found",
        "relative to the directory of prefect.yaml ('teams/b')",
    )


NEXT_MIXED = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    parameters: {days: 2}
    work_pool: {name: etl}
  - name: weekly
    entrypoint: flows/etl.py:ingest
    descripton: typo
    work_pool: {name: etl}
"""


@dataclass
class MixedPlan:
    """A store and a repository whose next plan creates, updates and deletes."""

    repo: GitRepo
    store_url: str


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedPlan]:
    root = tmp_path_factory.mktemp("mixed")
    repo = new_repo(root / "repo", project({"prefect.yaml": TWO_DEPLOYMENTS}))
    store_url = f"sqlite:///{root / 'state.db'}"
    apply_in_process(store_url, repo)
    repo.commit({"prefect.yaml": NEXT_MIXED})
    yield MixedPlan(repo, store_url)


def mixed_plan(run_cli: Callable[..., CliResult], mixed: MixedPlan, *args: str) -> CliResult:
    return run_cli("--dry-run", "--store", mixed.store_url, *args, str(mixed.repo.path))


def test_text_output_shows_each_action_and_the_footer(
    run_cli: Callable[..., CliResult], mixed: MixedPlan
) -> None:
    result = mixed_plan(run_cli, mixed)
    assert result.code == 0, result.output
    text = result.stdout
    assert '  + deployment "ingest/weekly" {' in text
    assert '  - deployment "ingest/hourly"' in text
    assert '# deployment "ingest/hourly" will be destroyed' in text
    assert '  ~ deployment "ingest/nightly" {\n      + parameters.days = 2\n    }' in text
    assert text.rstrip().endswith("4 objects unchanged. Plan: 1 to add, 1 to change, 1 to destroy.")
    assert 'warning: unknown key "descripton"' in result.stderr


def test_json_output_matches_the_schema_and_is_byte_identical(
    run_cli: Callable[..., CliResult], mixed: MixedPlan
) -> None:
    first, second = run_many(
        run_cli,
        *[["--dry-run", "-o", "json", "--store", mixed.store_url, str(mixed.repo.path)]] * 2,
    )
    assert first.stdout == second.stdout
    plan = json_plan(first)
    jsonschema.validate(plan, json.loads(PLAN_SCHEMA.read_text()))
    assert changed(plan) == [
        ("delete", "ingest/hourly"),
        ("update", "ingest/nightly"),
        ("create", "ingest/weekly"),
    ]
    assert plan["summary"] == {"add": 1, "change": 1, "destroy": 1, "adopt": 0}
    assert [d["severity"] for d in plan["diagnostics"]] == ["warning"]


def test_markdown_output_has_the_summary_table_and_details(
    run_cli: Callable[..., CliResult], mixed: MixedPlan
) -> None:
    result = mixed_plan(run_cli, mixed, "-o", "markdown")
    assert result.code == 0, result.output
    text = result.stdout
    commit = mixed.repo.git("rev-parse", "--short=7", "HEAD")
    assert "| Repository | Commit | Add | Change | Destroy |" in text
    assert f"| {mixed.repo.path} | {commit} | 1 | 1 | 1 |" in text
    assert "<details>" in text and "</details>" in text
    assert '+   deployment "ingest/weekly" {' in text
    assert '-   deployment "ingest/hourly"' in text
    assert '!   deployment "ingest/nightly" {' in text


BUILT = """\
build:
  - prefect_docker.deployments.steps.build_docker_image:
      id: build-image
      requires: prefect-docker>=0.3.1
      image_name: registry.invalid/etl
      tag: latest
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool:
      name: gpu
      job_variables:
        image: "{{ build-image.image }}"
"""


def test_build_step_outputs_are_known_after_build_and_a_failed_build_applies_nothing(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Dump,
) -> None:
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    repo.commit({"prefect.yaml": BUILT})
    before = dump_store(store_url)

    planned, failed = run_many(
        run_cli,
        ["--dry-run", "--store", store_url, str(repo.path)],
        ["--store", store_url, str(repo.path)],
    )
    assert planned.code == 0, planned.output
    assert "+ job_variables.image = (known after build)" in planned.stdout
    # The repository has no Dockerfile: the build step fails, named by its place in the file.
    assert_refused(failed, f'{repo.path}/prefect.yaml:2:5: step "build-image"', "dockerfile: auto")
    assert dump_store(store_url) == before

    skipped = run_cli("--skip-build", "--store", store_url, str(repo.path))
    assert skipped.code == 0, skipped.output
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in skipped.stdout
    assert (
        f'{repo.path}/prefect.yaml:13:16: warning: placeholder "{{{{ build-image.image }}}}" '
        "has no value" in skipped.stderr
    )
    store = open_store(store_url, readonly=True)
    try:
        deployment = store.get(Kind.DEPLOYMENT, "ingest/nightly")
    finally:
        store.close()
    assert deployment is not None
    assert deployment.spec["work_pool_name"] == "gpu"
    assert "image" not in deployment.spec["job_variables"]
