"""User errors, end to end: each is reported precisely (file:line:col, "did you mean"), exits 1
without a traceback, with and without --dry-run, and leaves the store exactly as it was.

Every test starts from a repository whose valid configuration is already applied, then commits
the mistake to that same repository: a run that went wrong could prune what is there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import FLOW, PREFECT, apply_in_process, assert_refused, project, run_many

pytestmark = pytest.mark.e2e

Dump = Callable[[str], dict[str, list[tuple[object, ...]]]]
Refuse = Callable[..., None]


@pytest.fixture
def applied(make_repo: Callable[..., GitRepo], store_url: str) -> GitRepo:
    """A repository whose valid configuration is in the store: there is something to lose."""
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    return repo


@pytest.fixture
def refuse(run_cli: Callable[..., CliResult], store_url: str, dump_store: Dump) -> Refuse:
    """`refuse(*args, expect=[...])`: run `reconcile --store URL ARGS` with and without
    --dry-run (side by side); both must fail cleanly, say every expected text, change nothing."""

    def check(*args: str, expect: list[str], store: str | None = None) -> None:
        before = dump_store(store_url)
        assert before["deployments"], "the setup must have applied something"
        url = store or store_url
        results = run_many(run_cli, ["--dry-run", "--store", url, *args], ["--store", url, *args])
        for result in results:
            assert_refused(result, *expect)
        assert dump_store(store_url) == before

    return check


def test_not_yaml(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit(
        {
            "prefect.yaml": """\
            deployments:
              - name: nightly
                entrypoint: flows/etl.py:ingest
               work_pool: {name: etl}
            """
        }
    )
    refuse(
        str(applied.path),
        expect=[
            f"{applied.path}/prefect.yaml:4:4: error: not valid YAML",
            "error: 1 error in the configuration; nothing was applied",
        ],
    )


def test_yaml_alias_bomb_is_stopped_quickly(applied: GitRepo, refuse: Refuse) -> None:
    levels = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    applied.commit({"prefect.yaml": "\n".join([*levels, "deployments: []", ""])})

    started = time.monotonic()
    refuse(
        str(applied.path),
        expect=[f"{applied.path}/prefect.yaml:", "this looks like a YAML bomb"],
    )
    assert time.monotonic() - started < 15, "10^10 values must be refused, not expanded"


def test_file_over_10_mb(applied: GitRepo, refuse: Refuse) -> None:
    padding = "#" + "x" * (10 * 1024 * 1024) + "\n"
    applied.commit({"prefect.yaml": PREFECT + padding})
    refuse(
        str(applied.path),
        expect=[
            f"{applied.path}/prefect.yaml: error: file is",
            "over the limit of 10,485,760 bytes (10 MB)",
        ],
    )


def test_root_is_not_a_mapping(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit({"prefect.yaml": "- name: nightly\n"})
    refuse(
        str(applied.path),
        expect=[
            f"{applied.path}/prefect.yaml:1:1: error: the file is a list; a prefect.yaml is a "
            "mapping with a `deployments` list"
        ],
    )


def test_deployments_is_not_a_list(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit({"prefect.yaml": "deployments:\n  name: nightly\n"})
    refuse(
        str(applied.path),
        expect=[f'{applied.path}/prefect.yaml:2:3: error: "deployments" must be a list, not a'],
    )


def test_wrong_types_are_all_reported(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit(
        {
            "prefect.yaml": """\
            deployments:
              - name: nightly
                version: 1
                entrypoint: flows/etl.py:ingest
                parameters: []
                work_pool: {name: etl}
            """
        }
    )
    refuse(
        str(applied.path),
        expect=[
            f'{applied.path}/prefect.yaml:3:14: error: "deployments[0].version" must be a string, '
            "not integer 1",
            'hint: put it in quotes: "1"',
            f'{applied.path}/prefect.yaml:5:17: error: "deployments[0].parameters" must be a '
            "mapping, not a list",
            "2 errors in the configuration",
        ],
    )


SECOND_NIGHTLY = """\
deployments:
  - name: nightly
    entrypoint: {entrypoint}
    work_pool: {{name: etl}}
