"""Real Prefect flows under reconciler's worker: Prefect's own engine runs them against the
Prefect API the worker serves, and the store records their states, task runs, logs and
artifacts. Prefect comes from PyPI (the test extra); no temporary Prefect server may start
(tests/conftest.py checks it for the whole session)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.model.runs import RunState
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import apply_in_process
from tests.infra.worker_process import stop_worker, wait_for
from tests.worker.conftest import Project

pytest.importorskip("prefect", reason="the test extra installs prefect (make test does)")

pytestmark = pytest.mark.prefect

FLOWS = """\
import os
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from prefect.runtime import flow_run
from prefect.variables import Variable

_tries: dict[int, int] = {}


@task(retries=1, retry_delay_seconds=0)
def flaky(n: int) -> int:
    _tries[n] = _tries.get(n, 0) + 1
    if _tries[n] == 1:
        raise ValueError("the first try fails")
    return n


@task
def double(x: int) -> int:
    return 2 * x


@flow
def child(x: int) -> int:
    get_run_logger().info("child got %s", x)
    return x + 1


@flow(log_prints=True)
def pipeline(count: int = 3) -> int:
    logger = get_run_logger()
    logger.info("starting with %s", count)
    logger.warning("careful: a warning")
    print("printed through log_prints")
    total = sum(future.result() for future in double.map(range(count)))
    total += flaky(1)
    total += double.submit(5).result()
    total = child(total)
    create_markdown_artifact("# Report\\n\\nall good", key="report")
    Path(os.environ["RUN_ID_FILE"]).write_text(str(flow_run.id) + " " + flow_run.name)
    return total


@flow
def raises() -> None:
    raise RuntimeError("this flow fails on purpose")


