"""How a docker run of a Prefect flow is prepared (reconciler/worker/docker_flows.py): which
runner mode, which Prefect API URL the container gets for its network, and what the worker
says when the image lacks prefect; and the flow runner's modes, run as the container runs it
(`python flow_runner.py ...`, here with a Python that has no prefect). The containers
themselves: tests/docker/test_worker_docker_prefect.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler.worker import flow_kind, flow_runner
from reconciler.worker.docker_flows import (
    LOGGING_CONFIG_PATH,
    ContainerFlow,
    no_prefect_reason,
    prepare_container_flow,
)
from reconciler.worker.job_config import DockerJob, RunContext, docker_job
from reconciler.worker.prefect_runtime import PrefectRuntime
from reconciler.worker.prefect_serving import api_urls

RUN = RunContext(flow_run_id="run-1", flow_run_name="happy-otter")
PREFECT_FLOW = "from prefect import flow\n\n\n@flow\ndef etl() -> None:\n    print('etl')\n"
PLAIN = "def etl() -> None:\n    print('plain etl')\n"
LOOPBACK = "http://127.0.0.1:4321/prefect/api"


def runtime(container_api_url: str | None = None) -> PrefectRuntime:
    return PrefectRuntime(
        api_url=LOOPBACK, token="t0ken-t0ken", container_api_url=container_api_url
    )


def prepare(
    variables: Mapping[str, Any],
    code: str | None,
    tmp_path: Path,
    prefect: PrefectRuntime | None = None,
) -> ContainerFlow:
    """The container flow of a run of `flows/etl.py:etl`; `code` None: the code is in the
    image."""
    if code is not None:
        (tmp_path / "flows").mkdir(exist_ok=True)
        (tmp_path / "flows" / "etl.py").write_text(code)

    def render(base_env: Mapping[str, str] | None) -> DockerJob:
        return docker_job(
            {}, {"image": "flows:1", **variables}, {}, RUN, base_env=base_env, environ={}
        )

    return prepare_container_flow(
        render,
        prefect or runtime(),
        entrypoint="flows/etl.py:etl",
        code_on_worker=tmp_path if code is not None else None,
    )


def test_a_prefect_flow_gets_the_engine_the_api_and_its_token_on_the_host_network(
    tmp_path: Path,
) -> None:
    flow = prepare({}, PREFECT_FLOW, tmp_path)

    assert flow.mode == "engine"
    assert flow.runner_options == ["--prefect-engine"]
    env = flow.job.env
    assert env["PREFECT_API_URL"] == LOOPBACK == flow.api_url
    assert env["PREFECT_API_KEY"] == "t0ken-t0ken"
    assert env["PREFECT__FLOW_RUN_ID"] == "run-1"
    assert env["PREFECT__FLOW_ENTRYPOINT"] == "flows/etl.py:etl"
    assert env["PREFECT_LOGGING_SETTINGS_PATH"] == LOGGING_CONFIG_PATH
    assert env["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] == "false"
    assert flow.job.effective_network_mode("linux") == "host"


def test_a_plain_function_gets_no_prefect_settings(tmp_path: Path) -> None:
    flow = prepare({}, PLAIN, tmp_path)

    assert flow.mode == "plain"
    assert flow.runner_options == []
    assert "PREFECT_API_URL" not in flow.job.env
    assert "PREFECT_API_KEY" not in flow.job.env


def test_without_a_prefect_runtime_every_run_is_plain(tmp_path: Path) -> None:
    def render(base_env: Mapping[str, str] | None) -> DockerJob:
        return docker_job({}, {"image": "flows:1"}, {}, RUN, base_env=base_env, environ={})

    (tmp_path / "etl.py").write_text(PREFECT_FLOW)
    flow = prepare_container_flow(render, None, entrypoint="etl.py:etl", code_on_worker=tmp_path)

    assert flow.mode == "plain"


def test_code_in_the_image_is_read_in_the_container(tmp_path: Path) -> None:
    flow = prepare({}, None, tmp_path)

    assert flow.mode == "auto"
    assert flow.runner_options == ["--auto"]
    assert flow.job.env["PREFECT_API_URL"] == LOOPBACK


@pytest.mark.parametrize(
    ("command", "mode"),
    [
        ("prefect flow-run execute", "engine"),
        ("python -m prefect.engine", "engine"),
        ("make", "plain"),
    ],
)
def test_a_configured_command_for_code_in_the_image_is_an_engine_run_when_it_starts_prefect(
    tmp_path: Path, command: str, mode: str
) -> None:
    assert prepare({"command": command}, None, tmp_path).mode == mode


def test_a_bridge_network_gets_the_listen_address_else_the_loopback_one_rewritten(
    tmp_path: Path,
) -> None:
    listened = runtime(container_api_url="http://172.17.0.1:4300/prefect/api")

    bridged = prepare({"network_mode": "bridge"}, PREFECT_FLOW, tmp_path, listened)
    networked = prepare({"networks": ["backend"]}, PREFECT_FLOW, tmp_path, listened)
    on_host = prepare({}, PREFECT_FLOW, tmp_path, listened)
    unlistened = prepare({"network_mode": "bridge"}, PREFECT_FLOW, tmp_path)

    assert bridged.api_url == networked.api_url == "http://172.17.0.1:4300/prefect/api"
    assert on_host.api_url == LOOPBACK
    assert unlistened.api_url == "http://host.docker.internal:4321/prefect/api"


def test_listen_addresses_give_urls_for_processes_and_for_bridged_containers() -> None:
    assert api_urls("0.0.0.0", 4300) == (
        "http://127.0.0.1:4300/prefect/api",
        "http://host.docker.internal:4300/prefect/api",
    )
    assert api_urls("172.17.0.1", 4300) == ("http://172.17.0.1:4300/prefect/api",) * 2
    assert api_urls("127.0.0.1", 4300) == ("http://127.0.0.1:4300/prefect/api", None)
    assert api_urls("::1", 4300) == ("http://[::1]:4300/prefect/api", None)


def test_the_missing_prefect_reason_needs_the_runners_code_and_line() -> None:
    line = f"{flow_runner.NO_PREFECT_MARKER} by /usr/bin/python3 (Python 3.11), which runs it"
    code = flow_runner.EXIT_NO_PREFECT

    assert no_prefect_reason("base:1", code, ["x", line]) == (
        "the image base:1 cannot import prefect: install it in the image "
        "(pip install 'prefect>=3,<4') or use an image that has it"
    )
    assert no_prefect_reason("base:1", code, ["x"]) is None
    assert no_prefect_reason("base:1", 1, [line]) is None


# --- the runner's modes, as a container starts it ------------------------------------------


@pytest.fixture
def container_like(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The runner and flow_kind.py copied side by side (as in a container), a code directory,
    and an environment for a Python without prefect (-I: no user site, no PYTHONPATH)."""
    opt = tmp_path / "opt"
    opt.mkdir()
    for module in (flow_runner, flow_kind):
        shutil.copy(str(module.__file__), opt)
    code = tmp_path / "code"
    (code / "flows").mkdir(parents=True)
    env = {"PATH": os.environ.get("PATH", ""), flow_runner.PARAMETERS_VARIABLE: "{}"}
    return opt / "flow_runner.py", code, env


