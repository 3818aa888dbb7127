"""Read commands on a store written by a real apply of examples/01-data-project: tables for
people, JSON for scripts, "did you mean" for a missing name, and no store made by reading."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.e2e.helpers import apply_in_process, new_repo, run_many

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "01-data-project"
Run = Callable[..., CliResult]


@dataclass
class Applied:
    store_url: str
    repo: Path
    commit: str


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Applied:
    """The example project applied once; every test here only reads it."""
    root = tmp_path_factory.mktemp("read")
    files = {
        str(p.relative_to(EXAMPLE)): p.read_text()
        for p in EXAMPLE.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    repo = new_repo(root / "data-project", files)
    store_url = f"sqlite:///{root / 'state.db'}"
    apply_in_process(store_url, repo)
    return Applied(store_url, repo.path, repo.git("rev-parse", "HEAD"))


def read(run_cli: Run, applied: Applied, *args: str) -> CliResult:
    result = run_cli(*args, "--store", applied.store_url)
    assert result.code == 0, result.output
    return result


def test_deployment_ls_table_and_json(run_cli: Run, applied: Applied) -> None:
    table, as_json = run_many(
        run_cli,
        ["deployment", "ls", "--store", applied.store_url],
        ["deployment", "ls", "-o", "json", "--store", applied.store_url],
    )
    owner = f"{applied.repo}:prefect.yaml"
    short = applied.commit[:8]
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "DEPLOYMENT",
        "POOL/QUEUE",
        "PAUSED",
        "SCHEDULES",
        "LAST",
        "RUN",
        "NEXT",
        "RUN",
        "OWNER",
        "COMMIT",
    ]
    assert [line.split() for line in lines[1:]] == [  # no runs yet: "-" for last and next
        ["build-reports/reports-emea", "etl/default", "no", "2", "-", "-", owner, short],
        ["ingest-orders/orders-backfill", "etl/backfill", "yes", "0", "-", "-", owner, short],
        ["ingest-orders/orders-nightly", "etl/default", "no", "1", "-", "-", owner, short],
    ]
    listed = json.loads(as_json.stdout)
    assert [d["key"] for d in listed] == [line.split()[0] for line in lines[1:]]
    assert listed[2]["spec"]["parameters"] == {"days": 1}
    assert listed[2]["owner"] == {"repo": str(applied.repo), "file": "prefect.yaml"}


def test_deployment_inspect(run_cli: Run, applied: Applied) -> None:
    found = json.loads(
        read(run_cli, applied, "deployment", "inspect", "ingest-orders/orders-nightly").stdout
    )
    assert found["kind"] == "deployment"
    assert found["source_commit"] == applied.commit
    assert found["spec"]["schedules"][0]["cron"] == "0 2 * * *"
    assert found["spec"]["tags"] == ["orders", "nightly"]
    assert len(found["content_hash"]) == 64


def test_work_pool_ls_and_inspect(run_cli: Run, applied: Applied) -> None:
    table, as_json, inspected = run_many(
        run_cli,
        ["work-pool", "ls", "--store", applied.store_url],
        ["work-pool", "ls", "-o", "json", "--store", applied.store_url],
        ["work-pool", "inspect", "etl", "--store", applied.store_url],
    )
    assert [line.split() for line in table.stdout.splitlines()] == [
        ["WORK", "POOL", "TYPE", "STATUS", "CONCURRENCY", "QUEUES", "OWNER"],
        ["etl", "process", "NOT_READY", "4", "2", f"{applied.repo}:work-pools.yaml"],
    ]
    assert [(p["key"], p["status"]) for p in json.loads(as_json.stdout)] == [("etl", "NOT_READY")]
    assert json.loads(inspected.stdout)["status"] == "NOT_READY"
    spec = json.loads(inspected.stdout)["spec"]
    assert spec["description"] == "Local processes for the data project."
    assert "job_configuration" in spec["base_job_template"]


def test_work_queue_ls(run_cli: Run, applied: Applied) -> None:
    table, as_json, other_pool = run_many(
        run_cli,
        ["work-queue", "ls", "--store", applied.store_url],
        ["work-queue", "ls", "-o", "json", "--pool", "etl", "--store", applied.store_url],
        ["work-queue", "ls", "--pool", "gpu", "--store", applied.store_url],
    )
    owner = f"{applied.repo}:work-pools.yaml"
    assert [line.split() for line in table.stdout.splitlines()] == [
        ["POOL", "QUEUE", "PRIORITY", "PAUSED", "CONCURRENCY", "OWNER"],
        ["etl", "backfill", "10", "no", "1", owner],
        ["etl", "default", "1", "no", "-", owner],
    ]
    assert [q["key"] for q in json.loads(as_json.stdout)] == ["etl/backfill", "etl/default"]
    assert other_pool.code == 1
    assert 'work pool "gpu" not found' in other_pool.stderr


def test_history_list_and_one_entry(run_cli: Run, applied: Applied) -> None:
    table, as_json, entry = run_many(
        run_cli,
        ["history", "--store", applied.store_url],
        ["history", "-o", "json", "--store", applied.store_url],
        ["history", "1", "--store", applied.store_url],
    )
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["ID", "APPLIED", "AT", "REPOSITORIES", "ADD", "CHANGE", "DESTROY"]
    assert rows[1][0] == "1" and rows[1][2:] == [
        f"{applied.repo}@{applied.commit[:8]}",
        "6",
        "0",
        "0",
    ]
    (listed,) = json.loads(as_json.stdout)
    assert listed["summary"] == {"add": 6, "change": 0, "destroy": 0, "adopt": 0}
    assert listed["sources"] == [
        {"repo": str(applied.repo), "commit": applied.commit, "ref": "HEAD"}
    ]
    plan = json.loads(entry.stdout)
    assert plan["summary"] == listed["summary"]
    assert len(plan["changes"]) == 6


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["deployment", "inspect", "ingest-orders/orders-nightli"],
            'did you mean "ingest-orders/orders-nightly"?',
        ),
        (["work-pool", "inspect", "etl2"], 'did you mean "etl"?'),
        (["history", "7"], "no applied plan 7"),
    ],
)
def test_missing_names_are_reported(
    run_cli: Run, applied: Applied, args: list[str], expected: str
) -> None:
    result = run_cli(*args, "--store", applied.store_url)
    assert result.code == 1, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_reading_a_store_that_does_not_exist_creates_nothing(run_cli: Run, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "state.db"
    url = f"sqlite:///{missing}"
    results = run_many(
        run_cli,
        ["deployment", "ls", "--store", url],
        ["work-pool", "ls", "-o", "json", "--store", url],
        ["work-queue", "ls", "--store", url],
        ["history", "--store", url],
        ["variable", "ls", "--store", url],
        ["deployment", "inspect", "a/b", "--store", url],
    )
    for result in results[:-1]:
        assert result.code == 0, result.output
        assert f"warning: there is no store at {missing}" in result.stderr
    assert json.loads(results[1].stdout) == []
    assert results[-1].code == 1 and 'deployment "a/b" not found' in results[-1].stderr
    assert not (tmp_path / "nowhere").exists()
    assert not (tmp_path / ".reconciler").exists()
