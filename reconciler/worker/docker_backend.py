"""Worker backend `docker`: each run is a container (worker: execute). To be implemented."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.worker.job_config import DockerJob
from reconciler.worker.process_backend import StartError


class ContainerHandle:
    @property
    def infrastructure_id(self) -> str:
        raise NotImplementedError

    def wait(self) -> int:
        raise NotImplementedError

    def stop(self, grace_seconds: float) -> None:
        raise NotImplementedError


def start_container(
    job: DockerJob,
    *,
    entrypoint: str,
    parameters: dict[str, Any],
    code_dir: Path | None,
    working_dir: str | None,
    on_line: Callable[[str, str], None],
) -> ContainerHandle:
    raise StartError("the docker backend is not implemented yet")