def bare_python() -> str:
    """A Python that cannot import prefect: the system's, run isolated."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and Path(candidate).exists():
            done = subprocess.run(
                [
                    candidate,
                    "-I",
                    "-c",
                    "import importlib.util as u; print(u.find_spec('prefect'))",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.stdout.strip() == "None":
                return candidate
    pytest.skip("no Python without prefect on this machine")


def run_runner(
    runner: Path, code: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bare_python(), "-I", "-u", str(runner), *args],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_engine_mode_without_prefect_exits_with_its_code_and_line(
    container_like: tuple[Path, Path, dict[str, str]],
) -> None:
    runner, code, env = container_like
    (code / "flows" / "etl.py").write_text(PREFECT_FLOW)

    done = run_runner(runner, code, env, "--prefect-engine", "flows/etl.py:etl")

    assert done.returncode == flow_runner.EXIT_NO_PREFECT
    assert done.stderr.startswith(flow_runner.NO_PREFECT_MARKER), done.stderr


def test_auto_mode_reads_the_file_in_place(
    container_like: tuple[Path, Path, dict[str, str]],
) -> None:
    runner, code, env = container_like
    (code / "flows" / "etl.py").write_text(PLAIN)
    (code / "flows" / "flow.py").write_text(PREFECT_FLOW)

    plain = run_runner(runner, code, env, "--auto", "flows/etl.py:etl")
    flow = run_runner(runner, code, env, "--auto", "flows/flow.py:etl")

    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == [flow_runner.PLAIN_MARKER, "plain etl"]
    assert flow.returncode == flow_runner.EXIT_NO_PREFECT
    assert flow_runner.NO_PREFECT_MARKER in flow.stderr