"""


def test_duplicate_deployment_in_one_file(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit(
        {
            "prefect.yaml": """\
            deployments:
              - name: nightly
                entrypoint: flows/etl.py:ingest
                work_pool: {name: etl}
              - name: nightly
                entrypoint: flows/etl.py:ingest
                work_pool: {name: gpu}
            """
        }
    )
    file = f"{applied.path}/prefect.yaml"
    refuse(
        str(applied.path),
        expect=[
            f'{file}:5:11: error: deployment "ingest/nightly" is declared twice: here and at '
            f"{file}:2:11"
        ],
    )


def test_duplicate_deployment_across_files(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit(
        {"team/prefect.yaml": SECOND_NIGHTLY.format(entrypoint="../flows/etl.py:ingest")}
    )
    refuse(
        str(applied.path),
        expect=[
            f'{applied.path}/team/prefect.yaml:2:11: error: deployment "ingest/nightly" is '
            f"declared twice: here and at {applied.path}/prefect.yaml:2:11"
        ],
    )


def test_duplicate_deployment_across_repositories(
    applied: GitRepo, make_repo: Callable[..., GitRepo], refuse: Refuse
) -> None:
    other = make_repo(
        {
            "flows/etl.py": FLOW,
            "prefect.yaml": SECOND_NIGHTLY.format(entrypoint="flows/etl.py:ingest"),
        },
        name="other",
    )
    refuse(
        str(applied.path),
        str(other.path),
        expect=[
            f'{other.path}/prefect.yaml:2:11: error: deployment "ingest/nightly" is declared '
            f"twice: here and at {applied.path}/prefect.yaml:2:11"
        ],
    )


def test_same_repository_named_twice(applied: GitRepo, refuse: Refuse) -> None:
    refuse(
        str(applied.path),
        f"{applied.path}/./",
        expect=[
            f"error: {applied.path} and {applied.path}/./ are the same repository",
            "hint: name each repository once",
        ],
    )


def test_unknown_pool_suggests_the_close_one(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit({"prefect.yaml": PREFECT.replace("{name: etl}", "{name: etll}")})
    refuse(
        str(applied.path),
        expect=[
            f'{applied.path}/prefect.yaml:4:23: error: work pool "etll" does not exist',
            'hint: did you mean "etl"?',
        ],
    )


def test_job_variables_rejected_by_the_pool_schema(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit(
        {
            "prefect.yaml": """\
            deployments:
              - name: nightly
                entrypoint: flows/etl.py:ingest
                work_pool:
                  name: etl
                  job_variables:
                    env:
                      LOG_LEVEL: [debug, info]
              - name: on-gpu
                entrypoint: flows/etl.py:ingest
                work_pool:
                  name: gpu
                  job_variables:
                    image: 5
            """
        }
    )
    file = f"{applied.path}/prefect.yaml"
    refuse(
        str(applied.path),
        expect=[
            f'{file}:8:22: error: job variable "env.LOG_LEVEL" must be a string',
            '(work pool "etl")',
            f'{file}:14:16: error: job variable "image" must be a string',
            '(work pool "gpu")',
        ],
    )


def test_missing_entrypoint_file(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit({"prefect.yaml": SECOND_NIGHTLY.format(entrypoint="flows/missing.py:ingest")})
    refuse(
        str(applied.path),
        expect=[
            f"{applied.path}/prefect.yaml:3:17: error: entrypoint file 'flows/missing.py' not "
            "found in the repository"
        ],
    )


def test_entrypoints_escaping_the_repository(
    applied: GitRepo, refuse: Refuse, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "flow.py").write_text(FLOW)  # a real flow: following the path would work
    os.symlink(outside, applied.path / "linked")
    applied.commit(
        {
            "prefect.yaml": f"""\
            deployments:
              - name: up
                entrypoint: ../outside/flow.py:ingest
                work_pool: {{name: etl}}
              - name: absolute
                entrypoint: {outside}/flow.py:ingest
                work_pool: {{name: etl}}
              - name: through-link
                entrypoint: linked/flow.py:ingest
                work_pool: {{name: etl}}
            """
        }
    )
    assert applied.git("ls-files", "-s", "linked").startswith("120000"), "symlink committed"
    file = f"{applied.path}/prefect.yaml"
    refuse(
        str(applied.path),
        expect=[
            f"{file}:3:17: error: entrypoint path '../outside/flow.py' escapes the repository",
            f"{file}:6:17: error: entrypoint '{outside}/flow.py:ingest' uses an absolute path",
            f"{file}:9:17: error: entrypoint path 'linked/flow.py' goes through the symbolic "
            "link 'linked'",
            "3 errors in the configuration",
        ],
    )


def test_flow_file_with_a_syntax_error(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit({"flows/etl.py": FLOW.replace("region: str", "region str")})
    refuse(
        str(applied.path),
        expect=[
            f"{applied.path}/prefect.yaml:3:17: error: flow file 'flows/etl.py' has a Python "
            "syntax error on line 5",
        ],
    )


def test_bad_cron_timezone_and_rrule(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit(
        {
            "prefect.yaml": """\
            deployments:
              - name: nightly
                entrypoint: flows/etl.py:ingest
                work_pool: {name: etl}
                schedules:
                  - cron: "61 * * * *"
                  - cron: "0 2 * * *"
                    timezone: Mars/Olympus
                  - rrule: "FREQ=SOMETIMES"
            """
        }
    )
    file = f"{applied.path}/prefect.yaml"
    refuse(
        str(applied.path),
        expect=[
            f'{file}:6:9: error: Invalid cron expression "61 * * * *"',
            f'{file}:8:9: error: Invalid timezone "Mars/Olympus"',
            f'{file}:9:9: error: Invalid rrule "FREQ=SOMETIMES"',
        ],
    )


def test_unknown_pull_step_suggests_the_close_one(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit(
        {
            "prefect.yaml": """\
            pull:
              - prefect.deployments.steps.git_clon:
                  repository: https://git.invalid/etl.git
            deployments:
              - name: nightly
                entrypoint: flows/etl.py:ingest
                work_pool: {name: etl}
            """
        }
    )
    refuse(
        str(applied.path),
        expect=[
            f'{applied.path}/prefect.yaml:2:5: error: unknown step "prefect.deployments.steps.'
            'git_clon"',
            'hint: did you mean "prefect.deployments.steps.git_clone"?',
        ],
    )


def test_path_that_is_not_a_git_repository(
    applied: GitRepo, refuse: Refuse, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "prefect.yaml").write_text(PREFECT)
    refuse(
        str(applied.path),
        str(plain),
        expect=[f"error: {plain} is not a git repository", "git init"],
    )


def test_ref_that_does_not_exist(applied: GitRepo, refuse: Refuse) -> None:
    refuse(
        "--ref",
        "v9.9",
        str(applied.path),
        expect=[f"error: ref 'v9.9' does not exist in {applied.path}", "hint: refs here: main"],
    )


def test_unknown_keys_warn_and_strict_refuses(
    applied: GitRepo, refuse: Refuse, run_cli: Callable[..., CliResult], store_url: str
) -> None:
    applied.commit(
        {
            "prefect.yaml": """\
            deployments:
              - name: nightly
                descripton: typo of description
                entrypoint: flows/etl.py:ingest
                work_pool: {name: etl}
            """
        }
    )
    where = f"{applied.path}/prefect.yaml:3:5"
    refuse(
        "--strict",
        str(applied.path),
        expect=[
            f'{where}: error: unknown key "descripton" in "deployments[0]"',
            'did you mean "description"?',
        ],
    )

    lenient = run_cli("--store", store_url, str(applied.path))
    assert lenient.code == 0, lenient.output
    assert f'{where}: warning: unknown key "descripton"' in lenient.stderr
    assert "it is ignored, as Prefect ignores it" in lenient.stderr
    assert "No changes." in lenient.stdout


def test_empty_prefect_yaml(applied: GitRepo, refuse: Refuse) -> None:
    applied.commit({"prefect.yaml": ""})
    refuse(
        str(applied.path),
        expect=[f"{applied.path}/prefect.yaml: error: the file is empty"],
    )


def test_unsupported_store_url(applied: GitRepo, refuse: Refuse, tmp_path: Path) -> None:
    refuse(
        str(applied.path),
        store="mysql://reconciler@db.invalid/state",
        expect=["error: unsupported store URL scheme 'mysql'", "sqlite:///", "postgresql://"],
    )
    assert not (tmp_path / ".reconciler").exists(), "no default store may be made instead"
