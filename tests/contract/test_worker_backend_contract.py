"""The worker backend contract: what every backend in reconciler/worker/backends/ does with a
run, checked on each (`process` on this machine; `docker` on the real engine, with the test
base image, marked `docker`).

A started run reports its exit code, 0 or not; its output lines arrive in the order they were
printed; a stop ends it, at once when it obeys SIGTERM and by a kill once the grace period is
over when it does not; the job's environment and working directory are the run's; a missing
entrypoint or program fails with a message that names it.

The functions are plain ones called by reconciler's runner, without Prefect: what is checked is
the backend, not the engine. A new backend joins with one entry in `CASES` (and a mark in
`MARKS` when it needs a service).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import docker
import pytest

from reconciler.model.runs import FlowRun, RunState
from reconciler.model.specs import StepSpec
from reconciler.worker.backends import BACKENDS, backend_for
from reconciler.worker.backends.interface import RunRequest, StartedRun, StartError
from reconciler.worker.job_config import RunContext
from tests.infra.containers import TEST_LABEL, build_image, remove_labelled

FLOWS = """\
import os
import signal
import sys
import time


def succeed() -> None:
    print("done")


def fail(code: int = 7) -> None:
    print("failing on purpose", file=sys.stderr)
    raise SystemExit(code)


def count(lines: int = 300) -> None:
    for number in range(lines):
        print(f"line {number}")
    print("the end on stderr", file=sys.stderr)


def show() -> None:
    print(f"cwd={os.getcwd()}")
    print(f"GREETING={os.environ.get('GREETING')}")


def polite(seconds: float = 300) -> None:
    # A handler of its own: the runner is PID 1 in a container, where SIGTERM's default
    # action does not apply.
    def on_term(signum, frame):
        print("SIGTERM received, stopping", flush=True)
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    print("sleeping", flush=True)
    time.sleep(seconds)


