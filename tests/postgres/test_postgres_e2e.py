"""End to end on PostgreSQL, through the CLI as users run it: reconcile (apply, no change,
prune), reads, a worker running a run made by `deployment run`, four workers sharing 300
runs, and an idle worker woken by LISTEN/NOTIFY rather than its poll interval."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from reconciler.model.resources import Kind
from reconciler.model.runs import RunState
from reconciler.store import open_store
from reconciler.worker.create_run import create_run
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import PREFECT, TWO_DEPLOYMENTS, keys
from tests.e2e.helpers import project as project_files
from tests.infra.worker_process import stop_worker
from tests.postgres.test_postgres_store import tables_of
from tests.worker.conftest import Project

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

FINAL = {RunState.COMPLETED, RunState.FAILED, RunState.CRASHED, RunState.CANCELLED}


def test_reconcile_applies_changes_nothing_then_prunes(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], postgres_url: str
) -> None:
    repo = make_repo(project_files({"prefect.yaml": TWO_DEPLOYMENTS}))

    planned = run_cli("--dry-run", "--store", postgres_url, str(repo.path))
    assert planned.code == 0, planned.output
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in planned.stdout
    assert tables_of(postgres_url) == {}, "a dry-run creates no table"

    applied = run_cli("--store", postgres_url, str(repo.path))
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 6 added, 0 changed, 0 destroyed." in applied.stdout

    again = run_cli(str(repo.path), "--detailed-exitcode", env={"RECONCILER_STORE": postgres_url})
    assert again.code == 0, again.output
    assert "No changes." in again.stdout

    listed = run_cli("deployment", "ls", "--store", postgres_url)
    assert listed.code == 0, listed.output
    assert "ingest/hourly" in listed.stdout and "ingest/nightly" in listed.stdout
    assert "warning" not in listed.stderr

    repo.commit({"prefect.yaml": PREFECT})
    pruned = run_cli("--store", postgres_url, str(repo.path))
    assert pruned.code == 0, pruned.output
    assert '- deployment "ingest/hourly"' in pruned.stdout
    assert "Apply complete! Resources: 0 added, 0 changed, 1 destroyed." in pruned.stdout
    assert keys(postgres_url, Kind.DEPLOYMENT) == ["ingest/nightly"]
    history = run_cli("history", "--store", postgres_url)
    assert history.code == 0 and history.stdout.count(repo.git("rev-parse", "HEAD")[:7]) >= 1


def test_a_wrong_password_fails_cleanly_without_showing_it(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], postgres_url: str
) -> None:
    repo = make_repo(project_files())
    parts = urlsplit(postgres_url)
    secret = "not-the-password-0451"
    netloc = f"{parts.username}:{secret}@{parts.hostname}:{parts.port}"
    wrong = urlunsplit(parts._replace(netloc=netloc))

    for args in (("--store", wrong, str(repo.path)), ("deployment", "ls", "--store", wrong)):
        done = run_cli(*args)
        assert done.code == 1, done.output
        assert "cannot connect to the store" in done.stderr
        assert "password authentication failed" in done.stderr
        assert secret not in done.output and "Traceback" not in done.output


def test_a_worker_runs_a_run_made_by_deployment_run(project: Project) -> None:
    run_id = project.run("hello/hello", "--param", "name=postgres", "--param", "times=2")
    project.run_once()

    run = project.get(run_id)
    assert run.state is RunState.COMPLETED, run.state_message
    assert [c.state for c in run.history] == [
        RunState.SCHEDULED,
        RunState.PENDING,
        RunState.RUNNING,
        RunState.COMPLETED,
    ]
    assert project.logs(run_id).count("hello postgres") == 2
    shown = project.cli("flow-run", "inspect", run_id, "--store", project.store_url)
    assert shown.code == 0 and "COMPLETED" in shown.stdout


def test_four_workers_and_300_runs_start_each_run_once(project: Project) -> None:
    store = open_store(project.store_url)
    try:
        ids = [
            create_run(
                store, "quick/quick", parameters={"n": i}, job_variables={"command": "true"}
            ).id
            for i in range(300)
        ]
    finally:
        store.close()
    workers = [project.worker("--poll-interval", "0.5", "--limit", "8") for _ in range(4)]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            store = open_store(project.store_url, readonly=True)
            try:
                states = Counter(r.state for r in store.list_runs(limit=1000))
            finally:
                store.close()
            if sum(states[s] for s in FINAL) == 300:
                break
            time.sleep(0.5)
    finally:
        for worker in workers:
            assert stop_worker(worker) == 0
    store = open_store(project.store_url, readonly=True)
    try:
        runs = [store.get_run(run_id) for run_id in ids]
    finally:
        store.close()
    assert all(run is not None and run.state is RunState.COMPLETED for run in runs)
    for run in runs:
        assert run is not None
        starts = [c for c in run.history if c.state is RunState.RUNNING]
        assert len(starts) == 1, f"run {run.id} started {len(starts)} times"
    assert len({run.worker for run in runs if run is not None}) >= 2


def test_an_idle_worker_hears_of_a_new_run_long_before_its_poll_interval(
    project: Project,
) -> None:
    worker = project.worker("--poll-interval", "5")
    store = open_store(project.store_url)
    try:
        deadline = time.monotonic() + 30
        while not store.workers("local"):
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        time.sleep(0.5)  # idle: waiting for word of a run
        latencies = []
        for number in range(3):
            run_id = create_run(store, "quick/quick", parameters={"n": number}).id
            created = time.monotonic()
            while (found := store.get_run(run_id)) and found.state is RunState.SCHEDULED:
                assert time.monotonic() - created < 10, "the run was never claimed"
                time.sleep(0.01)
            latencies.append(time.monotonic() - created)
            project.wait_state(run_id, FINAL)
            time.sleep(0.3)  # idle again
    finally:
        store.close()
        assert stop_worker(worker) == 0
    assert max(latencies) < 1.5, f"pickup took {latencies} s with a 5 s poll interval"
