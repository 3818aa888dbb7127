"""Issue 15, the first day: `plan`, `apply` (asking at a terminal), `validate`, saved plans,
guessed commands, hints on stderr, and the repository and its store found from any
subdirectory. Each runs the CLI as a subprocess on a real git repository."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import GIT_ENV, CliResult, GitRepo
from tests.e2e.helpers import TWO_DEPLOYMENTS, Dump, apply_in_process, assert_refused, project

pytestmark = pytest.mark.e2e

RunCli = Callable[..., CliResult]
MakeRepo = Callable[..., GitRepo]

ABSOLUTE_WORKDIR = """\
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: /home/me/laptop/project
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
"""


def _store(repo: GitRepo) -> str:
    return f"sqlite:///{repo.path / '.reconciler' / 'state.db'}"


# -- plan, apply, validate -----------------------------------------------------------------------


def test_plan_is_a_dry_run_and_creates_no_store(run_cli: RunCli, make_repo: MakeRepo) -> None:
    repo = make_repo(project())
    result = run_cli("plan", cwd=repo.path)
    assert result.code == 0, result.output
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in result.stdout
    assert "planning against an empty store at" in result.stderr
    assert "every object shows as new" in result.stderr
    assert not (repo.path / ".reconciler").exists()


def test_plan_json_stays_clean_and_quiet_prints_the_summary_only(
    run_cli: RunCli, make_repo: MakeRepo
) -> None:
    repo = make_repo(project())
    as_json = run_cli("plan", "-o", "json", cwd=repo.path)
    assert json.loads(as_json.stdout)["summary"] == {
        "add": 5,
        "change": 0,
        "destroy": 0,
        "adopt": 0,
    }
    quiet = run_cli("plan", "-q", cwd=repo.path)
    assert quiet.stdout.strip() == "Plan: 5 to add, 0 to change, 0 to destroy."


def test_apply_without_a_terminal_applies_without_asking(
    run_cli: RunCli, make_repo: MakeRepo
) -> None:
    repo = make_repo(project())
    result = run_cli("apply", cwd=repo.path, stdin="")
    assert result.code == 0, result.output
    assert "Apply these changes?" not in result.output
    assert "Apply complete! Resources: 5 added" in result.stdout
    again = run_cli("plan", "--detailed-exitcode", cwd=repo.path)
    assert again.code == 0 and "No changes." in again.stdout


def _run_at_a_terminal(args: list[str], cwd: Path, answer: str) -> CliResult:
    """The CLI with a pseudo-terminal as stdin (stdout and stderr are pipes), `answer` typed."""
    leader, follower = pty.openpty()
    env = {**os.environ, **GIT_ENV, "NO_COLOR": "1"}
    env.pop("RECONCILER_STORE", None)
    try:
        os.write(leader, answer.encode() + b"\n")
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=cwd,
            env=env,
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(follower)
        os.close(leader)
    return CliResult(done.returncode, done.stdout, done.stderr)


def test_apply_at_a_terminal_asks_and_only_yes_applies(
    make_repo: MakeRepo, dump_store: Dump
) -> None:
    repo = make_repo(project())
    refused = _run_at_a_terminal(["apply"], repo.path, "y")
    assert_refused(refused, "Apply these changes? Only 'yes' is accepted", "apply cancelled")
    assert "Plan: 5 to add" in refused.stdout
    assert not dump_store(_store(repo)).get("resources")
    accepted = _run_at_a_terminal(["apply"], repo.path, "yes")
    assert accepted.code == 0, accepted.output
    assert "Apply complete! Resources: 5 added" in accepted.stdout
    assert accepted.stdout.count("Plan: 5 to add") == 1  # shown once, before the question


def test_auto_approve_does_not_ask_at_a_terminal(make_repo: MakeRepo) -> None:
    repo = make_repo(project())
    result = _run_at_a_terminal(["apply", "-y"], repo.path, "")
    assert result.code == 0, result.output
    assert "Apply these changes?" not in result.output
    assert "Apply complete!" in result.stdout


def test_bare_reconcile_still_applies_a_path(
    run_cli: RunCli, make_repo: MakeRepo, store_url: str
) -> None:
    repo = make_repo(project())
    result = run_cli(str(repo.path), "--store", store_url)
    assert result.code == 0, result.output
    assert "Apply complete!" in result.stdout


def test_validate_reports_every_error_with_its_line_and_needs_no_store(
    run_cli: RunCli, make_repo: MakeRepo
) -> None:
    broken = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: nowhere}
  - name: weekly
    entrypoint: flows/missing.py:ingest
    work_pool: {name: etl}
"""
    repo = make_repo(project({"prefect.yaml": broken}))
    result = run_cli("validate", cwd=repo.path)
    assert_refused(result, "prefect.yaml:4:", "prefect.yaml:6:", "the files are not valid")
    assert not (repo.path / ".reconciler").exists()
    ok = run_cli("validate", cwd=make_repo(project(), name="good").path)
    assert ok.code == 0 and "Valid: 2 files" in ok.stdout, ok.output
    assert "warning" not in ok.stderr  # no "runs will clone the default branch" for a check


