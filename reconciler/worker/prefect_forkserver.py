"""A warm Prefect interpreter that forks one child per flow run (worker: where runs of Prefect
flows start when they can start warm; reconciler/worker/forkserver_client.py talks to it).

    python -m reconciler.worker.prefect_forkserver SOCKET_PATH
    python /any/path/prefect_forkserver.py SOCKET_PATH    (no package needed: stdlib only here)

Started with the runs' Prefect settings already in its environment (PREFECT_API_URL, ...), it
imports Prefect and its engine once (the 1-7 s every cold `python -m prefect.engine` pays),
checks that no thread is running (forking a threaded process is unsafe), prints one JSON line
on stdout (`{"ready": ...}` or `{"error": ...}`), then serves requests on a Unix socket, in its
main thread only, until its stdin closes (the worker is gone) or it gets SIGTERM.

A request is one message: a 4-byte big-endian length, a JSON object
`{"cwd": DIR, "env": {NAME: VALUE}}`, and the run's stdout and stderr as two file descriptors
(SCM_RIGHTS). The server forks; the reply, on the same connection, is JSON lines:
`{"pid": N}` right after the fork (or `{"error": TEXT}`), then `{"exit": CODE}` when the child
has ended (its exit code, or -SIGNAL when a signal killed it).

The child becomes what `python -u -m prefect.engine` started in DIR with that environment
would be: see `_become_run`. It runs the engine module as `__main__` (Prefect's own entry
point), then ends as the interpreter would (non-daemon threads joined, exit callbacks run,
streams flushed) and exits with the engine's code. When the run's directory carries Prefect
settings of its own (`.env`, `prefect.toml`, `pyproject.toml`) that differ from the ones
imported here, the child replaces itself with a cold `python -m prefect.engine` instead.
When this server dies, its children get SIGKILL (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import Any

PRELOAD = (
    "prefect",
    "prefect.main",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.flows",
    "prefect.deployments.steps",
    "prefect.deployments.steps.pull",
    "prefect.client.orchestration",
    "prefect._internal.metrics",
    "prefect._internal.control_listener",
    "prefect.logging.handlers",
    "prefect.futures",
    "prefect.task_runners",
    "prefect.results",
    "prefect.events.clients",
    "prefect.events.worker",
    "prefect.runtime",
    "prefect.utilities.visualization",
    "pydantic.v1",
    "anyio._core._sockets",
    "anyio._core._streams",
    "encodings.idna",
    "rich._emoji_codes",
)
"""What a run imports anyway, imported once here: the engine's modules, and those a run of a
flow with tasks was measured to import on top of them (0.3 s on a loaded 2-core machine)."""

ENGINE_MODULE = "prefect.engine"
SETTINGS_FILES = (".env", "prefect.toml", "pyproject.toml")
"""Files in a run's directory that Prefect reads settings from (relative to the cwd)."""
HEADER = struct.Struct(">I")
MAX_REQUEST = 16 * 1024 * 1024
REQUEST_TIMEOUT_SECONDS = 10.0
PR_SET_PDEATHSIG = 1
EXIT_SERVER_ERROR = 3


