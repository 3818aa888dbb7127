"""How a docker run starts a Prefect flow (worker: before a container starts, and when it ends).

A Prefect flow in a container runs as on a process pool: Prefect's engine, in the container,
against the Prefect API the worker serves (or a daemon's), with the worker's Prefect settings
(reconciler/worker/prefect_runtime.py), the API's token among them, and PREFECT__FLOW_ENTRYPOINT
so the engine loads the flow from the code in the container instead of running the
deployment's pull steps there. Without a configured `command`, the container runs our flow
runner in engine mode (reconciler/worker/flow_runner.py `--prefect-engine`), which checks that
the image's Python can import prefect and then runs the engine in the same process: no second
container probes the image.

Which kind of run it is:
- the code is on the worker (fetched by pull steps, or the working directory): the entrypoint
  is read with `ast` here (reconciler/worker/flow_kind.py);
- the code is built into the image (`set_working_directory` pull steps only): the worker
  cannot read it, so the container gets the Prefect settings and the runner reads the file
  inside (`--auto`), announcing a plain function with PLAIN_MARKER;
- a configured `command` runs as it is: as an engine run when the file is a Prefect flow, or,
  for code in the image, when the command starts Prefect's engine (`prefect.engine`,
  `prefect flow-run execute`).

Which API URL the container gets: the worker's own (127.0.0.1) when the container shares the
host's network (inferred on Linux, as prefect-docker does); a job with `networks` or a
bridge `network_mode` gets the address given with `--prefect-api-listen`, since a bridge
network cannot reach the host's loopback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from reconciler.worker import flow_runner
from reconciler.worker.docker_rules import LOCAL_API_HOSTS
from reconciler.worker.flow_kind import FlowKind, inspect_entrypoint
from reconciler.worker.job_config import DockerJob
from reconciler.worker.prefect_runtime import PrefectRuntime

LOGGING_CONFIG_PATH: Final = "/opt/reconciler/prefect_logging.yml"
"""Where the worker's logging settings for Prefect are copied in each container."""
ENGINE_COMMANDS: Final = ("prefect.engine", "flow-run execute")
PLAIN_MARKER: Final = flow_runner.PLAIN_MARKER

Mode = Literal["plain", "engine", "auto"]
RenderJob = Callable[[Mapping[str, str] | None], DockerJob]
"""The run's docker job, prepared with these worker settings (`base_env`)."""


@dataclass(frozen=True)
class ContainerFlow:
    mode: Mode
    job: DockerJob
    api_url: str | None = None
    """The PREFECT_API_URL the container got (engine and auto modes)."""

    @property
    def runner_options(self) -> list[str]:
        """Options of our flow runner, when the job configures no `command`."""
        return {"plain": [], "engine": ["--prefect-engine"], "auto": ["--auto"]}[self.mode]


def prepare_container_flow(
    render: RenderJob,
    runtime: PrefectRuntime | None,
    *,
    entrypoint: str,
    code_on_worker: Path | None,
) -> ContainerFlow:
    """The run's container job and how its flow runs. `code_on_worker` is the directory of
    the flow code on this machine; None when the code is in the image."""
    plain = render(None)
    if runtime is None:
        return ContainerFlow("plain", plain)
    mode = _mode(plain, entrypoint, code_on_worker)
    if mode == "plain":
        return ContainerFlow("plain", plain)
    on_loopback = dataclasses.replace(plain, env={"PREFECT_API_URL": runtime.api_url})
    bridged = on_loopback.effective_network_mode() != "host"
    url = runtime.container_api_url if bridged and runtime.container_api_url else runtime.api_url
    settings = {
        **runtime.base_env(),
        "PREFECT_API_URL": url,
        "PREFECT_LOGGING_SETTINGS_PATH": LOGGING_CONFIG_PATH,
        "PREFECT__FLOW_ENTRYPOINT": entrypoint,
    }
    job = render(settings)
    return ContainerFlow(mode, job, api_url=job.env.get("PREFECT_API_URL"))


def _mode(plain: DockerJob, entrypoint: str, code_on_worker: Path | None) -> Mode:
    if code_on_worker is None:
        if plain.command_configured:
            command = " ".join(plain.command)
            return "engine" if any(word in command for word in ENGINE_COMMANDS) else "plain"
        return "auto"
    info = inspect_entrypoint(entrypoint, code_on_worker)
    return "engine" if info.kind is FlowKind.PREFECT_FLOW else "plain"


def no_prefect_reason(image: str, exit_code: int, tail: Sequence[str]) -> str | None:
    """Why an engine run ended at once: the image's Python cannot import prefect (None
    when that is not what happened)."""
    if exit_code != flow_runner.EXIT_NO_PREFECT:
        return None
    if not any(line.startswith(flow_runner.NO_PREFECT_MARKER) for line in tail):
        return None
    return (
        f"the image {image} cannot import prefect: install it in the image "
        "(pip install 'prefect>=3,<4') or use an image that has it"
    )


def unreachable_hint(api_url: str, runtime: PrefectRuntime | None) -> str:
    """What to do when a container could not reach the API at `api_url`."""
    loopback_only = runtime is not None and runtime.container_api_url is None
    through_host = "host.docker.internal" in api_url or any(
        host in api_url for host in LOCAL_API_HOSTS
    )
    if loopback_only and through_host:
        return (
            " (the worker serves it on 127.0.0.1, which a container on a bridge or "
            "user-defined network cannot reach: start the worker with --prefect-api-listen "
            "HOST:PORT on an address the containers reach, such as the Docker gateway, or "
            "with --prefect-api-url of a Prefect API they reach)"
        )
    return " (check that the containers' network reaches it)"
