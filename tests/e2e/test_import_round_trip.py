"""The round trip of `reconcile import` (issue 19): a repository applied to a fresh store,
imported into a new repository (its flow code copied, its YAML files written by the import),
planned against the same store.

Ownership decision (docs/import.md): the imported objects stay owned by the repository that
made them, so the new repository sees them as another repository's. The round trip is
therefore: `--dry-run --adopt` shows every imported object as `adopt` and nothing else (no
field diff, no create, no delete); after `reconcile adopt -y`, a plain `--dry-run` shows
`No changes.`"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from reconciler.engine.stages import ReconcileRequest, reconcile
from reconciler.model.resources import Kind
from reconciler.settings import Settings
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.test_import import BLOCK_SECRET, ENV_SECRET, FILES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
YAML_FILES = ("prefect.yaml", "work-pools.yaml")

SOURCES = [
    ROOT / "examples" / "01-data-project",
    ROOT / "examples" / "02-platform-pools",
    *sorted(
        p / "repo"
        for p in GOLDEN.iterdir()
        if (p / "repo").is_dir() and not (p / "repo" / "prefect.yaml").is_symlink()
    ),
]


def files_of(root: Path) -> dict[str, str | bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def apply(store_url: str, repo: GitRepo, environ: Mapping[str, str]) -> bool:
    outcome = reconcile(
        ReconcileRequest(repositories=(str(repo.path),), settings=Settings(store_url=store_url)),
        environ=dict(environ),
    )
    return not outcome.errors


def object_count(store_url: str) -> int:
    store = open_store(store_url, readonly=True)
    try:
        return sum(len(store.list_resources(kind)) for kind in Kind)
    finally:
        store.close()


def round_trip(
    original: GitRepo,
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """Import what `original` applied into a new repository; plan it with --adopt (only
    adopt, no diff), adopt it, plan it again (No changes.)."""
    env = dict(env or {})
    imported = make_repo(name="imported")
    for name, content in files_of(original.path).items():
        if Path(name).name not in YAML_FILES and not name.startswith(".git/"):
            target = imported.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
    done = run_cli("import", "--from", store_url, "--out", str(imported.path), env=env)
    assert done.code == 0, done.output
    imported.commit(message="imported")

    shown = run_cli(
        "--dry-run", "--adopt", "-o", "json", "--store", store_url, str(imported.path), env=env
    )
    assert shown.code == 0, shown.output
    plan = json.loads(shown.stdout)
    assert [d for d in plan["diagnostics"] if d["severity"] == "error"] == []
    not_adopted = [c for c in plan["changes"] if c["action"] != "adopt" or c["diffs"]]
    assert not_adopted == [], json.dumps(not_adopted, indent=1)[:3000]
    assert plan["summary"]["adopt"] == object_count(store_url)

    adopted = run_cli("adopt", "-y", "--store", store_url, str(imported.path), env=env)
    assert adopted.code == 0, adopted.output
    assert f"{object_count(store_url)} adopted, 0 added, 0 changed, 0 destroyed" in adopted.stdout

    again = run_cli("--dry-run", "--store", store_url, str(imported.path), env=env)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout


@pytest.mark.parametrize(
    "source", SOURCES, ids=lambda p: p.parent.name if p.name == "repo" else p.name
)
def test_round_trip_of_example_repositories(
    source: Path,
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    original = make_repo(files_of(source))
    assert apply(store_url, original, {}), f"{source} does not apply on its own"
    round_trip(original, make_repo, run_cli, store_url)


def test_round_trip_with_secrets_from_the_environment_and_blocks(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    original = make_repo(FILES)
    store = open_store(store_url)
    try:
        with store.transaction() as tx:
            tx.set_block("secret", "warehouse", {"value": BLOCK_SECRET})
    finally:
        store.close()
    assert apply(store_url, original, {"DB_PASSWORD": ENV_SECRET})
    round_trip(original, make_repo, run_cli, store_url, env={"DB_PASSWORD": ENV_SECRET})
    imported = original.path.parent / "imported"
    for path in imported.rglob("*.yaml"):
        text = path.read_text()
        assert ENV_SECRET not in text and BLOCK_SECRET not in text


@pytest.mark.postgres
def test_round_trip_on_postgresql(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    postgres_url: str,
) -> None:
    original = make_repo(files_of(ROOT / "examples" / "02-platform-pools"))
    assert apply(postgres_url, original, {})
    round_trip(original, make_repo, run_cli, postgres_url)


def test_the_same_repository_reimported_plans_no_changes(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    """Import preserves what the files mean: written over the originals in the repository
    that made the objects, the plan is `No changes.` without any adoption."""
    original = make_repo(files_of(ROOT / "examples" / "01-data-project"))
    assert apply(store_url, original, {})
    done = run_cli("import", "--from", store_url, "--out", str(original.path), "--force")
    assert done.code == 0, done.output
    original.commit(message="imported over the originals")
    assert "definitions:" in (original.path / "prefect.yaml").read_text()
    again = run_cli("--dry-run", "--store", store_url, str(original.path))
    assert again.code == 0, again.output
    assert "No changes." in again.stdout
