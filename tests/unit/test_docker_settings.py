"""What the docker backend asks the engine to create for a job (`container_settings`): the
rules that need no engine. The containers themselves are tested on a real engine in
tests/docker/test_worker_docker.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.model.specs import StepSpec
from reconciler.worker.backends.docker import container_directory
from reconciler.worker.docker_backend import (
    CODE_PATH,
    PARAMETERS_PATH,
    RUNNER_PATH,
    container_settings,
)
from reconciler.worker.job_config import DockerJob, RunContext, docker_job

RUN = RunContext(flow_run_id="run-1", flow_run_name="happy-otter")


def job(**variables: Any) -> DockerJob:
    return docker_job({}, {"image": "flows:1", **variables}, {}, RUN, environ={})


def settings(
    docker: DockerJob,
    *,
    code_dir: Path | None = None,
    working_dir: str | None = None,
    platform: str = "linux",
) -> dict[str, Any]:
    return container_settings(
        docker,
        entrypoint="flows/etl.py:ingest",
        code_dir=code_dir,
        working_dir=working_dir,
        cwd=Path("/srv/worker"),
        platform=platform,
    )


def test_without_a_command_our_runner_runs_the_entrypoint_and_reads_the_parameters_file() -> None:
    created = settings(job(env={"LEVEL": "debug"}))

    assert created["command"] == ["python3", "-u", RUNNER_PATH, "flows/etl.py:ingest"]
    assert created["environment"]["LEVEL"] == "debug"
    # The parameters are copied in as a file (the environment holds 128 KB at most).
    assert created["environment"]["RECONCILER_FLOW_PARAMETERS_FILE"] == PARAMETERS_PATH
    assert "RECONCILER_FLOW_PARAMETERS" not in created["environment"]
    assert created["image"] == "flows:1"


def test_a_configured_command_runs_as_given() -> None:
    created = settings(job(command="prefect flow-run execute --x 'a b'"))

    assert created["command"] == ["prefect", "flow-run", "execute", "--x", "a b"]


def test_code_fetched_on_the_host_is_the_working_directory_else_the_pull_steps_one() -> None:
    assert settings(job(), code_dir=Path("/tmp/run/clone"))["working_dir"] == CODE_PATH
    assert settings(job(), working_dir="/opt/code")["working_dir"] == "/opt/code"
    assert "working_dir" not in settings(job())  # the image's WORKDIR
    configured = job(container_create_kwargs={"working_dir": "/home/app"})
    assert settings(configured)["working_dir"] == "/home/app"
    assert settings(configured, working_dir="/opt/code")["working_dir"] == "/opt/code"


def test_the_engine_never_removes_the_container_itself() -> None:
    assert settings(job(auto_remove=True))["auto_remove"] is False
    assert settings(job())["auto_remove"] is False


def test_the_first_network_is_given_at_creation_and_a_local_api_means_the_host_network() -> None:
    wired = settings(job(networks=["front", "back"], env={"PREFECT_API_URL": "http://127.0.0.1"}))
    assert wired["network"] == "front"
    assert "network_mode" not in wired

    local = settings(job(env={"PREFECT_API_URL": "http://localhost:4200/api"}))
    assert local["network_mode"] == "host"
    assert "network_mode" not in settings(job(), platform="darwin")


def test_host_docker_internal_points_at_the_host_on_linux_merged_with_configured_hosts() -> None:
    assert settings(job())["extra_hosts"] == {"host.docker.internal": "host-gateway"}
    assert "extra_hosts" not in settings(job(), platform="darwin")
    remote = job(env={"PREFECT_API_URL": "https://api.example.com/api"})
    assert "extra_hosts" not in settings(remote)

    listed = job(container_create_kwargs={"extra_hosts": ["db:10.0.0.5"]})
    assert settings(listed)["extra_hosts"] == {
        "host.docker.internal": "host-gateway",
        "db": "10.0.0.5",
    }
    mapped = job(container_create_kwargs={"extra_hosts": {"host.docker.internal": "10.0.0.1"}})
    assert settings(mapped)["extra_hosts"] == {"host.docker.internal": "10.0.0.1"}


def test_job_fields_win_over_container_create_kwargs_of_the_same_name() -> None:
    created = settings(
        job(
            mem_limit="64m",
            privileged=True,
            container_create_kwargs={"mem_limit": "1g", "image": "other", "cpu_shares": 512},
        )
    )

    assert created["mem_limit"] == "64m"
    assert created["image"] == "flows:1"
    assert created["privileged"] is True
    assert created["cpu_shares"] == 512


def test_relative_volumes_are_resolved_against_the_worker_directory() -> None:
    created = settings(job(volumes=["./data:/data:ro", "cache:/cache", "/scratch"]))

    assert created["volumes"] == ["/srv/worker/data:/data:ro", "cache:/cache", "/scratch"]


def test_only_working_directory_pull_steps_mean_the_code_is_in_the_image() -> None:
    def steps(*written: dict[str, Any]) -> list[StepSpec]:
        return [StepSpec.from_spec(step) for step in written]

    work_in = "prefect.deployments.steps.set_working_directory"
    clone = {"prefect.deployments.steps.git_clone": {"repository": "https://x/r.git"}}
    assert container_directory(steps({work_in: {"directory": "/opt/flows"}})) == "/opt/flows"
    assert container_directory(steps({work_in: {"directory": "/opt/flows"}}, clone)) is None
    assert container_directory(steps({work_in: None})) is None  # no directory to set
    assert container_directory([]) is None
