"""prefect.yaml and work-pools.yaml committed as symbolic links (issue 13, hole 2): a link whose
target stays inside the repository is followed, in the committed tree and with --worktree;
any other is a plan error at the link's file, exit 1, no traceback, the store unchanged."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import POOLS, PREFECT, Dump, apply_in_process, assert_refused, project

pytestmark = pytest.mark.e2e

Run = Callable[..., CliResult]


def link(repo: GitRepo, name: str, target: str) -> None:
    path = repo.path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    os.symlink(target, path)


@pytest.mark.parametrize("worktree", [False, True], ids=["committed", "worktree"])
def test_links_inside_the_repository_are_followed(
    make_repo: Callable[..., GitRepo], run_cli: Run, store_url: str, worktree: bool
) -> None:
    repo = make_repo(project({"config/deploy.yaml": PREFECT, "config/pools/all.yaml": POOLS}))
    link(repo, "prefect.yaml", "config/deploy.yaml")
    link(repo, "config/pools.yaml", "pools/all.yaml")  # a link to a link
    link(repo, "work-pools.yaml", "./config/../config/pools.yaml")
    repo.commit()
    flags = ["--worktree"] if worktree else []
    result = run_cli("--store", store_url, *flags, str(repo.path))
    assert result.code == 0, result.output
    listed = run_cli("deployment", "ls", "--store", store_url)
    assert "ingest/nightly" in listed.stdout, listed.output
    pools = run_cli("work-pool", "ls", "--store", store_url)
    assert "etl" in pools.stdout and "gpu" in pools.stdout, pools.output


@pytest.mark.parametrize("worktree", [False, True], ids=["committed", "worktree"])
@pytest.mark.parametrize(
    ("name", "target", "why"),
    [
        ("prefect.yaml", "../outside.yaml", "points outside the repository"),
        ("work-pools.yaml", "/etc/hostname", "points outside the repository (an absolute path)"),
        ("prefect.yaml", "config/../../outside.yaml", "points outside the repository"),
        ("prefect.yaml", "loop.yaml", "is a loop of links"),
        ("work-pools.yaml", "missing.yaml", "is not a file committed in the repository"),
    ],
)
def test_links_that_leave_the_repository_are_plan_errors(
    make_repo: Callable[..., GitRepo],
    run_cli: Run,
    store_url: str,
    dump_store: Dump,
    tmp_path: Path,
    worktree: bool,
    name: str,
    target: str,
    why: str,
) -> None:
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    before = dump_store(store_url)
    (tmp_path / "outside.yaml").write_text(PREFECT)
    link(repo, name, target)
    link(repo, "loop.yaml", name)
    repo.commit()
    flags = ["--worktree"] if worktree else []
    for dry_run in ([], ["--dry-run"]):
        result = run_cli("--store", store_url, *dry_run, *flags, str(repo.path))
        assert_refused(
            result,
            f"{repo.path}/{name}:1: error: '{name}' is a symbolic link to '{target}', which {why}",
            "hint: commit the file itself",
        )
    assert dump_store(store_url) == before
