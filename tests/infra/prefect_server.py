"""Test infrastructure: a real Prefect server and Prefect's own process worker, from the
`prefect` package installed in this virtualenv (the `test` extra), for the tests and the
benchmark (bench/bench_prefect_flows.py) that compare reconciler with Prefect itself.

`running_prefect_server()` starts `prefect server start` in the foreground on a free
127.0.0.1 port, with its own PREFECT_HOME (and so its own SQLite database) in a fresh
temporary directory, analytics off, the UI off, and Prefect's temporary (ephemeral) server
forbidden; it waits for `GET /api/health`, then yields a `PrefectServer`. Afterwards it stops
the server with SIGTERM (uvicorn's graceful shutdown) and removes the directory. The server is
a child of the caller and Linux stops it if the caller dies (PR_SET_PDEATHSIG).

`PrefectServer.env()` is the environment any Prefect program (a client, `prefect deploy`, a
flow run as a bare process) needs to talk to that server and to nothing else.
`running_prefect_worker(server, pool)` runs `prefect worker start --pool POOL --type process`
against it, with a chosen PREFECT_WORKER_QUERY_SECONDS.

Run `python -m tests.infra.prefect_server` to keep a server up until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
START_TIMEOUT_S = 90  # a cold start migrates a new SQLite database: ~10 s on a busy 2-core host
STOP_TIMEOUT_S = 20
REQUEST_ATTEMPTS = 6  # 0.5 s doubling: ~30 s in all before a 429 or 503 is final
INSTALL_HINT = "install the test extra: `.venv/bin/pip install -e '.[test]'` (it holds prefect)"

# Settings every Prefect program started here gets: no analytics, no UI, no temporary
# server, no telemetry of flow-run processes, plain logs.
QUIET_SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    "PREFECT_CLI_COLORS": "false",
    "PREFECT_CLI_PROMPT": "false",
    "DO_NOT_TRACK": "1",
}


class PrefectRequestFailed(RuntimeError):
    """The Prefect server answered a REST call with an error (the message holds its body)."""


class PrefectUnavailable(RuntimeError):
    """prefect is not installed here, or its server would not start: the prefect tests skip
    on this, except on CI where it is a failure."""


def prefect_executable() -> Path:
    """The `prefect` program beside this interpreter (the test virtualenv's)."""
    candidate = Path(sys.executable).parent / "prefect"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    raise PrefectUnavailable(f"no `prefect` program beside {sys.executable}; {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent(signum: int) -> Callable[[], None]:
    """What the child runs before exec: ask Linux to send it `signum` when its parent ends."""

    def prepare() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)

    return prepare


@dataclass(frozen=True)
class PrefectServer:
    """A running `prefect server start`; `api_url` ends in `/api`, as PREFECT_API_URL does."""

    home: Path
    port: int
    log_path: Path
    host: str = "127.0.0.1"
    pid: int = 0
    """The server's process (`prefect server start` runs uvicorn in itself): benchmarks read
    its CPU time."""

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment, pointed at this server only (never a temporary one)."""
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PREFECT_") or key in QUIET_SETTINGS
        }
        return {
            **base,
            **QUIET_SETTINGS,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_PROFILES_PATH": str(self.home / "profiles.toml"),
            **(extra or {}),
        }

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def request(self, method: str, path: str, body: object = None) -> Any:
        """Call the server's REST API (`path` after `/api`) and return the decoded JSON.
        429 and 503 (a busy SQLite database) are tried again after a pause, as Prefect's own
        client does."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(REQUEST_ATTEMPTS):
            call = urllib.request.Request(
                f"{self.api_url}{path}",
                data=data,
                method=method,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(call, timeout=30) as answer:
                    payload = answer.read()
                return json.loads(payload) if payload else None
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if exc.code not in (429, 503) or attempt == REQUEST_ATTEMPTS - 1:
                    raise PrefectRequestFailed(f"{method} {path}: {exc.code} {detail}") from exc
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def running_prefect_server(
    settings: Mapping[str, str] | None = None,
) -> Iterator[PrefectServer]:
    """A started Prefect server for the length of the `with` block (module docstring), with
    these extra Prefect settings in its environment (e.g. PREFECT_SERVER_API_AUTH_STRING)."""
    executable = prefect_executable()
    home = Path(tempfile.mkdtemp(prefix="reconciler-prefect-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        server, process = _start(executable, home, settings or {})
        yield server
    finally:
        if process is not None:
            stop_process(process)
        shutil.rmtree(home, ignore_errors=True)


def _start(
    executable: Path, home: Path, settings: Mapping[str, str]
) -> tuple[PrefectServer, subprocess.Popen[bytes]]:
    """The server on a free port, answering /api/health; a port taken between choosing it
    and binding it is tried again."""
    log_path = home / "server.log"
    for _ in range(3):
        server = PrefectServer(home, _free_port(), log_path)
        argv = [
            str(executable),
            "server",
            "start",
            "--host",
            server.host,
            "--port",
            str(server.port),
            "--no-ui",
            "--analytics-off",
            "--log-level",
            "WARNING",
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server.env(settings),
                cwd=home,
                preexec_fn=_die_with_parent(signal.SIGTERM),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            if server.healthy():
                return dataclasses.replace(server, pid=process.pid), process
            time.sleep(0.1)
        stop_process(process)
        if "already in use" not in server.log_tail():
            break
    raise PrefectUnavailable(
        f"`prefect server start` did not answer /api/health within {START_TIMEOUT_S} s; "
        f"its log ends:\n{server.log_tail()}"
    )


@contextlib.contextmanager
def running_prefect_worker(
    server: PrefectServer,
    pool: str,
    *,
    query_seconds: float | None = None,
    limit: int | None = None,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Prefect's process worker (`prefect worker start --pool POOL --type process`) against
    `server`, polling every `query_seconds` (None: Prefect's default, 10 s); the pool is
    created by the worker when missing. Its output goes to `worker-POOL.log` in the server's
    home. Stopped with SIGTERM afterwards; Linux stops it if the caller dies."""
    argv = [str(prefect_executable()), "worker", "start", "--pool", pool, "--type", "process"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    env = dict(extra_env or {})
    if query_seconds is not None:
        env["PREFECT_WORKER_QUERY_SECONDS"] = f"{query_seconds:g}"
    log_path = server.home / f"worker-{pool}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server.env(env),
            cwd=cwd or server.home,
            preexec_fn=_die_with_parent(signal.SIGTERM),
        )
    try:
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there after STOP_TIMEOUT_S."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def main() -> None:
    with running_prefect_server() as server:
        print(f"Prefect server: PREFECT_API_URL={server.api_url}", flush=True)
        print(f"PREFECT_HOME={server.home}; Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
