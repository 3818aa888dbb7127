"""Runs the bad-input catalogue (tests/bad_inputs/cases/, one case per file): each case's
command, as a subprocess, against a repository and a store where the valid test project is
applied. The exit code and every message fragment must match, no traceback or raw control
character may be printed, and the store must not change. Also: docs/bad-inputs.md is the
catalogue's current rendering."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.terminal_text import printable
from tests.bad_inputs.catalogue import DOCS_PAGE, Case, load_cases, render_markdown
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import FLOW, Dump, apply_in_process, project

pytestmark = pytest.mark.e2e

CASES = load_cases()


def _commit_case(repo: GitRepo, case: Case) -> None:
    repo.write(case.files)
    for path, target in case.symlinks.items():
        link = repo.path / path
        if link.is_symlink() or link.exists():
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    repo.commit(message=f"bad input: {case.name}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_rejected(
    case: Case,
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Dump,
    tmp_path: Path,
) -> None:
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    (tmp_path / "outside.yaml").write_text("deployments: []\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "flow.py").write_text(FLOW)
    _commit_case(repo, case)
    before = dump_store(store_url)
    fill = {"{repo}": str(repo.path), "{store}": store_url, "{tmp}": str(tmp_path)}

    def filled(text: str) -> str:
        for placeholder, value in fill.items():
            text = text.replace(placeholder, value)
        return text

    result = run_cli(*(filled(a) for a in case.command), cwd=tmp_path)
    assert result.code == case.exit_code, result.output
    assert "Traceback" not in result.output, result.output
    assert printable(result.output, keep_newlines=True) == result.output, result.output
    for fragment in case.expect:
        assert filled(fragment) in result.output, f"{filled(fragment)!r} not in:\n{result.output}"
    for secret in case.never:
        assert secret not in result.output, f"{secret!r} shown in:\n{result.output}"
    assert dump_store(store_url) == before


def test_catalogue_has_enough_cases() -> None:
    assert len(CASES) >= 30


def test_docs_page_is_up_to_date() -> None:
    assert DOCS_PAGE.read_text() == render_markdown(CASES), (
        "docs/bad-inputs.md is stale: run `.venv/bin/python -m tests.bad_inputs.catalogue`"
    )
