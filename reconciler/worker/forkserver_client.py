"""Start Prefect's engine for a run, warm from the forkserver when it can be, cold otherwise
(worker: starting the process of a Prefect flow run; the server is
reconciler/worker/prefect_forkserver.py).

A cold `python -m prefect.engine` spends 1-7 s importing Prefect before the flow's first line.
The forkserver has imported it once, with the worker's Prefect settings, and forks a child per
run. A run starts cold instead (a subprocess in a session of its own, as start_process does)
when the child would not be what a cold process would be:
- its interpreter is not the forkserver's (another path: another venv, another Prefect);
- its job configures a `command` of its own (it is run as it is);
- its environment differs from the forkserver's in a variable read while Python starts or
  Prefect is imported: Prefect's settings (`PREFECT_*`, except the per-run `PREFECT__*`),
  `PYTHON*`, `LD_PRELOAD`, `LD_LIBRARY_PATH`, `HOME`, locale and certificate variables;
- the forkserver is not running (it could not start, or it died).
Either way the handle has ProcessHandle's shape: `infrastructure_id`, `wait()` (the exit code,
-SIGNAL when a signal killed it), `stop(grace)` (SIGTERM to the run's process group, SIGKILL
after `grace`), and output lines go to `on_line(stream, line)` as they come.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from reconciler.worker import prefect_forkserver
from reconciler.worker.backends.interface import RunHandle
from reconciler.worker.process_backend import (
    SUPERVISOR_KILL_SECONDS,
    LineSink,
    StartError,
    pump_lines,
    start_process,
)
from reconciler.worker.run_processes import identity_of

log = logging.getLogger("reconciler.worker")

ENGINE_MODULE = "prefect.engine"
READY_TIMEOUT_SECONDS = 180.0
"""Importing Prefect takes 1-2 s on an idle machine, far more on a loaded one."""
CONNECT_TIMEOUT_SECONDS = 10.0
_HEADER = struct.Struct(">I")

_IMPORT_TIME_PREFIXES = ("PREFECT_", "PYTHON", "LC_")
_RUN_TIME_PREFIXES = ("PREFECT__",)
"""Read by the engine when the run starts (PREFECT__FLOW_RUN_ID ...), not at import."""
_IMPORT_TIME_NAMES = frozenset(
    {
        "HOME",  # Prefect's default home (~/.prefect), settings' paths
        "LANG",  # the standard streams' encoding
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "SSL_CERT_FILE",  # a default of Prefect's API settings, read at import
        "SSL_CERT_DIR",
    }
)


def import_time_differences(server_env: Mapping[str, str], run_env: Mapping[str, str]) -> list[str]:
    """The variables read at start-up or import whose value differs between the forkserver's
    environment and a run's (set in one and not the other counts): non-empty means cold."""

    def relevant(name: str) -> bool:
        if name.startswith(_RUN_TIME_PREFIXES):
            return False
        return name in _IMPORT_TIME_NAMES or name.startswith(_IMPORT_TIME_PREFIXES)

    names = {name for name in (*server_env, *run_env) if relevant(name)}
    return sorted(name for name in names if server_env.get(name) != run_env.get(name))


class ForkedRun:
    """A run forked by the forkserver: its status comes on the request's connection."""

    def __init__(self, pid: int, connection: socket.socket, on_line: LineSink) -> None:
        self.pid = pid
        self.identity = identity_of(pid)
        self.connection = connection
        self.on_line = on_line
        self.readers: list[threading.Thread] = []
        self.exit_code: int | None = None
        self.ended = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name=f"forked-run-{pid}", daemon=True)
        self.watcher.start()

    @property
    def infrastructure_id(self) -> str:
        """`pid P started T on HOST`: what a worker that restarts needs to stop its leftovers."""
        return str(self.identity)

    def wait(self) -> int:
        self.ended.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        assert self.exit_code is not None
        return self.exit_code

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM the run's process group; when it outlives `grace_seconds`, its supervisor
        SIGKILLs everything below it; the group is SIGKILLed if that did not end it."""
        self._signal_group(signal.SIGTERM)
        if self.ended.wait(grace_seconds):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGUSR1)
        if not self.ended.wait(SUPERVISOR_KILL_SECONDS):
            self._signal_group(signal.SIGKILL)

    def _watch(self) -> None:
        """Read the exit status; when the forkserver dies first (its children got SIGKILL),
        kill what the run started and say so in the run's output."""
        code: int | None = None
        with contextlib.suppress(OSError, ValueError), self.connection.makefile("rb") as reply:
            for raw in reply:
                message = json.loads(raw)
                if isinstance(message, dict) and isinstance(message.get("exit"), int):
                    code = message["exit"]
                    break
        self.connection.close()
        if code is None:
            self._signal_group(signal.SIGKILL)
            _wait_gone(self.pid, timeout=10)
            self.on_line(
                "stderr",
                "reconciler: the warm Prefect interpreter (forkserver) ended during this run; "
                "the run's processes were killed",
            )
            code = -signal.SIGKILL
        self.exit_code = code
        self.ended.set()

    def _signal_group(self, signum: signal.Signals) -> None:
        if self.ended.is_set():
            return  # the group is gone: its id may already belong to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