class Server:
    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket | None] = {}
        """pid -> the connection that asked for it (told the exit status), None once it left."""
        self.stopping = False

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_write.fileno())
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _note_signal)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "signal")
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        while not self.stopping:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "signal":
                    self._on_signals()
                elif key.data == "stdin":
                    if not os.read(sys.stdin.fileno(), 4096):
                        self.stopping = True  # the worker is gone
                else:  # a client hung up or wrote: its child keeps running
                    self._drop_client(key.fileobj)  # type: ignore[arg-type]
        self._shutdown()

    def _accept(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        fds: list[int] = []
        try:
            connection.settimeout(REQUEST_TIMEOUT_SECONDS)
            request, fds = _read_request(connection)
            pid = self._fork(request, fds)
        except Exception as exc:
            with contextlib.suppress(OSError):
                _send(connection, {"error": f"{type(exc).__name__}: {exc}"})
            connection.close()
            return
        finally:
            for fd in fds:
                os.close(fd)  # the child has its copies: the run's pipes end with it
        self.children[pid] = connection
        _send(connection, {"pid": pid})
        connection.setblocking(False)
        self.selector.register(connection, selectors.EVENT_READ, pid)

    def _fork(self, request: dict[str, Any], fds: list[int]) -> int:
        if len(fds) != 2:
            raise ValueError(f"expected 2 file descriptors (stdout, stderr), got {len(fds)}")
        cwd, env = request.get("cwd"), request.get("env")
        if not isinstance(cwd, str) or not isinstance(env, dict):
            raise ValueError("the request needs 'cwd' (a directory) and 'env' (an object)")
        server_pid = os.getpid()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            try:
                code = _become_run(server_pid, cwd, env, fds[0], fds[1])
            except BaseException:
                traceback.print_exc()
                code = 1
            _exit_like_interpreter(code)
        return pid

    def _on_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self.wake_read.recv(4096):
                pass
        if _signals_seen & {signal.SIGTERM, signal.SIGINT}:
            self.stopping = True
        _signals_seen.clear()
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self.children:
                continue
            connection = self.children.pop(pid)
            if connection is None:
                continue  # its client left: nobody to tell
            with contextlib.suppress(OSError):
                connection.setblocking(True)
                connection.settimeout(REQUEST_TIMEOUT_SECONDS)
                _send(connection, {"exit": os.waitstatus_to_exitcode(status)})
            self._close(connection)

    def _drop_client(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if connection.recv(4096):
                return  # nothing is expected after the request: ignored
        for pid, known in list(self.children.items()):
            if known is connection:
                self.children[pid] = None
        self._close(connection)

    def _close(self, connection: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(connection)
        connection.close()

    def _shutdown(self) -> None:
        """Stop: children get SIGKILL through PR_SET_PDEATHSIG when this process ends; their
        process groups (what they started) are killed here."""
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


_signals_seen: set[int] = set()


def _note_signal(signum: int, frame: object) -> None:
    _signals_seen.add(signum)


def _read_request(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(connection, 65536, 2)
    buffer = bytearray(data)
    if len(buffer) < HEADER.size:
        raise ValueError("the request ended before its length")
    (length,) = HEADER.unpack_from(buffer)
    if length > MAX_REQUEST:
        raise ValueError(f"the request is too large ({length} bytes)")
    while len(buffer) < HEADER.size + length:
        chunk = connection.recv(min(1 << 20, HEADER.size + length - len(buffer)))
        if not chunk:
            raise ValueError("the request ended early")
        buffer += chunk
    request = json.loads(bytes(buffer[HEADER.size : HEADER.size + length]))
    if not isinstance(request, dict):
        raise ValueError("the request must be a JSON object")
    return request, list(fds)


def _send(connection: socket.socket, message: dict[str, Any]) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


# -- the child ---------------------------------------------------------------------------------


def _become_run(server_pid: int, cwd: str, env: dict[str, str], out_fd: int, err_fd: int) -> int:
    """Turn this fresh fork into the run's process, run Prefect's engine, return its exit code.

    What a forked child inherits that a cold `python -m prefect.engine` would not have, and
    what is done about it:
    - the server's session, signal handlers and wakeup fd: a new session (stop() signals the
      run's whole group), default dispositions, no wakeup fd;
    - the server's stdin, stdout, stderr and sockets: /dev/null, the run's two pipes, and
      every other descriptor closed;
    - the server's directory, environment, argv and sys.path[0]: the run's directory and
      environment, argv and sys.path as `-m` sets them, the time zone re-read (TZ);
    - Prefect's settings, read at import from the environment (equal by the client's check)
      and from the directory's `.env`, `prefect.toml`, `pyproject.toml`: when the run's
      directory has one of those and the settings differ, a cold engine replaces this child;
    - the engine module itself: run afresh as `__main__`, as `-m` does;
    - `random`'s state and logging's locks: CPython re-seeds and re-creates them after fork;
      no thread, event loop or HTTP client exists yet (the server checked before serving).
    """
    os.setsid()
    _die_with_parent(server_pid)
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(
            signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler
        )
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.closerange(3, _max_fd())
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(write_through=True)  # as -u does
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if hasattr(time, "tzset"):
        time.tzset()
    _supervise()  # from here on, this is the flow's process; our parent stops what it leaves
    sys.argv = [ENGINE_MODULE]
    sys.path[0] = os.getcwd()
    if _settings_differ_here():
        _exec_cold_engine()
    return _run_engine()


def _supervise() -> None:
    """Become the run's supervisor (reconciler/worker/run_supervisor.py, beside this file:
    loaded by path, so that no reconciler package is needed in this interpreter): this process
    stays behind, stops every process the flow starts when the flow ends, and exits as the
    flow did; the forked child returns and runs the engine."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_supervisor.py")
    spec = importlib.util.spec_from_file_location("_reconciler_run_supervisor", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.supervise_this_process()


def _die_with_parent(server_pid: int) -> None:
    """SIGKILL when the server ends (Linux); a child whose server already ended stops now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server_pid:
        os._exit(128 + signal.SIGKILL)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536


def _settings_differ_here() -> bool:
    """Whether the run's directory gives Prefect settings other than those imported."""
    if not any(os.path.isfile(name) for name in SETTINGS_FILES):
        return False
    from prefect.context import get_settings_context
    from prefect.settings import Settings

    imported = get_settings_context().settings
    return bool(Settings().model_dump() != imported.model_dump())


def _exec_cold_engine() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-u", "-m", ENGINE_MODULE], dict(os.environ))


def _run_engine() -> int:
    """`python -m prefect.engine`: the engine module executed as `__main__`; its exit code."""
    sys.modules.pop(ENGINE_MODULE, None)  # -m executes it afresh, whatever imported it before
    try:
        runpy.run_module(ENGINE_MODULE, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        _flush_and_shutdown()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # as the interpreter ends on an uncaught Ctrl-C
        return 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF  # as the operating system reports sys.exit(code)
    print(code, file=sys.stderr)
    return 1


def _flush_and_shutdown() -> None:
    """What the interpreter does when it ends: join non-daemon threads (and run
    `threading._register_atexit` callbacks, where Prefect drains its log and event services),
    run atexit callbacks, flush the standard streams."""
    shutdown = getattr(threading, "_shutdown", None)
    with contextlib.suppress(Exception):
        if shutdown is not None:
            shutdown()
    import atexit

    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _exit_like_interpreter(code: int) -> None:
    _flush_and_shutdown()
    os._exit(code)


# -- start-up ------------------------------------------------------------------------------------


def preload() -> dict[str, Any]:
    """Import what every run needs; fail when that started a thread (forking would copy a
    process whose other threads vanish mid-work)."""
    started = time.perf_counter()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    seconds = time.perf_counter() - started
    threads = [
        thread.name for thread in threading.enumerate() if thread is not threading.main_thread()
    ]
    if threads:
        raise RuntimeError(
            f"importing Prefect started thread(s) {', '.join(threads)}: "
            "forking would be unsafe; runs start cold"
        )
    import prefect

    return {"prefect": prefect.__version__, "import_seconds": round(seconds, 3)}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: prefect_forkserver SOCKET_PATH", file=sys.stderr)
        return 2
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = os.getcwd()  # run as a script: as under -m, not this file's directory
    try:
        info = preload()
        server = Server(argv[0])
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return EXIT_SERVER_ERROR
    print(
        json.dumps({"ready": True, "pid": os.getpid(), "python": sys.executable, **info}),
        flush=True,
    )
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