def stubborn(seconds: float = 300) -> None:
    def on_term(signum, frame):
        print("SIGTERM received, ignored", flush=True)

    signal.signal(signal.SIGTERM, on_term)
    print("sleeping", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
"""

FETCHED = ({"prefect.deployments.steps.git_clone": {"repository": "file:///flows.git"}},)
"""Pull steps the worker ran before the start: the code is in the request's `code_dir`."""
CONTAINER_CODE = "/opt/reconciler/code"
IMAGE_CODE = "/opt/flows"


class Output:
    """A run's output as the worker's RunLog takes it."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.echo = False
        self.hidden: list[str] = []
        self._lock = threading.Lock()

    def add(self, stream: str, line: str) -> None:
        with self._lock:
            self.lines.append((stream, line))

    def hide(self, secrets: Iterable[str]) -> None:
        self.hidden.extend(secrets)

    def of(self, stream: str) -> list[str]:
        with self._lock:
            return [line for kind, line in self.lines if kind == stream]

    def text(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)


class Case(Protocol):
    """How a contract test prepares a run for one backend."""

    pool_type: str
    code_dir: Path
    code_cwd: str
    """Where the run starts when its code was fetched on the worker."""

    def job_variables(self, **more: Any) -> dict[str, Any]:
        """The job variables the backend needs to run anything, and `more`."""

    def in_working_directory(self) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """Job variables and pull steps naming a working directory with the code in it, and
        that directory as the run sees it."""

    def cleanup(self) -> None: ...


@dataclass
class ProcessCase:
    tmp_path: Path
    pool_type: str = "process"
    code_dir: Path = field(init=False)
    code_cwd: str = field(init=False)

    def __post_init__(self) -> None:
        self.code_dir = write_flows(self.tmp_path / "fetched")
        self.code_cwd = str(self.code_dir)

    def job_variables(self, **more: Any) -> dict[str, Any]:
        return dict(more)

    def in_working_directory(self) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        elsewhere = write_flows(self.tmp_path / "elsewhere")
        return {"working_dir": str(elsewhere)}, [], str(elsewhere)

    def cleanup(self) -> None:
        pass


@dataclass
class DockerCase:
    tmp_path: Path
    client: docker.DockerClient
    base_image: str
    pool_type: str = "docker"
    code_dir: Path = field(init=False)
    code_cwd: str = CONTAINER_CODE
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    baked: str | None = None

    def __post_init__(self) -> None:
        self.code_dir = write_flows(self.tmp_path / "fetched")

    def job_variables(self, **more: Any) -> dict[str, Any]:
        return {
            "image": self.baked or self.base_image,
            "image_pull_policy": "Never",  # local images only: nothing can be pulled here
            "labels": {TEST_LABEL: self.tag},
            **more,
        }

    def in_working_directory(self) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """Code built into an image, in the directory a set_working_directory step names."""
        self.baked = f"reconciler-test-contract:{self.tag}"
        build_image(
            self.client, self.baked, self.base_image, {f"{IMAGE_CODE}/flows.py": FLOWS}, self.tag
        )
        step = {"prefect.deployments.steps.set_working_directory": {"directory": IMAGE_CODE}}
        return {}, [step], IMAGE_CODE

    def cleanup(self) -> None:
        remove_labelled(self.client, self.tag, (self.baked,) if self.baked else ())


def _docker_case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    client = request.getfixturevalue("docker_client")
    return DockerCase(tmp_path, client, request.getfixturevalue("base_image"))


CASES: dict[str, Callable[[pytest.FixtureRequest, Path], Case]] = {
    "process": lambda request, tmp_path: ProcessCase(tmp_path),
    "docker": _docker_case,
}
"""Pool type -> how its case is made (the fixtures it needs are asked for only there)."""
MARKS = {"docker": pytest.mark.docker}


def test_every_backend_of_the_registry_is_under_contract() -> None:
    assert sorted(BACKENDS) == sorted(CASES)


@pytest.fixture(
    params=[pytest.param(kind, marks=MARKS.get(kind, ())) for kind in CASES],
)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    made = CASES[request.param](request, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def write_flows(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "flows.py").write_text(FLOWS)
    return directory


@dataclass
class Started:
    run: StartedRun
    output: Output

    def wait(self, timeout: float = 120) -> int:
        """The exit code; the test fails when the run outlives `timeout` (it is stopped)."""
        result: list[int] = []
        waiter = threading.Thread(target=lambda: result.append(self.run.handle.wait()))
        waiter.start()
        waiter.join(timeout)
        if waiter.is_alive():
            self.run.handle.stop(0)
            waiter.join(30)
            pytest.fail(f"the run did not end within {timeout} s:\n{self.output.text()}")
        return result[0]

    def wait_for_line(self, line: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.output.of("stdout"):
            if time.monotonic() > deadline:
                self.run.handle.stop(0)
                pytest.fail(f"no {line!r} within {timeout} s:\n{self.output.text()}")
            time.sleep(0.05)


def start(
    case: Case,
    function: str,
    *,
    job_variables: Mapping[str, Any] | None = None,
    pull_steps: Iterable[Mapping[str, Any]] = FETCHED,
    entrypoint: str | None = None,
    grace_seconds: float = 30,
) -> Started:
    run_id = str(uuid.uuid4())
    name = f"contract-{run_id[:8]}"
    run = FlowRun(
        id=run_id,
        name=name,
        deployment="contract/contract",
        flow_name="contract",
        pool="contract",
        queue="default",
        state=RunState.PENDING,
        state_message=None,
        scheduled_time=time.time(),
        parameters={},
        job_variables={},
        worker="contract-worker",
        infrastructure_id=None,
        exit_code=None,
        created_at="",
        updated_at="",
        history=(),
    )
    output = Output()
    scratch = case.code_dir.parent / f"scratch-{run_id[:8]}"
    scratch.mkdir()
    request = RunRequest(
        run=run,
        context=RunContext(flow_run_id=run_id, flow_run_name=name, worker_name="contract-worker"),
        entrypoint=entrypoint or f"flows.py:{function}",
        pull_steps=[StepSpec.from_spec(step) for step in pull_steps],
        job_variables=case.job_variables(**(job_variables or {})),
        base_job_template={},
        code_dir=case.code_dir,
        scratch=scratch,
        output=output,
        environ={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        grace_seconds=grace_seconds,
    )
    started = backend_for(case.pool_type).start(request)
    assert started.engine is None  # no Prefect runtime: reconciler's runner calls it
    return Started(started, output)


def test_a_run_that_returns_exits_0_with_its_output(case: Case) -> None:
    started = start(case, "succeed")

    assert started.wait() == 0
    assert started.output.of("stdout") == ["done"]
    assert started.run.handle.infrastructure_id


def test_a_run_that_fails_reports_its_exit_code_and_its_error_output(case: Case) -> None:
    started = start(case, "fail")

    assert started.wait() == 7
    assert "failing on purpose" in started.output.of("stderr")


def test_output_lines_arrive_in_the_order_they_were_printed(case: Case) -> None:
    started = start(case, "count")

    assert started.wait() == 0
    assert started.output.of("stdout") == [f"line {n}" for n in range(300)]
    assert started.output.of("stderr") == ["the end on stderr"]


def test_a_run_that_obeys_sigterm_stops_well_within_its_grace_period(case: Case) -> None:
    started = start(case, "polite", grace_seconds=60)
    started.wait_for_line("sleeping")

    asked = time.monotonic()
    stopping = threading.Thread(target=started.run.handle.stop, args=(60,))
    stopping.start()  # from another thread, while the worker's thread waits, as the worker does
    code = started.wait(timeout=90)
    took = time.monotonic() - asked
    stopping.join(30)

    assert code != 0
    assert "SIGTERM received, stopping" in started.output.of("stdout")
    assert took < 30, f"SIGTERM should end it at once, it took {took:.1f} s"


def test_a_run_that_ignores_sigterm_is_killed_once_its_grace_period_is_over(case: Case) -> None:
    started = start(case, "stubborn", grace_seconds=2)
    started.wait_for_line("sleeping")

    asked = time.monotonic()
    started.run.handle.stop(2)
    code = started.wait(timeout=60)
    took = time.monotonic() - asked

    assert code != 0
    assert "SIGTERM received, ignored" in started.output.of("stdout")
    assert 1.5 <= took <= 30, f"killed after {took:.1f} s, the grace period being 2 s"


def test_the_jobs_environment_reaches_the_run(case: Case) -> None:
    started = start(case, "show", job_variables={"env": {"GREETING": "from the job"}})

    assert started.wait() == 0
    assert "GREETING=from the job" in started.output.of("stdout")
    assert f"cwd={case.code_cwd}" in started.output.of("stdout")


def test_the_run_starts_in_the_working_directory_its_job_names(case: Case) -> None:
    job_variables, pull_steps, directory = case.in_working_directory()

    started = start(case, "show", job_variables=job_variables, pull_steps=pull_steps)

    assert started.wait() == 0, started.output.text()
    assert f"cwd={directory}" in started.output.of("stdout")


def test_a_missing_entrypoint_fails_with_a_message_naming_it(case: Case) -> None:
    started = start(case, "succeed", entrypoint="flows/missing.py:main")

    assert started.wait() == 2  # reconciler's runner: the entrypoint cannot be loaded
    assert any(
        "cannot load the flow" in line and "flows/missing.py does not exist" in line
        for line in started.output.of("stderr")
    ), started.output.text()


def test_a_missing_program_cannot_start_and_the_reason_names_it(case: Case) -> None:
    with pytest.raises(StartError) as refused:
        start(case, "succeed", job_variables={"command": "no-such-program-here --flag"})

    assert "'no-such-program-here'" in str(refused.value)


def test_a_pool_type_without_a_backend_is_a_user_error_naming_those_there_are() -> None:
    from reconciler.core.errors import UserError

    with pytest.raises(UserError) as refused:
        backend_for("kubernetes", pool="k8s")

    assert str(refused.value) == (
        "work pool 'k8s' is of type 'kubernetes', which no worker backend here runs "
        "(backends exist for: docker, process)"
    )
