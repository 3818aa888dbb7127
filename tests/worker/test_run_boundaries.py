"""What a run may not do to the machine or the store (issue 13, holes 4, 7, 8, 9 and the log
cap): leave processes behind (when it ends, is cancelled, or its worker is killed -9), show a
secret from the environment, crash on large parameters, or fill the store with output. Real
workers, real subprocesses, a real store."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.core.masking import MASK
from reconciler.engine.stages import ReconcileRequest, reconcile
from reconciler.model.runs import RunState
from reconciler.settings import Settings
from reconciler.store import open_store
from reconciler.worker.create_run import create_run
from reconciler.worker.process_backend import start_process
from reconciler.worker.run_processes import ProcessIdentity, stop_leftovers
from tests.conftest import CliResult, GitRepo
from tests.infra.worker_process import stop_worker
from tests.worker.conftest import POOLS, Project

pytestmark = pytest.mark.e2e

FINAL = {RunState.COMPLETED, RunState.FAILED, RunState.CRASHED, RunState.CANCELLED}
SECRET = "hunter2-from-the-environment"

FLOWS = """\
import json
import os
import subprocess
import sys
import time


def spawn(pid_file: str, seconds: float = 0) -> None:
    '''Start children that try to outlive the run, write their pids, then sleep.'''
    pids = []
    forked = os.fork()  # keeps the output pipes open
    if forked == 0:
        time.sleep(300)
        os._exit(0)
    pids.append(forked)
    moved = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
    )
    pids.append(moved.pid)
    read_end, write_end = os.pipe()
    middle = os.fork()  # a daemon: fork, setsid, fork again, the middle one exits
    if middle == 0:
        os.setsid()
        daemon = os.fork()
        if daemon == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            time.sleep(300)
            os._exit(0)
        os.write(write_end, str(daemon).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(middle, 0)
    pids.append(int(os.read(read_end, 64)))
    with open(pid_file + ".tmp", "w") as out:
        json.dump(pids, out)
    os.rename(pid_file + ".tmp", pid_file)
    print("spawned", flush=True)
    time.sleep(seconds)


def leak(name: str = "CONNECTION") -> None:
    value = os.environ.get(name)
    print(f"{name} is {value}", flush=True)
    raise RuntimeError(f"cannot connect with {value}")


def measure(blob: list) -> None:
    print(f"received {len(blob)} parts, {len(json.dumps(blob))} bytes", flush=True)


def chatty(megabytes: int = 30) -> None:
    line = "x" * 1023
    for _ in range(megabytes * 1024):
        print(line)
    print("the very end", flush=True)
    raise RuntimeError("too chatty")
"""

PREFECT = """\
deployments:
  - {name: spawn, entrypoint: flows/flows.py:spawn, work_pool: {name: local}}
  - {name: leak, entrypoint: flows/flows.py:leak,
     work_pool: {name: local, job_variables: {env: {CONNECTION: "{{ $MY_SECRET }}"}}}}
  - {name: measure, entrypoint: flows/flows.py:measure, work_pool: {name: local}}
  - {name: chatty, entrypoint: flows/flows.py:chatty, work_pool: {name: local}}
"""


@pytest.fixture
def project(
    make_repo: Callable[..., GitRepo],
    store_url: str,
    tmp_path: Path,
    run_cli: Callable[..., CliResult],
) -> Iterator[Project]:
    repo = make_repo({"flows/flows.py": FLOWS, "work-pools.yaml": POOLS, "prefect.yaml": PREFECT})
    # The plan reads MY_SECRET (as the daemon does from its environment); the worker does not
    # have it.
    request = ReconcileRequest(
        repositories=(str(repo.path),), settings=Settings(store_url=store_url)
    )
    outcome = reconcile(request, environ={"MY_SECRET": SECRET})
    assert not outcome.errors, outcome.errors
    yield Project(repo, store_url, tmp_path, run_cli)


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


def wait_for_pids(pid_file: Path, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the flow never started its children"
        time.sleep(0.05)
    pids: list[int] = json.loads(pid_file.read_text())
    return pids


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """The pids still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


def seconds_running(project: Project, run_id: str) -> float:
    history = project.get(run_id).history
    started = next(c.at for c in history if c.state is RunState.RUNNING)
    ended = history[-1].at
    span = datetime.datetime.fromisoformat(ended) - datetime.datetime.fromisoformat(started)
    return span.total_seconds()


# --- hole 7: what a flow starts ends with its run -----------------------------------------------


def test_processes_a_flow_starts_end_with_its_run_whatever_session_they_moved_to(
    project: Project,
) -> None:
    pid_file = project.tmp_path / "pids.json"
    run_id = project.run("spawn/spawn", "--param", f"pid_file={pid_file}")
    project.run_once()
    pids = wait_for_pids(pid_file)
    try:
        run = project.get(run_id)
        assert run.state is RunState.COMPLETED, run.state_message
        assert [pid for pid in pids if alive(pid)] == []  # forked, new session, daemon
        # A forked child held the output pipes: the run still ended as the flow returned.
        assert seconds_running(project, run_id) < 8
    finally:
        kill_all(pids)


def test_a_cancelled_run_stops_the_processes_that_left_its_session(project: Project) -> None:
    pid_file = project.tmp_path / "pids.json"
    run_id = project.run("spawn/spawn", "--param", f"pid_file={pid_file}", "--param", "seconds=60")
    worker = project.worker("--poll-interval", "0.05", "--cancel-grace-seconds", "2")
    pids: list[int] = []
    try:
        pids = wait_for_pids(pid_file)
        done = project.cli("flow-run", "cancel", run_id, "--store", project.store_url)
        assert done.code == 0, done.output
        assert project.wait_state(run_id, FINAL, timeout=15).state is RunState.CANCELLED
        assert wait_gone(pids, timeout=5) == []
    finally:
        kill_all(pids)
        assert stop_worker(worker) == 0


# --- hole 8: a worker killed -9 leaves nothing running -----------------------------------------


def test_a_worker_killed_with_sigkill_leaves_no_flow_process(project: Project) -> None:
    pid_file = project.tmp_path / "pids.json"
    run_id = project.run("spawn/spawn", "--param", f"pid_file={pid_file}", "--param", "seconds=60")
    first = project.worker("--name", "same")
    pids: list[int] = []
    second = None
    try:
        pids = wait_for_pids(pid_file)
        supervisor = project.get(run_id).infrastructure_id or ""
        assert re.fullmatch(r"pid \d+ started \d+ on \S+", supervisor), supervisor
        first.kill()
        first.wait()
        second = project.worker("--name", "same")
        run = project.wait_state(run_id, {RunState.CRASHED}, timeout=15)
        assert run.state_message == "worker same restarted while the run was in progress"
        top = int(supervisor.split()[1])
        assert wait_gone([top, *pids], timeout=10) == []
    finally:
        kill_all(pids)
        if second is not None:
            stop_worker(second)


def test_leftovers_are_stopped_only_when_host_pid_and_start_time_all_match(
    tmp_path: Path,
) -> None:
    child = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(300)'], start_new_session=True); time.sleep(300)"
    )
    handle = start_process(
        [sys.executable, "-c", child],
        cwd=tmp_path,
        env=dict(os.environ),
        on_line=lambda stream, text: None,
    )
    mine = handle.identity
    try:
        other_start = ProcessIdentity(mine.pid, mine.started + 1, mine.host)
        other_host = ProcessIdentity(mine.pid, mine.started, mine.host + "-elsewhere")
        assert not stop_leftovers(other_start) and not stop_leftovers(other_host)
        assert handle.process.poll() is None
        time.sleep(0.5)  # the child in a new session is started
        below = [p for p in _descendants(mine.pid)]
        assert len(below) >= 2
        assert stop_leftovers(mine)
        assert handle.wait() == -signal.SIGKILL
        assert wait_gone(below, timeout=5) == []
    finally:
        handle.process.kill()


