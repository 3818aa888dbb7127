"""Golden plan cases: a repository and a store in, the JSON plan of `reconcile --dry-run` out.

Each directory beside this file is one case:

    repo/                 files committed into a fresh git repository
    observed.json         optional: objects seeded into a new SQLite store before planning,
                          a list of {kind, key, spec, owner: {repo, file} | null}
    args.json             optional: extra command-line arguments, a list of strings
    expected-plan.json    the `-o json` output, with the repository path written as "$REPO"
                          and its commit as "$COMMIT"

The repository's identity is its absolute path, so owners in observed.json write
`"repo": "$REPO"`. A case whose plan has errors expects exit code 1, any other 0.

To write the expected files again after a deliberate change, run
`RECONCILER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/golden`, then read every changed file: a
golden file is only worth having if a person checked that it is the plan they would expect.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.resources import Kind, Owner, Resource
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo

pytestmark = pytest.mark.e2e

CASES_DIR = Path(__file__).resolve().parent
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "repo").is_dir())
UPDATE = os.environ.get("RECONCILER_UPDATE_GOLDEN") == "1"
REPO_PLACEHOLDER = "$REPO"
COMMIT_PLACEHOLDER = "$COMMIT"


def read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def as_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def repo_files(case: Path) -> dict[str, str | bytes]:
    """Every file under repo/, as bytes so that they are committed exactly as written."""
    root = case / "repo"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def seed_store(url: str, entries: list[dict[str, Any]], repo_identity: str) -> None:
    store = open_store(url)
    try:
        with store.transaction() as tx:
            for entry in entries:
                owner = entry["owner"]
                tx.put(
                    Resource.of(
                        Kind(entry["kind"]),
                        entry["key"],
                        entry["spec"],
                        Owner(owner["repo"].replace(REPO_PLACEHOLDER, repo_identity), owner["file"])
                        if owner
                        else None,
                    )
                )
    finally:
        store.close()


def with_placeholders(text: str, repo: GitRepo, commit: str) -> str:
    paths = sorted({str(repo.path), str(repo.path.resolve())}, key=len, reverse=True)
    for path in paths:
        text = text.replace(path, REPO_PLACEHOLDER)
    return text.replace(commit, COMMIT_PLACEHOLDER)


def has_errors(plan: dict[str, Any]) -> bool:
    return any(d["severity"] == "error" for d in plan["diagnostics"])


@pytest.mark.parametrize("name", CASES)
def test_golden_plan(
    name: str,
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    case = CASES_DIR / name
    repo = make_repo(repo_files(case))
    commit = repo.git("rev-parse", "HEAD")
    observed = read_json(case / "observed.json", None)
    if observed is not None:
        seed_store(store_url, observed, str(repo.path.resolve()))
    args = read_json(case / "args.json", [])

    result = run_cli("--dry-run", "-o", "json", "--store", store_url, *args, str(repo.path))

    try:
        actual = json.loads(with_placeholders(result.stdout, repo, commit))
    except json.JSONDecodeError:
        pytest.fail(f"no JSON plan (exit code {result.code}):\n{result.output}")
    expected_file = case / "expected-plan.json"
    if UPDATE:
        expected_file.write_text(as_text(actual))
    expected = read_json(expected_file, None)
    assert expected is not None, f"{expected_file} is missing: run with RECONCILER_UPDATE_GOLDEN=1"
    assert as_text(actual) == as_text(expected), result.stderr
    assert result.code == (1 if has_errors(expected) else 0), result.output
