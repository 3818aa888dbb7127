"""The `docker` backend: a run is a container (worker: start a run).

The job is the pool's template rendered with the deployment's and the run's job variables
(reconciler/worker/job_config.py `docker_job`, docs/design-notes.md#docker-runs); how a
Prefect flow runs in it is decided in reconciler/worker/docker_flows.py, and the container is
made and started by reconciler/worker/docker_backend.py. Pull steps that only set the working
directory name code built into the image: they apply in the container, not on this machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.model.specs import StepSpec
from reconciler.steps.default_pull import SET_WORKING_DIRECTORY
from reconciler.worker.backends.interface import (
    PrefectEngineRun,
    RunRequest,
    StartedRun,
    StartError,
)
from reconciler.worker.job_config import DockerJob, JobConfigError, docker_job


class DockerBackend:
    """Runs of `docker` pools."""

    def runs_pull_steps(self, pull_steps: Sequence[StepSpec]) -> bool:
        return container_directory(pull_steps) is None

    def start(self, request: RunRequest) -> StartedRun:
        try:
            return _start(request)
        except JobConfigError as exc:
            raise StartError(exc.message) from exc


def _start(request: RunRequest) -> StartedRun:
    # Imported with the first container run.
    from reconciler.worker.docker_backend import start_container
    from reconciler.worker.docker_flows import (
        PLAIN_MARKER,
        no_prefect_reason,
        prepare_container_flow,
        unreachable_hint,
    )

    inside = container_directory(request.pull_steps)
    code_dir = request.code_dir if request.pull_steps and inside is None else None

    def render(base_env: Mapping[str, str] | None) -> DockerJob:
        return docker_job(
            request.base_job_template,
            request.job_variables,
            request.run.job_variables,
            request.context,
            base_env=base_env,
            environ=request.environ,
            blocks=request.blocks,
            variables=request.variables,
        )

    prefect = request.prefect
    flow = prepare_container_flow(
        render,
        prefect,
        entrypoint=request.entrypoint,
        code_on_worker=None if inside is not None else request.code_dir,
    )
    job = flow.job
    engine = None
    if flow.mode != "plain" and prefect is not None:
        api_url = flow.api_url or prefect.api_url
        engine = PrefectEngineRun(
            api_url=api_url,
            unreachable_hint=unreachable_hint(api_url, prefect),
            crash_reason=lambda code, tail: no_prefect_reason(job.image, code, list(tail)),
        )
    output = request.output
    output.hide(job.secrets)
    if engine is not None and prefect is not None and prefect.token:
        output.hide([prefect.token])
    output.echo = job.stream_output

    def on_line(stream: str, line: str) -> None:
        if flow.mode == "auto" and line == PLAIN_MARKER and engine is not None:
            engine.plain_function.set()  # the runner calls a plain function: exit code
            return
        output.add(stream, line)

    handle = start_container(
        job,
        entrypoint=request.entrypoint,
        parameters=dict(request.run.parameters),
        code_dir=code_dir,
        working_dir=inside,
        on_line=on_line,
        runner_options=flow.runner_options,
    )
    return StartedRun(handle, engine)


def container_directory(pull_steps: Sequence[StepSpec]) -> str | None:
    """The directory in the image when every pull step only sets the working directory (the
    code was built into the image): those steps are applied inside the container."""
    directory = None
    for step in pull_steps:
        if step.name != SET_WORKING_DIRECTORY:
            return None
        if step.argument("directory") is None:
            return None
        directory = str(step.argument("directory"))
    return directory
