"""Worker backends, by pool type (worker: how a claimed run starts).

`backend_for(pool_type)` is the backend that starts runs of pools of that type; a type no
backend handles is a user error that names the types there are. A new backend is a class with
the `Backend` protocol (reconciler/worker/backends/interface.py) and one entry in `BACKENDS`
(see CONTRIBUTING.md, "Adding a worker backend"). Each backend module is imported by its
factory, when a worker of that type starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from reconciler.core.errors import UserError
from reconciler.prefect_rules.job_templates import POOL_TYPES
from reconciler.worker.backends.interface import Backend


def _process() -> Backend:
    from reconciler.worker.backends.process import ProcessBackend

    return ProcessBackend()


def _docker() -> Backend:
    from reconciler.worker.backends.docker import DockerBackend

    return DockerBackend()


BACKENDS: Final[Mapping[str, Callable[[], Backend]]] = {"process": _process, "docker": _docker}
"""Pool type -> the factory of its backend: one for each of WORKER_POOL_TYPES
(reconciler/prefect_rules/job_templates.py, the types reconciler's worker runs)."""


def backend_for(pool_type: str, pool: str | None = None) -> Backend:
    """The backend of pools of `pool_type`; a UserError naming the types there are, else."""
    make = BACKENDS.get(pool_type)
    if make is None:
        known = f"(backends exist for: {', '.join(sorted(BACKENDS))})"
        if pool is None:
            message = f"no worker backend here runs pools of type {pool_type!r} {known}"
        else:
            message = (
                f"work pool {pool!r} is of type {pool_type!r}, which no worker backend here "
                f"runs {known}"
            )
        raise UserError(message, _hint(pool_type))
    return make()


def _hint(pool_type: str) -> str:
    if pool_type in POOL_TYPES:  # a type pools may have, run by Prefect's worker only
        return (
            f"run this pool's flows with Prefect's {pool_type} worker (`prefect worker start "
            f"--pool NAME --type {pool_type}`) against a Prefect server, and apply into that "
            "server with `--store prefect+http://HOST/api` (docs/prefect-target.md); or give "
            f"the pool type {' or '.join(sorted(BACKENDS))} in work-pools.yaml"
        )
    return (
        "give the pool one of those types in work-pools.yaml, or run its flows with a "
        "worker for that type"
    )
