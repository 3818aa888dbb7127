"""The `process` backend: a run is a subprocess of this machine (worker: start a run).

The job is the pool's template rendered with the deployment's and the run's job variables
(reconciler/worker/job_config.py `process_job`, docs/design-notes.md#process-runs). Without a
configured `command`, reconciler's runner calls the entrypoint's function; a Prefect flow
(with a Prefect API to report to) runs under Prefect's engine instead, from the worker's warm
interpreter when it has one (reconciler/worker/forkserver_client.py). The process itself
starts below a run supervisor (reconciler/worker/process_backend.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from reconciler.model.specs import StepSpec
from reconciler.worker.backends.interface import (
    PrefectEngineRun,
    RunHandle,
    RunRequest,
    StartedRun,
    StartError,
)
from reconciler.worker.flow_kind import FlowKind, inspect_entrypoint
from reconciler.worker.flow_runner import PARAMETERS_FILE_NAME, PARAMETERS_FILE_VARIABLE
from reconciler.worker.interpreters import missing_prefect_message, probe_prefect, resolve_python
from reconciler.worker.job_config import JobConfigError, ProcessJob, process_job
from reconciler.worker.prefect_runtime import PrefectRuntime
from reconciler.worker.process_backend import start_process
from reconciler.worker.run_supervisor import STOP_GRACE_VARIABLE


class ProcessBackend:
    """Runs of `process` pools."""

    def runs_pull_steps(self, pull_steps: Sequence[StepSpec]) -> bool:
        return True

    def start(self, request: RunRequest) -> StartedRun:
        prefect = request.prefect
        engine: PrefectRuntime | None = None  # set when Prefect's engine runs the flow
        # -u: output arrives as it is printed, and is kept when the run is killed.
        runner = [sys.executable, "-u", "-m", "reconciler.worker.flow_runner", request.entrypoint]
        try:
            job = _job(request, default_command=runner)
            cwd = (
                request.code_dir
                if request.pull_steps or not job.working_dir
                else Path(job.working_dir)
            )
            if prefect is not None and _is_prefect_flow(prefect, request.entrypoint, cwd, job):
                engine = prefect
                job = _job(request, default_command=prefect.engine_command(), prefect=prefect)
        except JobConfigError as exc:
            raise StartError(exc.message) from exc
        output = request.output
        output.hide(job.secrets)
        if engine is not None and engine.token:
            output.hide([engine.token])
        output.echo = job.stream_output
        # A file, not the environment: one variable cannot carry more than 128 KB.
        parameters_file = request.scratch / PARAMETERS_FILE_NAME
        parameters_file.write_text(json.dumps(request.run.parameters), encoding="utf-8")
        env = {**job.env, PARAMETERS_FILE_VARIABLE: str(parameters_file)}
        handle = _start(request, job, cwd, env, warm=engine is not None)
        if engine is None:
            return StartedRun(handle)
        return StartedRun(handle, PrefectEngineRun(api_url=engine.api_url))


def _job(
    request: RunRequest,
    *,
    default_command: list[str],
    prefect: PrefectRuntime | None = None,
) -> ProcessJob:
    return process_job(
        request.base_job_template,
        request.job_variables,
        request.run.job_variables,
        request.context,
        default_command=default_command,
        base_env=prefect.base_env() if prefect is not None else None,
        environ=request.environ,
        blocks=request.blocks,
        variables=request.variables,
    )


def _start(
    request: RunRequest, job: ProcessJob, cwd: Path, env: dict[str, str], *, warm: bool
) -> RunHandle:
    """From the warm interpreter when Prefect's engine runs the flow with the default
    command and one is up; a new process otherwise."""
    on_line = request.output.add
    forkserver = request.prefect.forkserver if request.prefect is not None else None
    if warm and forkserver is not None and not job.command_configured:
        grace = {STOP_GRACE_VARIABLE: str(request.grace_seconds)}
        forked: RunHandle | None = forkserver.start(cwd=cwd, env={**env, **grace}, on_line=on_line)
        if forked is not None:
            return forked
    return start_process(
        job.command, cwd=cwd, env=env, on_line=on_line, stop_grace_seconds=request.grace_seconds
    )


def _is_prefect_flow(prefect: PrefectRuntime, entrypoint: str, cwd: Path, job: ProcessJob) -> bool:
    """Whether Prefect's engine runs this entrypoint; raises StartError with what to
    install where when the flow imports prefect and its Python cannot."""
    info = inspect_entrypoint(entrypoint, cwd)
    if not info.imports_prefect:
        return False
    if job.command_configured:  # the job names its own program: it is used as it is
        return info.kind is FlowKind.PREFECT_FLOW
    python = resolve_python(prefect.python)
    probe = probe_prefect(python)
    if probe.version is None:
        if info.prefect_optional:  # the file falls back to running without prefect
            return False
        raise StartError(missing_prefect_message(python, probe))
    return info.kind is FlowKind.PREFECT_FLOW