class Forkserver:
    """A running prefect_forkserver: `start` a run through it, `close` it with the worker."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        socket_path: Path,
        python: str,
        environ: Mapping[str, str],
        info: Mapping[str, object],
    ) -> None:
        self.process = process
        self.socket_path = socket_path
        self.python = python
        self.environ = dict(environ)
        self.info = dict(info)
        """What the server said when ready: Prefect's version, the seconds its import took."""

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def engine_command(self) -> list[str]:
        return [self.python, "-u", "-m", ENGINE_MODULE]

    def cold_reasons(self, command: Sequence[str] | None, env: Mapping[str, str]) -> list[str]:
        """Why a run with this command and environment must start cold (empty: warm)."""
        reasons = []
        if command is not None and list(command) != self.engine_command():
            if _same_python(command[0] if command else "", self.python):
                reasons.append(f"its command is its own ({' '.join(command)})")
            else:
                reasons.append(f"its Python is {command[0] if command else '?'}")
        differences = import_time_differences(self.environ, env)
        if differences:
            reasons.append(f"its environment sets {', '.join(differences)} differently")
        if not self.alive:
            reasons.append("the forkserver is not running")
        return reasons

    def start(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_line: LineSink,
        command: Sequence[str] | None = None,
    ) -> ForkedRun | None:
        """Fork the run's engine: None when this run must start cold (see `cold_reasons`)."""
        reasons = self.cold_reasons(command, env)
        if reasons:
            log.info("a Prefect run starts cold: %s", "; ".join(reasons))
            return None
        if not cwd.is_dir():
            raise StartError(f"cannot start the flow in {cwd}: no such directory")
        try:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(CONNECT_TIMEOUT_SECONDS)
            connection.connect(str(self.socket_path))
        except OSError as exc:
            connection.close()
            log.warning("the forkserver does not answer (%s): the run starts cold", exc)
            return None
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            body = json.dumps({"cwd": str(cwd), "env": dict(env)}).encode()
            socket.send_fds(connection, [_HEADER.pack(len(body)) + body], [out_write, err_write])
            reply = _read_line(connection)
        except OSError as exc:
            reply = {"error": str(exc)}
        finally:
            os.close(out_write)
            os.close(err_write)
        pid = reply.get("pid")
        if not isinstance(pid, int):
            connection.close()
            os.close(out_read)
            os.close(err_read)
            log.warning("the forkserver could not start a run (%s): it starts cold", reply)
            return None
        connection.settimeout(None)
        run = ForkedRun(pid, connection, on_line)
        for stream, fd in (("stdout", out_read), ("stderr", err_read)):
            pipe: IO[bytes] = os.fdopen(fd, "rb")
            reader = threading.Thread(target=pump_lines, args=(pipe, stream, on_line), daemon=True)
            reader.start()
            run.readers.append(reader)
        return run

    def close(self) -> None:
        """Stop the server (its remaining children are killed with it)."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # the server stops when its stdin ends
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.socket_path.parent, ignore_errors=True)


def start_forkserver(
    python: str,
    base_env: Mapping[str, str],
    *,
    environ: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> Forkserver:
    """Start a forkserver for `python` with the runs' Prefect settings (`base_env` over the
    worker's environment) and wait until it has imported Prefect. Raises StartError when it
    cannot (no Prefect there, a thread started at import, too slow)."""
    env = {**(os.environ if environ is None else environ), **base_env}
    directory = Path(tempfile.mkdtemp(prefix="reconciler-forkserver-"))
    socket_path = directory / "socket"
    try:
        process = subprocess.Popen(
            [python, "-u", prefect_forkserver.__file__, str(socket_path)],
            cwd=directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C meant for the worker does not reach it
        )
    except OSError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise StartError(f"cannot start the forkserver with {python}: {exc}") from exc
    assert process.stdout is not None
    ready = _first_line(process.stdout, ready_timeout)
    if not isinstance(ready, dict) or ready.get("ready") is not True:
        process.kill()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)
        detail = ready.get("error") if isinstance(ready, dict) else None
        raise StartError(f"the forkserver did not start: {detail or 'no answer'}")
    drain = threading.Thread(target=_discard, args=(process.stdout,), daemon=True)
    drain.start()
    log.info(
        "forkserver ready: %s imported prefect %s in %.1f s",
        python,
        ready.get("prefect"),
        ready.get("import_seconds", 0.0),
    )
    return Forkserver(process, socket_path, python, env, ready)


def start_prefect_engine(
    forkserver: Forkserver | None,
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: LineSink,
) -> RunHandle:
    """The process of one Prefect run: forked warm when `forkserver` can run `command` with
    `env`, else `command` started cold in a session of its own."""
    if forkserver is not None:
        forked = forkserver.start(cwd=cwd, env=env, on_line=on_line, command=command)
        if forked is not None:
            return forked
    return start_process(command, cwd=cwd, env=env, on_line=on_line)


def _same_python(program: str, python: str) -> bool:
    """Same path, not same target: a venv's python is a link to the base interpreter, and
    another venv's packages are not the forkserver's."""
    found = shutil.which(program) or program
    return os.path.abspath(found) == os.path.abspath(python)


def _read_line(connection: socket.socket) -> dict[str, object]:
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = connection.recv(1)
        if not chunk:
            return {"error": "the forkserver closed the connection"}
        data += chunk
    message = json.loads(bytes(data))
    return message if isinstance(message, dict) else {"error": f"unexpected reply {message!r}"}


def _first_line(stream: IO[bytes], timeout: float) -> object:
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        return None
    try:
        return json.loads(box[0])
    except ValueError:
        return None


def _discard(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        for _ in stream:
            pass


def _wait_gone(pid: int, timeout: float) -> None:
    """Until `pid` no longer exists (it is not our child: no waitpid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)


