"""The forkserver (reconciler/worker/prefect_forkserver.py) and its client: real Prefect flow
runs, created in a real `prefect server` with Prefect's client, started warm by forking the
server's interpreter (or cold when they cannot be), and read back from that server."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.worker.forkserver_client import (
    ForkedRun,
    Forkserver,
    start_forkserver,
    start_prefect_engine,
)
from reconciler.worker.process_backend import ProcessHandle
from tests.infra.prefect_runs import create_flow_run, flow_run_state, task_run_states
from tests.infra.prefect_server import PrefectServer

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.skipif(
        importlib.util.find_spec("prefect") is None,
        reason="the test extra installs prefect (make test does)",
    ),
]

FLOWS = """\
import os
import subprocess
import time
from pathlib import Path

from prefect import flow, task
from prefect.runtime import flow_run


@task
def double(x: int) -> int:
    return 2 * x


@flow
def three() -> int:
    print("first line of three")
    print("runtime id", flow_run.id)
    return sum(double(i) for i in range(3))


@flow
def raises() -> None:
    raise RuntimeError("this flow fails on purpose")


@flow
def sleeper() -> None:
    child = subprocess.Popen(["sleep", "300"])
    Path(os.environ["PIDS_FILE"]).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(300)


@flow
def settings() -> None:
    from prefect.settings import get_current_settings

    print("logging level", get_current_settings().logging.level)
    print("who", os.environ.get("WHO"))
"""


class Output:
    """What on_line received, and a way to wait for a line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.changed = threading.Condition()

    def __call__(self, stream: str, line: str) -> None:
        with self.changed:
            self.lines.append((stream, line))
            self.changed.notify_all()

    def text(self, stream: str | None = None) -> str:
        return "\n".join(line for s, line in self.lines if stream in (None, s))


@pytest.fixture(scope="module")
def api_url(prefect_server: PrefectServer) -> str:
    return prefect_server.api_url


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("flows")
    (directory / "flows.py").write_text(FLOWS)
    return directory


def _start_forkserver(api_url: str) -> Forkserver:
    return start_forkserver(
        sys.executable,
        {"PREFECT_API_URL": api_url, "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"},
    )


@pytest.fixture(scope="module")
def forkserver(api_url: str) -> Iterator[Forkserver]:
    server = _start_forkserver(api_url)
    try:
        yield server
    finally:
        server.close()


def run_env(forkserver: Forkserver, run_id: str, **extra: str) -> dict[str, str]:
    """A run's environment as the worker makes it: the worker's (the forkserver's) and the
    run's own variables."""
    return {**forkserver.environ, "PREFECT__FLOW_RUN_ID": run_id, **extra}


def start(
    forkserver: Forkserver, run_id: str, cwd: Path, output: Output, **extra: str
) -> ForkedRun | ProcessHandle:
    handle = start_prefect_engine(
        forkserver,
        forkserver.engine_command(),
        cwd=cwd,
        env=run_env(forkserver, run_id, **extra),
        on_line=output,
    )
    assert isinstance(handle, ForkedRun | ProcessHandle)
    return handle


def test_a_flow_run_starts_warm_and_completes_with_its_tasks(
    api_url: str, flow_dir: Path, forkserver: Forkserver, tmp_path: Path
) -> None:
    run_id = create_flow_run(api_url, flow_dir, "flows.py:three")
    output = Output()
    handle = start(forkserver, run_id, tmp_path, output)
    assert isinstance(handle, ForkedRun)  # forked, not a fresh interpreter
    assert handle.wait() == 0, output.text()
    assert flow_run_state(api_url, run_id)[0] == "COMPLETED", output.text()
    assert task_run_states(api_url, run_id, expected=3) == ["COMPLETED"] * 3
    # the flow's prints and Prefect's log lines arrive through on_line, each on its stream
    assert ("stdout", "first line of three") in output.lines
    assert ("stdout", f"runtime id {run_id}") in output.lines  # Prefect's engine ran *this* run
    assert "Finished in state Completed()" in output.text("stderr")


def test_a_flow_that_raises_is_failed_in_prefect_and_its_process_exits_0(
    api_url: str, flow_dir: Path, forkserver: Forkserver, tmp_path: Path
) -> None:
    run_id = create_flow_run(api_url, flow_dir, "flows.py:raises")
    output = Output()
    handle = start(forkserver, run_id, tmp_path, output)
    assert isinstance(handle, ForkedRun)
    assert handle.wait() == 0, output.text()  # as Prefect's engine does: the state says it
    state, message = flow_run_state(api_url, run_id)
    assert state == "FAILED"
    assert "this flow fails on purpose" in message
    assert "RuntimeError: this flow fails on purpose" in output.text("stderr")


def test_two_runs_at_once_each_get_a_process_of_their_own(
    api_url: str, flow_dir: Path, forkserver: Forkserver, tmp_path: Path
) -> None:
    run_ids = [create_flow_run(api_url, flow_dir, "flows.py:three") for _ in range(2)]
    outputs = [Output(), Output()]
    handles = [
        start(forkserver, rid, tmp_path, out) for rid, out in zip(run_ids, outputs, strict=True)
    ]
    assert all(isinstance(h, ForkedRun) for h in handles)
    assert handles[0].infrastructure_id != handles[1].infrastructure_id
    assert [h.wait() for h in handles] == [0, 0]
    for run_id, output in zip(run_ids, outputs, strict=True):
        assert flow_run_state(api_url, run_id)[0] == "COMPLETED", output.text()
        assert ("stdout", f"runtime id {run_id}") in output.lines  # no output crossed over


