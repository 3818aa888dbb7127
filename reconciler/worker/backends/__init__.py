"""Worker backends, by pool type (worker: how a claimed run starts).

`backend_for(pool_type)` is the backend that starts runs of pools of that type; a type no
backend handles is a user error that names the types there are. A new backend is a class with
the `Backend` protocol (reconciler/worker/backends/interface.py) and one entry in `BACKENDS`
(see CONTRIBUTING.md, "Adding a worker backend"). Each backend module is imported when a
worker needs it: a process worker never imports the docker SDK.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from reconciler.errors import UserError
from reconciler.worker.backends.interface import Backend


def _process() -> Backend:
    from reconciler.worker.backends.process import ProcessBackend

    return ProcessBackend()


def _docker() -> Backend:
    from reconciler.worker.backends.docker import DockerBackend

    return DockerBackend()


BACKENDS: Final[Mapping[str, Callable[[], Backend]]] = {"process": _process, "docker": _docker}
"""Pool type -> the factory of its backend."""


def backend_for(pool_type: str, pool: str | None = None) -> Backend:
    """The backend of pools of `pool_type`; a UserError naming the types there are, else."""
    make = BACKENDS.get(pool_type)
    if make is None:
        which = f"work pool {pool!r} is of type {pool_type!r}" if pool else f"type {pool_type!r}"
        raise UserError(
            f"{which}, which no worker backend here runs "
            f"(backends exist for: {', '.join(sorted(BACKENDS))})",
            "give the pool one of those types in work-pools.yaml, or run its flows with a "
            "worker for that type",
        )
    return make()
