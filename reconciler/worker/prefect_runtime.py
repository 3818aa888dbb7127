"""How a worker runs Prefect flows: the API its runs talk to and the Python that runs them
(worker: shared by every run of one worker).

A run of a Prefect flow is started as Prefect's own workers start it: its process gets
`PREFECT_API_URL` (the Prefect-compatible API this worker serves on 127.0.0.1, or a daemon's)
and `PREFECT__FLOW_RUN_ID` (reconciler's run id), and runs Prefect's engine, which loads *our*
run from that API: same id, name, parameters, deployment, pool and queue. Its states, task
runs, logs and artifacts come back through the API into the store.

A flow process must never start a temporary Prefect server of its own: ephemeral mode is
switched off in its environment, so a missing API fails fast instead of taking 15-35 s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOGGING_CONFIG = Path(__file__).with_name("prefect_logging.yml")
"""Prefect's run loggers to the API only (the store keeps them with their level), so a flow's
log lines are not stored twice (once as a record, once as console output)."""

RUNTIME_MARKERS = ("PREFECT__",)
"""Variables the engine reads when a run starts, not settings: they may differ per run."""


@dataclass
class PrefectRuntime:
    api_url: str
    """PREFECT_API_URL for the runs (it includes the `/api`-like prefix)."""
    token: str | None = None
    container_api_url: str | None = None
    """The API as containers on a bridge or user-defined network reach it (the address of
    `--prefect-api-listen`); None when they cannot (the API is on loopback only)."""
    """Sent by the runs as PREFECT_API_KEY (a bearer token) when the API needs one."""
    python: str = field(default_factory=lambda: sys.executable)
    """The interpreter of flows whose job configures no `command`."""
    forkserver: Any = None
    """A warm interpreter that has imported Prefect and forks a child per run (optional)."""
    on_close: list[Callable[[], None]] = field(default_factory=list)
    """What stops with the worker (the API server it serves)."""

    def base_env(self) -> dict[str, str]:
        """The worker's Prefect settings for every run (a job's `env` can override them)."""
        env = {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
            "PREFECT_LOGGING_SETTINGS_PATH": str(LOGGING_CONFIG),
        }
        if self.token:
            # HTTP calls send the key as a bearer token; the events websocket sends only the
            # auth string in its first frame: the API takes the token from either.
            env["PREFECT_API_KEY"] = self.token
            env["PREFECT_API_AUTH_STRING"] = f"reconciler:{self.token}"
        return env

    def engine_command(self) -> list[str]:
        return [self.python, "-u", "-m", "prefect.engine"]

    def close(self) -> None:
        if self.forkserver is not None:
            self.forkserver.close()
            self.forkserver = None
        while self.on_close:
            self.on_close.pop()()