def test_validate_reads_the_working_copy(run_cli: RunCli, make_repo: MakeRepo) -> None:
    repo = make_repo(project())
    repo.write({"prefect.yaml": "deployments: 3\n"})
    assert_refused(run_cli("validate", cwd=repo.path), "prefect.yaml:1:")
    assert run_cli("validate", "--ref", "HEAD", cwd=repo.path).code == 0


@pytest.mark.parametrize(
    ("word", "guess"), [("diff", "plan"), ("check", "validate"), ("aply", "apply")]
)
def test_guessed_commands_are_not_read_as_paths(
    run_cli: RunCli, make_repo: MakeRepo, word: str, guess: str
) -> None:
    repo = make_repo(project())
    result = run_cli(word, cwd=repo.path)
    assert_refused(result, f"no such command or repository path: {word} (did you mean {guess}?)")
    assert not (repo.path / ".reconciler").exists()


# -- saved plans ---------------------------------------------------------------------------------


def test_saved_plan_applies_exactly_once(
    run_cli: RunCli, make_repo: MakeRepo, dump_store: Dump
) -> None:
    repo = make_repo(project())
    store = _store(repo)
    saved = repo.path.parent / "plan.json"
    made = run_cli("plan", "-out", str(saved), cwd=repo.path)
    assert made.code == 0, made.output
    document = json.loads(saved.read_text())
    assert document["sources"][0]["commit"] == repo.git("rev-parse", "HEAD")
    assert document["plan"]["summary"] == {"add": 5, "change": 0, "destroy": 0, "adopt": 0}
    assert len(document["fingerprint"]) == 64
    assert not (repo.path / ".reconciler").exists()

    applied = run_cli("apply", str(saved), cwd=repo.path)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 5 added" in applied.stdout
    before = dump_store(store)
    again = run_cli("apply", str(saved), cwd=repo.path)
    assert_refused(again, "is stale: the store changed since it was planned", "plan again")
    assert dump_store(store) == before


def test_saved_plan_is_refused_when_the_commit_moved(
    run_cli: RunCli, make_repo: MakeRepo, dump_store: Dump
) -> None:
    repo = make_repo(project())
    saved = repo.path.parent / "plan.json"
    assert run_cli("plan", "--out", str(saved), cwd=repo.path).code == 0
    repo.commit({"prefect.yaml": project()["prefect.yaml"] + "# edited\n"})
    before = dump_store(_store(repo))
    result = run_cli("apply", str(saved), cwd=repo.path)
    assert_refused(result, "is stale:", "when planned; HEAD is now")
    assert dump_store(_store(repo)) == before


def test_saved_plan_is_refused_against_another_store(
    run_cli: RunCli, make_repo: MakeRepo, store_url: str, dump_store: Dump
) -> None:
    repo = make_repo(project())
    saved = repo.path.parent / "plan.json"
    assert run_cli("plan", "-out", str(saved), cwd=repo.path).code == 0
    result = run_cli("apply", str(saved), "--store", store_url, cwd=repo.path)
    assert_refused(result, "was made against the store", "give the same --store")
    assert dump_store(store_url) == {}


def test_a_file_that_is_not_a_saved_plan_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert_refused(run_cli("apply", str(other)), "is not a saved plan")


# -- hints ---------------------------------------------------------------------------------------


