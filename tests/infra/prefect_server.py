"""Test infrastructure: a real `prefect server start` on a free 127.0.0.1 port, the reference
Prefect API that tests run flows against (the Prefect installed in the test environment).

Its PREFECT_HOME (settings, SQLite database) is a directory the caller gives, none of the
caller's PREFECT_* settings reach it, analytics and the UI are off, and it is stopped with its
whole process group when the context ends (Linux also stops it if the thread that started it
dies). `running_prefect_server(home)` yields once GET /api/health answers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.infra.docker_env import free_port

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class PrefectServerError(RuntimeError):
    """The server exited or never answered while starting; the message has its log."""


@dataclass(frozen=True)
class PrefectServer:
    """A running server: `api_url` is what PREFECT_API_URL takes (`http://127.0.0.1:P/api`)."""

    api_url: str
    home: Path
    log_path: Path

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]


def prefect_command() -> list[str]:
    """`prefect` of the Python running the tests."""
    return [sys.executable, "-m", "prefect"]


def server_environment(home: Path, port: int) -> dict[str, str]:
    """The process environment of the server: the caller's minus its PREFECT_* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
    )
    return env


@contextlib.contextmanager
def running_prefect_server(home: Path) -> Iterator[PrefectServer]:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = PrefectServer(f"http://127.0.0.1:{port}/api", home, home / "server.log")
    args = [*prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(server.log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_environment(home, port),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    try:
        _wait_until_healthy(server, process)
        yield server
    finally:
        _stop_group(process)


def _wait_until_healthy(server: PrefectServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrefectServerError(
                f"`prefect server start` exited with {process.returncode} while starting:\n"
                f"{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise PrefectServerError(
        f"`prefect server start` did not answer on {server.api_url}/health within "
        f"{START_TIMEOUT_S}s:\n{server.log_tail()}"
    )


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (it may run uvicorn and services as children),
    SIGKILL after STOP_TIMEOUT_S."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived the leader