class WarmingForkserver:
    """A forkserver started in the background when the first Prefect flow run comes (that run
    starts cold; those after it are forked warm): a worker whose runs are plain functions never
    pays for importing Prefect, and no worker waits for it at start-up. Runs that come before
    it is ready, or when it could not start, start cold."""

    def __init__(self, python: str, base_env: Mapping[str, str]) -> None:
        self.python = python
        self.base_env = dict(base_env)
        self.server: Forkserver | None = None
        self.closed = False
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def warm(self) -> None:
        """Start warming up now (once)."""
        with self.lock:
            if self.thread is not None or self.closed:
                return
            self.thread = threading.Thread(
                target=self._warm, args=(self.python, self.base_env), name="forkserver", daemon=True
            )
            self.thread.start()

    def _warm(self, python: str, base_env: dict[str, str]) -> None:
        try:
            server = start_forkserver(python, base_env)
        except StartError as exc:
            log.warning("the warm Prefect interpreter could not start (%s): runs start cold", exc)
            return
        with self.lock:
            if self.closed:
                server.close()
                return
            self.server = server

    def start(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_line: LineSink,
        command: Sequence[str] | None = None,
    ) -> ForkedRun | None:
        self.warm()
        with self.lock:
            server = self.server
        if server is None:
            log.info("a Prefect run starts cold: the forkserver is not ready yet")
            return None
        return server.start(cwd=cwd, env=env, on_line=on_line, command=command)

    def wait_ready(self, timeout: float) -> bool:
        self.warm()
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
        return self.server is not None

    def close(self) -> None:
        with self.lock:
            self.closed = True
            server, self.server = self.server, None
        if server is not None:
            server.close()