def test_uncommitted_edits_are_named_on_stderr(run_cli: RunCli, make_repo: MakeRepo) -> None:
    repo = make_repo(project())
    repo.write({"prefect.yaml": TWO_DEPLOYMENTS})
    result = run_cli("plan", "-o", "json", cwd=repo.path)
    assert result.code == 0, result.output
    json.loads(result.stdout)  # the hint is not in the JSON
    assert (
        "1 uncommitted change(s) in prefect.yaml are not in this plan; use --worktree to plan "
        "them" in result.stderr
    )
    worktree = run_cli("plan", "--worktree", cwd=repo.path)
    assert worktree.code == 0, worktree.output
    assert "not in this plan" not in worktree.stderr


def test_absolute_working_directory_warns_and_strict_refuses(
    run_cli: RunCli, make_repo: MakeRepo, dump_store: Dump
) -> None:
    repo = make_repo(project({"prefect.yaml": ABSOLUTE_WORKDIR}))
    warned = run_cli("plan", cwd=repo.path)
    assert warned.code == 0, warned.output
    assert "prefect.yaml:3:18: warning: set_working_directory to the absolute path" in (
        warned.stderr
    )
    apply_in_process(_store(repo), repo)
    before = dump_store(_store(repo))
    strict = run_cli("apply", "--strict", cwd=repo.path)
    assert_refused(strict, "prefect.yaml:3:18: error: set_working_directory to the absolute")
    assert dump_store(_store(repo)) == before


# -- the repository and its store from any subdirectory ----------------------------------------


def test_every_command_finds_the_repository_and_store_from_a_subdirectory(
    run_cli: RunCli, make_repo: MakeRepo
) -> None:
    repo = make_repo(project())
    deep = repo.path / "flows"
    applied = run_cli("apply", cwd=deep, stdin="")
    assert applied.code == 0, applied.output
    assert (repo.path / ".reconciler" / "state.db").exists()
    assert (repo.path / ".reconciler" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert repo.git("status", "--porcelain") == ""  # the store does not show in git status
    listed = run_cli("deployment", "ls", "-o", "json", cwd=deep)
    assert listed.code == 0, listed.output
    assert [d["key"] for d in json.loads(listed.stdout)] == ["ingest/nightly"]
    from_root = run_cli("plan", "--detailed-exitcode", cwd=repo.path)
    assert from_root.code == 0 and "No changes." in from_root.stdout
    pools = run_cli("work-pool", "ls", "-o", "json", cwd=deep)
    assert {p["key"] for p in json.loads(pools.stdout)} == {"etl", "gpu"}


def test_every_error_of_a_file_is_reported_at_once(
    run_cli: RunCli, make_repo: MakeRepo, dump_store: Dump
) -> None:
    broken = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
    schedules:
      - cronn: "0 2 * * *"
    parameters:
      dayz: 3
"""
    repo = make_repo(project({"prefect.yaml": broken}))
    result = run_cli("validate", cwd=repo.path)
    assert_refused(
        result,
        'prefect.yaml:6:9: error: unknown key "cronn"',
        'prefect.yaml:8:13: error: parameter "dayz" is not a parameter of flow ingest()',
        "2 errors",
    )
    applied = run_cli("apply", cwd=repo.path, stdin="")
    assert_refused(applied, 'unknown key "cronn"', 'parameter "dayz"')
    assert not dump_store(_store(repo)).get("deployments")


def test_shell_completion_offers_commands(run_cli: RunCli) -> None:
    env = {"_RECONCILE_COMPLETE": "bash_complete", "COMP_WORDS": "reconcile pl", "COMP_CWORD": "1"}
    result = run_cli(env=env)
    assert result.code == 0, result.output
    assert "plain,plan" in result.stdout.splitlines()
    script = run_cli(env={"_RECONCILE_COMPLETE": "bash_source"})
    assert "_reconcile_completion" in script.stdout


def test_at_a_terminal_the_uncommitted_hint_comes_before_the_question(
    make_repo: MakeRepo,
) -> None:
    repo = make_repo(project())
    repo.write({"prefect.yaml": TWO_DEPLOYMENTS})
    result = _run_at_a_terminal(["apply"], repo.path, "no")
    assert_refused(result, "apply cancelled")
    hint = result.stderr.index("are not in this plan; use --worktree")
    assert hint < result.stderr.index("Apply these changes?")


def test_a_damaged_saved_plan_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    damaged = tmp_path / "plan.json"
    damaged.write_text('{"format": "reconciler-saved-plan", "version": 1, "sources": []}')
    assert_refused(run_cli("apply", str(damaged)), "is a damaged saved plan", "plan again")