def _wait_for_pids(path: Path, timeout: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return [int(pid) for pid in path.read_text().split()]
        time.sleep(0.1)
    raise AssertionError(f"the flow did not write {path}")


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0): it is gone once its state says so
        if _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_stop_ends_the_runs_whole_process_group(
    api_url: str, flow_dir: Path, forkserver: Forkserver, tmp_path: Path
) -> None:
    run_id = create_flow_run(api_url, flow_dir, "flows.py:sleeper")
    output = Output()
    pids_file = tmp_path / "pids"
    handle = start(forkserver, run_id, tmp_path, output, PIDS_FILE=str(pids_file))
    assert isinstance(handle, ForkedRun)
    flow_pid, sleep_pid = _wait_for_pids(pids_file)
    # the forked child supervises the run (it stops what the flow leaves); the flow is its child
    assert _parent_of(flow_pid) == handle.pid
    assert os.getpgid(sleep_pid) == handle.pid  # what it started is in the run's group
    handle.stop(grace_seconds=5)
    code = handle.wait()
    assert code != 0, output.text()
    assert _gone(flow_pid) and _gone(sleep_pid)


def test_run_environment_is_applied_and_import_time_settings_start_cold(
    api_url: str, flow_dir: Path, forkserver: Forkserver, tmp_path: Path
) -> None:
    # a variable of the run's own: warm, and the flow sees it
    run_id = create_flow_run(api_url, flow_dir, "flows.py:settings")
    output = Output()
    handle = start(forkserver, run_id, tmp_path, output, WHO="alice")
    assert isinstance(handle, ForkedRun)
    assert handle.wait() == 0, output.text()
    assert ("stdout", "who alice") in output.lines
    assert ("stdout", "logging level INFO") in output.lines

    # a Prefect setting of its own (read at import): a fresh interpreter reads it
    run_id = create_flow_run(api_url, flow_dir, "flows.py:settings")
    output = Output()
    handle = start(forkserver, run_id, tmp_path, output, PREFECT_LOGGING_LEVEL="DEBUG")
    assert isinstance(handle, ProcessHandle)
    assert handle.wait() == 0, output.text()
    assert ("stdout", "logging level DEBUG") in output.lines
    assert flow_run_state(api_url, run_id)[0] == "COMPLETED"


def test_settings_in_the_runs_directory_replace_the_child_with_a_cold_engine(
    api_url: str, flow_dir: Path, forkserver: Forkserver, tmp_path: Path
) -> None:
    (tmp_path / "prefect.toml").write_text('[logging]\nlevel = "DEBUG"\n')
    run_id = create_flow_run(api_url, flow_dir, "flows.py:settings")
    output = Output()
    handle = start(forkserver, run_id, tmp_path, output)
    assert isinstance(handle, ForkedRun)  # the same process, which then execs the engine
    assert handle.wait() == 0, output.text()
    assert ("stdout", "logging level DEBUG") in output.lines


def test_another_python_or_command_starts_cold(forkserver: Forkserver, tmp_path: Path) -> None:
    env = run_env(forkserver, "00000000-0000-0000-0000-000000000000")
    other_python = ["/usr/bin/python3", "-u", "-m", "prefect.engine"]
    assert forkserver.cold_reasons(other_python, env) == ["its Python is /usr/bin/python3"]
    custom = [sys.executable, "-m", "prefect.engine"]  # not the worker's engine command
    assert forkserver.cold_reasons(custom, env)[0].startswith("its command is its own")
    assert forkserver.cold_reasons(forkserver.engine_command(), env) == []

    output = Output()
    command = [sys.executable, "-c", "import os; print('cold', os.getsid(0))"]
    handle = start_prefect_engine(forkserver, command, cwd=tmp_path, env=env, on_line=output)
    assert isinstance(handle, ProcessHandle)
    assert handle.wait() == 0
    # a fresh process in a session of its own (under its run supervisor), not a fork
    assert output.lines == [("stdout", f"cold {handle.process.pid}")]


def test_when_the_forkserver_dies_its_runs_are_killed_and_later_runs_start_cold(
    api_url: str, flow_dir: Path, tmp_path: Path
) -> None:
    server = _start_forkserver(api_url)
    try:
        run_id = create_flow_run(api_url, flow_dir, "flows.py:sleeper")
        output = Output()
        pids_file = tmp_path / "pids"
        handle = start(server, run_id, tmp_path, output, PIDS_FILE=str(pids_file))
        assert isinstance(handle, ForkedRun)
        flow_pid, sleep_pid = _wait_for_pids(pids_file)
        os.kill(server.process.pid, signal.SIGKILL)
        assert handle.wait() == -signal.SIGKILL
        assert _gone(flow_pid) and _gone(sleep_pid)
        assert "forkserver" in output.text("stderr")
        assert server.start(cwd=tmp_path, env=run_env(server, run_id), on_line=output) is None
    finally:
        server.close()


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])
