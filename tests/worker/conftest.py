"""A reconciled project with flows that behave in every way a run can end, a store, and
workers started as real subprocesses."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.model.runs import FlowRun, RunState
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import apply_in_process
from tests.infra.worker_process import start_worker

FLOWS = """\
import os
import signal
import sys
import time


def hello(name: str = "world", times: int = 1) -> str:
    for _ in range(times):
        print(f"hello {name}")
    print("to stderr", file=sys.stderr)
    return name


def boom(message: str = "kaput") -> None:
    print("about to fail")
    raise RuntimeError(message)


def sleepy(seconds: float = 60) -> None:
    print("sleeping", flush=True)
    time.sleep(seconds)


def killed() -> None:
    print("killing myself", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def show_env(name: str = "GREETING") -> None:
    print(f"{name}={os.environ.get(name)}")


def quick(n: int = 0) -> int:
    return n
"""

# Read for its parameter schema only (never run here): formats, bounds, a Literal, a model.
TYPED = """\
import datetime
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, Field


class Config(BaseModel):
    retries: int = 3
    label: Optional[str] = None


def typed(
    when: datetime.date = datetime.date(2024, 1, 1),
    ratio: Annotated[float, Field(ge=0, le=1)] = 0.5,
    mode: Literal["fast", "slow"] = "fast",
    config: Config = Config(),
    anything: dict = {},
) -> None:
    print(when, ratio, mode, config, anything)
"""

BROKEN = "import not_a_module_anywhere\n\ndef flow() -> None:\n    pass\n"

POOLS = """\
work_pools:
  - name: local
    type: process
    queues:
      - {name: urgent, priority: 1}
      - {name: default, priority: 10}
  - name: limited
    type: process
    concurrency_limit: 1
"""

PREFECT = """\
deployments:
  - {name: hello, entrypoint: flows/flows.py:hello, work_pool: {name: local}}
  - {name: urgent-hello, entrypoint: flows/flows.py:hello,
     work_pool: {name: local, work_queue_name: urgent}}
  - {name: boom, entrypoint: flows/flows.py:boom, work_pool: {name: local}}
  - {name: sleepy, entrypoint: flows/flows.py:sleepy, work_pool: {name: local}}
  - {name: limited-sleepy, entrypoint: flows/flows.py:sleepy, work_pool: {name: limited}}
  - {name: killed, entrypoint: flows/flows.py:killed, work_pool: {name: local}}
  - {name: env, entrypoint: flows/flows.py:show_env,
     work_pool: {name: local, job_variables: {env: {GREETING: from-the-deployment}}}}
  - {name: quick, entrypoint: flows/flows.py:quick, work_pool: {name: local}}
  - {name: typed, entrypoint: flows/typed.py:typed, work_pool: {name: local}}
  - {name: broken, entrypoint: flows/broken.py:flow, work_pool: {name: local},
     enforce_parameter_schema: false}
"""


@dataclass
class Project:
    repo: GitRepo
    store_url: str
    tmp_path: Path
    cli: Callable[..., CliResult]

    def run(self, deployment: str, *args: str) -> str:
        """`reconcile deployment run`; returns the new run's id."""
        done = self.cli("deployment", "run", deployment, "--store", self.store_url, *args)
        assert done.code == 0, done.output
        return done.stdout.split("(", 1)[1].split(")", 1)[0]

    def get(self, run_id: str) -> FlowRun:
        store = open_store(self.store_url, readonly=True)
        try:
            run = store.get_run(run_id)
        finally:
            store.close()
        assert run is not None
        return run

    def logs(self, run_id: str) -> list[str]:
        store = open_store(self.store_url, readonly=True)
        try:
            return [line.line for line in store.run_logs(run_id)]
        finally:
            store.close()

    def wait_state(self, run_id: str, states: set[RunState], timeout: float = 30) -> FlowRun:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(run_id)
            if run.state in states:
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} stayed {self.get(run_id).state}")

    def worker(self, *args: str, pool: str = "local") -> subprocess.Popen[str]:
        log = self.tmp_path / f"worker-{time.monotonic_ns()}.log"
        return start_worker(pool, self.store_url, *args, cwd=self.tmp_path, log=log)

    def run_once(self, *args: str, pool: str = "local") -> None:
        process = self.worker("--run-once", *args, pool=pool)
        assert process.wait(timeout=120) == 0


@pytest.fixture
def project(
    make_repo: Callable[..., GitRepo],
    store_url: str,
    tmp_path: Path,
    run_cli: Callable[..., CliResult],
) -> Iterator[Project]:
    repo = make_repo(
        {
            "flows/flows.py": FLOWS,
            "flows/broken.py": BROKEN,
            "flows/typed.py": TYPED,
            "work-pools.yaml": POOLS,
            "prefect.yaml": PREFECT,
        }
    )
    apply_in_process(store_url, repo)
    made = Project(repo, store_url, tmp_path, run_cli)
    yield made
