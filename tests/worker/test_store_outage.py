"""A worker's run while its PostgreSQL store is away (stopped, then started again on the same
port). Found by the chaos soak (bench/soak): a run claimed just before the outage stayed
PENDING for good, its slot taken, when the run's own connection could not be opened."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.model.runs import RunState
from reconciler.settings import Settings
from reconciler.store import open_store
from reconciler.worker.backends.process import ProcessBackend
from reconciler.worker.create_run import create_run
from reconciler.worker.execute import RunExecution
from tests.conftest import GitRepo
from tests.e2e.helpers import apply_in_process
from tests.infra.postgres_env import PostgresServer
from tests.worker.conftest import FLOWS, POOLS

pytestmark = pytest.mark.e2e
PREFECT = """\
deployments:
  - {name: hello, entrypoint: flows/flows.py:hello, work_pool: {name: local}}
"""


def test_a_run_claimed_before_the_store_went_away_runs_once_it_is_back(
    make_repo: Callable[..., GitRepo],
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_repo({"flows/flows.py": FLOWS, "work-pools.yaml": POOLS, "prefect.yaml": PREFECT})
    apply_in_process(postgres_url, repo)
    monkeypatch.chdir(repo.path)  # no pull steps: the code is where the worker runs
    store = open_store(postgres_url)
    try:
        made = create_run(store, "hello/hello", parameters={"name": "after"})
        [claimed] = store.claim_runs("local", "w1", limit=1, scheduled_before=made.scheduled_time)
    finally:
        store.close()
    execution = RunExecution(
        claimed,
        settings=Settings(store_url=postgres_url),
        environ={},
        worker_name="w1",
        backend=ProcessBackend(),
        work_dir=tmp_path,
        cancel_grace_seconds=5,
        prefect=None,
    )
    thread = threading.Thread(target=execution.execute)
    threading.Timer(1.0, thread.start).start()  # the run starts while the server is down
    postgres_server.stop_for(3.0)
    assert execution.finished.wait(timeout=60)
    thread.join(timeout=10)
    store = open_store(postgres_url, readonly=True)
    try:
        run = store.get_run(made.id)
    finally:
        store.close()
    assert run is not None and run.state is RunState.COMPLETED, run