def _descendants(root: int) -> list[int]:
    from reconciler.worker.run_supervisor import descendants

    return descendants(root)


# --- hole 9: large parameters -------------------------------------------------------------------


def test_a_megabyte_of_parameters_reaches_the_flow(project: Project) -> None:
    blob = ["x" * 100_000 for _ in range(10)]  # 1 MB: the environment holds 128 KB at most
    store = open_store(project.store_url)
    try:
        run_id = create_run(store, "measure/measure", parameters={"blob": blob}).id
    finally:
        store.close()
    project.run_once()
    run = project.get(run_id)
    assert run.state is RunState.COMPLETED, run.state_message
    assert f"received 10 parts, {len(json.dumps(blob))} bytes" in project.logs(run_id)


# --- hole 4: secrets from the environment -------------------------------------------------------


def test_a_secret_from_an_environment_placeholder_is_masked_everywhere(project: Project) -> None:
    run_id = project.run("leak/leak")
    worker = project.worker("--run-once")
    assert worker.wait(timeout=120) == 0
    run = project.get(run_id)
    assert run.state is RunState.FAILED
    logs = project.logs(run_id)
    assert f"CONNECTION is {MASK}" in logs
    assert not any(SECRET in line for line in logs)
    assert SECRET not in (run.state_message or "") and MASK in (run.state_message or "")
    output = "".join(p.read_text() for p in project.tmp_path.glob("worker-*.log"))
    assert "CONNECTION is" in output and SECRET not in output


# --- the log budget -----------------------------------------------------------------------------


def test_a_run_stores_its_output_up_to_the_budget_and_says_what_it_left_out(
    project: Project,
) -> None:
    run_id = project.run("chatty/chatty", "--param", "megabytes=30")
    project.run_once("--max-log-bytes", str(1024 * 1024))
    run = project.get(run_id)
    assert run.state is RunState.FAILED
    message = run.state_message or ""
    assert "the very end" in message  # the tail of the output, which was not stored
    logs = project.logs(run_id)
    assert sum(len(line) + 1 for line in logs[:-1]) <= 1024 * 1024
    assert re.fullmatch(
        r"\.\.\. output truncated after 1 MB; \d+ more bytes not stored", logs[-1]
    ), logs[-1]
    dropped = int(logs[-1].split("; ")[1].split()[0])
    assert dropped > 29 * 1024 * 1024
    store_file = Path(project.store_url.removeprefix("sqlite:///"))
    assert store_file.stat().st_size < 8 * 1024 * 1024
