"""The core promise, end to end: plan, apply, and a second run reports no changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult, GitRepo

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "01-data-project"


def example_files() -> dict[str, str]:
    return {
        str(p.relative_to(EXAMPLE)): p.read_text()
        for p in EXAMPLE.rglob("*")
        if p.is_file() and p.name != "README.md"
    }


def test_dry_run_apply_then_no_changes(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Callable[[str], dict[str, list[tuple[object, ...]]]],
) -> None:
    repo = make_repo(example_files())

    planned = run_cli("--dry-run", "--store", store_url, str(repo.path))
    assert planned.code == 0, planned.output
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in planned.stdout
    assert dump_store(store_url) == {}, "a dry-run must not create the store"

    applied = run_cli("--store", store_url, str(repo.path))
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 6 added, 0 changed, 0 destroyed." in applied.stdout

    again = run_cli("--store", store_url, str(repo.path), "--detailed-exitcode")
    assert again.code == 0, again.output
    assert "No changes." in again.stdout

    listed = run_cli("deployment", "ls", "--store", store_url)
    assert "ingest-orders/orders-nightly" in listed.stdout
    assert "build-reports/reports-emea" in listed.stdout
