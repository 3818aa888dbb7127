"""Control and bidi characters in names (issue 13, hole 3): plan errors with a position, and
every terminal listing escapes what it prints from the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from reconciler.core.terminal_text import printable, unsafe_characters
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import PREFECT, Dump, apply_in_process, assert_refused, project

pytestmark = pytest.mark.e2e

Run = Callable[..., CliResult]
RAW = ("\x1b", "\x00", "\x9b", "\u202e")


def test_the_escaping_function() -> None:
    assert printable("a\x1b[2Jb\u202ec\x00d\x9b") == "a\\x1b[2Jb\\u202ec\\x00d\\x9b"
    assert printable("line\nnext\ttab", keep_newlines=True) == "line\nnext\ttab"
    assert printable("naïve ☃ 日本") == "naïve ☃ 日本"
    assert unsafe_characters("x\u2066y\x7f\x7f") == ["\\u2066", "\\x7f"]


def test_names_with_control_characters_are_plan_errors(
    make_repo: Callable[..., GitRepo], run_cli: Run, store_url: str, dump_store: Dump
) -> None:
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    before = dump_store(store_url)
    repo.commit(
        {
            "prefect.yaml": PREFECT.replace("name: nightly", 'name: "night\\e[2Jly"')
            + '    tags: ["ok", "evil\\u202egnp.exe"]\n',
            "work-pools.yaml": 'work_pools:\n  - name: "etl\\0"\n    type: process\n',
        }
    )
    for dry_run in ([], ["--dry-run"]):
        result = run_cli("--store", store_url, *dry_run, str(repo.path))
        assert_refused(
            result,
            f"{repo.path}/prefect.yaml:2:11: error: `deployments[0].name`",
            "error: `deployments[0].name` holds control or bidi characters (\\x1b)",
            "error: `deployments[0].tags[1]` holds control or bidi characters (\\u202e)",
            f"{repo.path}/work-pools.yaml:2:",
            "error: `work_pools[0].name` holds control or bidi characters (\\x00)",
        )
        assert not any(raw in result.output for raw in RAW), result.output
    assert dump_store(store_url) == before


def test_listings_and_hints_escape_what_the_store_holds(
    make_repo: Callable[..., GitRepo], run_cli: Run, store_url: str
) -> None:
    repo = make_repo(project())
    apply_in_process(store_url, repo)
    # As a store written before names were checked (or by hand) may hold it.
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
        db.execute(
            "UPDATE deployments SET key = ?, name = ?",
            ("ingest/night\x1b[2J\u202ely", "night\x1b[2J\u202ely"),
        )
    listed = run_cli("deployment", "ls", "--store", store_url)
    assert "ingest/night\\x1b[2J\\u202ely" in listed.stdout, listed.output
    hint = run_cli("deployment", "inspect", "ingest/nightly", "--store", store_url)
    assert hint.code == 1 and "\\x1b[2J\\u202e" in hint.output, hint.output
    asked = run_cli("deployment", "inspect", "ingest/\x1b]0;pwned\x07", "--store", store_url)
    assert asked.code == 1 and "\\x1b]0;pwned\\x07" in asked.output, asked.output
    for result in (listed, hint, asked):
        assert not any(raw in result.output for raw in RAW), result.output