@flow(retries=1, retry_delay_seconds=0)
def retried(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("tried")
        raise RuntimeError("the first attempt fails")
    return "second attempt"


@flow(timeout_seconds=1)
def too_slow() -> None:
    time.sleep(30)


@flow
def uses_values() -> None:
    value = Variable.get("greeting", default="missing")
    token = Secret.load("api-token").get()
    get_run_logger().info("greeting=%s token-length=%d", value, len(token))


@task
def nap(seconds: float) -> None:
    Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(seconds)


@flow
def sleeper(seconds: float = 60) -> None:
    nap(seconds)
"""

PLAIN = """\
def hello() -> str:
    print("plain hello")
    return "hi"
"""

POOLS = """\
work_pools:
  - name: local
    type: process
"""

DEPLOYMENTS = ["pipeline", "raises", "retried", "too_slow", "uses_values", "sleeper"]
PREFECT = (
    "deployments:\n"
    + "".join(
        f"  - {{name: {name.replace('_', '-')}, entrypoint: flows/flows.py:{name}, "
        "work_pool: {name: local}}\n"
        for name in DEPLOYMENTS
    )
    + "  - {name: plain, entrypoint: flows/plain.py:hello, work_pool: {name: local}}\n"
)


@pytest.fixture
def flows(
    make_repo: Callable[..., GitRepo],
    store_url: str,
    tmp_path: Path,
    run_cli: Callable[..., CliResult],
) -> Iterator[Project]:
    repo = make_repo(
        {
            "flows/flows.py": FLOWS,
            "flows/plain.py": PLAIN,
            "work-pools.yaml": POOLS,
            "prefect.yaml": PREFECT,
        }
    )
    apply_in_process(store_url, repo)
    yield Project(repo, store_url, tmp_path, run_cli)


@pytest.fixture
def worker(flows: Project) -> Iterator[subprocess.Popen[str]]:
    os.environ["RUN_ID_FILE"] = str(flows.tmp_path / "run-id")
    os.environ["PID_FILE"] = str(flows.tmp_path / "pid")
    process = flows.worker()
    try:
        yield process
    finally:
        stop_worker(process)
        os.environ.pop("RUN_ID_FILE", None)
        os.environ.pop("PID_FILE", None)


def cli_json(project: Project, *args: str) -> object:
    done = project.cli(*args, "--store", project.store_url, "-o", "json")
    assert done.code == 0, done.output
    return json.loads(done.stdout)


def task_runs(project: Project, run_id: str) -> list[dict[str, object]]:
    found = cli_json(project, "task-run", "ls", "--flow-run", run_id)
    assert isinstance(found, list)
    return found


FINAL = {RunState.COMPLETED, RunState.FAILED, RunState.CRASHED, RunState.CANCELLED}


def test_a_prefect_flow_runs_with_prefects_engine_and_its_inside_is_recorded(
    flows: Project, worker: subprocess.Popen[str]
) -> None:
    run_id = flows.run("pipeline/pipeline", "--param", "count=3")
    run = flows.wait_state(run_id, FINAL, timeout=90)
    assert run.state is RunState.COMPLETED, (run.state_message, flows.logs(run_id))
    # Prefect's engine ran *our* run: same id and name.
    assert (flows.tmp_path / "run-id").read_text() == f"{run_id} {run.name}"
    tasks = task_runs(flows, run_id)
    names = sorted(str(t["name"]).rsplit("-", 1)[0] for t in tasks)
    assert names.count("double") == 4  # three mapped, one submitted
    assert "flaky" in names
    assert all(t["state"] == "COMPLETED" for t in tasks), tasks
    flaky = next(t for t in tasks if str(t["name"]).startswith("flaky"))
    assert flaky["retries_used"] == 1
    assert all(t["start_time"] and t["end_time"] for t in tasks)
    # the subflow is a run of its own, linked to its parent
    inspected = cli_json(flows, "flow-run", "inspect", run_id)
    assert isinstance(inspected, dict)
    subflows = inspected["subflow_runs"]
    assert len(subflows) == 1
    child = cli_json(flows, "flow-run", "inspect", subflows[0]["id"])
    assert isinstance(child, dict)
    assert child["state"] == "COMPLETED"
    assert child["parent_flow_run_id"] == run_id
    assert child["flow_name"] == "child"
    # Prefect's log records, with their level (the last batch is sent as the process ends)
    wait_logs(flows, run_id, "printed through log_prints")
    logs = flows.cli("flow-run", "logs", run_id, "--store", flows.store_url)
    assert logs.code == 0, logs.output
    assert "starting with 3" in logs.stdout
    assert "printed through log_prints" in logs.stdout
    assert "WARNING" in logs.stdout
    warnings = flows.cli(
        "flow-run", "logs", run_id, "--level", "WARNING", "--store", flows.store_url
    )
    assert "careful: a warning" in warnings.stdout
    assert "starting with 3" not in warnings.stdout
    assert inspected["artifacts"][0]["key"] == "report"


def test_a_flow_that_raises_is_failed_with_the_exception(
    flows: Project, worker: subprocess.Popen[str]
) -> None:
    run_id = flows.run("raises/raises")
    run = flows.wait_state(run_id, FINAL, timeout=90)
    assert run.state is RunState.FAILED
    assert "this flow fails on purpose" in (run.state_message or "")


def test_flow_retries_are_honoured(flows: Project, worker: subprocess.Popen[str]) -> None:
    marker = flows.tmp_path / "retried-marker"
    run_id = flows.run("retried/retried", "--param", f"marker={marker}")
    run = flows.wait_state(run_id, FINAL, timeout=90)
    assert run.state is RunState.COMPLETED, run.state_message
    assert run.run_count == 2
    assert marker.exists()


def test_a_flow_over_its_timeout_fails_as_timed_out(
    flows: Project, worker: subprocess.Popen[str]
) -> None:
    run_id = flows.run("too-slow/too-slow")
    run = flows.wait_state(run_id, FINAL, timeout=90)
    assert run.state is RunState.FAILED
    assert run.state_name == "TimedOut"


def test_variables_and_secret_blocks_reach_the_flow(
    flows: Project, worker: subprocess.Popen[str]
) -> None:
    for args in (
        ("variable", "set", "greeting", "hello"),
        ("secret", "set", "api-token", "--value", "s3cr3t-value"),
    ):
        done = flows.cli(*args, "--store", flows.store_url)
        assert done.code == 0, done.output
    run_id = flows.run("uses-values/uses-values")
    run = flows.wait_state(run_id, FINAL, timeout=90)
    assert run.state is RunState.COMPLETED, run.state_message
    logs = wait_logs(flows, run_id, "greeting=hello token-length=12")
    assert "s3cr3t-value" not in logs


def test_cancel_mid_task_and_kill_of_the_flow_process(
    flows: Project, worker: subprocess.Popen[str]
) -> None:
    pid_file = flows.tmp_path / "pid"
    run_id = flows.run("sleeper/sleeper")
    flows.wait_state(run_id, {RunState.RUNNING}, timeout=60)
    wait_for(pid_file.exists, "the flow's pid file")
    done = flows.cli("flow-run", "cancel", run_id, "--store", flows.store_url)
    assert done.code == 0, done.output
    run = flows.wait_state(run_id, FINAL, timeout=60)
    assert run.state is RunState.CANCELLED
    wait_for(lambda: not _alive(int(pid_file.read_text())), "the flow's process to end")

    pid_file.unlink()
    run_id = flows.run("sleeper/sleeper")
    flows.wait_state(run_id, {RunState.RUNNING}, timeout=60)
    wait_for(pid_file.exists, "the flow's pid file")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    run = flows.wait_state(run_id, FINAL, timeout=60)
    assert run.state is RunState.CRASHED
    assert "SIGKILL" in (run.state_message or "")


def test_a_worker_restarted_mid_run_crashes_the_run_it_left(flows: Project) -> None:
    os.environ["PID_FILE"] = str(flows.tmp_path / "pid")
    try:
        run_id = flows.run("sleeper/sleeper")
        first = flows.worker("--name", "same")
        flows.wait_state(run_id, {RunState.RUNNING}, timeout=60)
        first.kill()
        first.wait()
        second = flows.worker("--name", "same")
        try:
            run = flows.wait_state(run_id, FINAL, timeout=30)
            assert run.state is RunState.CRASHED
            assert run.state_message == "worker same restarted while the run was in progress"
        finally:
            stop_worker(second)
    finally:
        os.environ.pop("PID_FILE", None)


def test_a_plain_function_keeps_the_fast_runner(
    flows: Project, worker: subprocess.Popen[str]
) -> None:
    run_id = flows.run("hello/plain")
    run = flows.wait_state(run_id, FINAL, timeout=60)
    assert run.state is RunState.COMPLETED
    assert "plain hello" in flows.logs(run_id)
    assert task_runs(flows, run_id) == []


def test_a_python_without_prefect_fails_saying_what_to_install_where(
    flows: Project, tmp_path: Path
) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    run_id = flows.run("raises/raises")
    flows.run_once("--python", str(python))
    run = flows.get(run_id)
    assert run.state is RunState.CRASHED
    message = run.state_message or ""
    assert f"{python} cannot import it" in message
    assert "pip install" in message


def test_an_unreachable_prefect_api_crashes_the_run_with_that_reason(flows: Project) -> None:
    run_id = flows.run("raises/raises")
    flows.run_once("--prefect-api-url", "http://127.0.0.1:9/prefect/api", "--no-forkserver")
    run = flows.get(run_id)
    assert run.state is RunState.CRASHED
    assert "could not be reached" in (run.state_message or "")
    assert "http://127.0.0.1:9/prefect/api" in (run.state_message or "")


def wait_logs(project: Project, run_id: str, text: str, timeout: float = 30) -> str:
    """The run's logs once they hold `text`: Prefect's client sends its last log records as
    the flow's process ends, a moment after the final state."""
    deadline = time.monotonic() + timeout
    while True:
        logs = "\n".join(project.logs(run_id))
        if text in logs or time.monotonic() > deadline:
            assert text in logs, logs
            return logs
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
