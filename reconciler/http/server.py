"""Serve an ASGI app with uvicorn in a background thread (reconciler/http: the daemon's
endpoints, the worker's health check and, later, the Prefect API).

    running = serve_in_thread(app, "127.0.0.1", 0, name="prefect-api")
    running.url       # http://127.0.0.1:PORT (the port actually bound when 0 was asked)
    running.stop()

The socket is bound and listening before the thread starts (`listen_socket`; an address in use
raises OSError in the caller), and `serve_in_thread` returns once uvicorn serves it. The thread
runs its own event loop; the caller stays synchronous. HTTP/1.1 through httptools and
websockets through the `websockets` package.

Connection limits (protocol.py, `ConnectionLimits`), defaults:

    idle_timeout     5 s     a connection with no request in progress (never sent a byte, or
                             kept alive after a response) is closed after 5 s of silence
    header_timeout   10 s    a request's headers must be complete 10 s after their first byte
                             (slow-header clients are closed)
    max_header_bytes 64 KiB  larger request headers get 431 and the connection is closed
    max_connections  1,000   over it the connection idle for longest is closed; lowered to
                             leave 256 file descriptors of the process's soft RLIMIT_NOFILE to
                             everything else (768 under the common limit of 1,024)

A request body has no timeout here: an app that reads one bounds it (the daemon's webhooks do).
Other settings: no access log, no proxy headers trusted, no `Server` header, uvicorn's own log
lines go to the `uvicorn.*` loggers (reconciler/daemon/logs.py formats them with ours).
"""

from __future__ import annotations

import dataclasses
import resource
import socket
import threading
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from reconciler.http.protocol import ConnectionLimits, LimitedConfig

DESCRIPTORS_KEPT_FREE = 256
START_TIMEOUT_SECONDS = 10.0


def default_limits() -> ConnectionLimits:
    """The defaults above, with max_connections fitted under this process's descriptor limit."""
    limits = ConnectionLimits()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits
    fitted = max(16, min(limits.max_connections, soft - DESCRIPTORS_KEPT_FREE))
    return dataclasses.replace(limits, max_connections=fitted)


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0 picks a free port) and listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's Server telling the starting thread when it serves."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class RunningServer:
    """An app being served by a thread; `stop()` ends it."""

    name: str
    host: str
    port: int
    _server: _Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let requests in progress finish within `timeout` seconds, close
        every connection and end the thread."""
        # Read by uvicorn's shutdown; typed int there, any number of seconds works.
        grace: Any = max(timeout - 0.5, 0.1)
        self._server.config.timeout_graceful_shutdown = grace
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(1.0)


def serve_in_thread(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    name: str = "http",
    sock: socket.socket | None = None,
    limits: ConnectionLimits | None = None,
) -> RunningServer:
    """Serve `app` on host:port (or on `sock`, already listening) until `.stop()`. Returns when
    the server accepts connections; raises OSError when the address cannot be bound and
    RuntimeError when uvicorn does not start."""
    sock = sock if sock is not None else listen_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = LimitedConfig(
        app,
        limits=limits or default_limits(),
        loop="asyncio",
        ws="websockets-sansio",
        lifespan="auto",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    ready = threading.Event()
    server = _Server(config, ready)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit from a failed startup, or anything else
            failure.append(exc)
        finally:
            sock.close()
            ready.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait(START_TIMEOUT_SECONDS)
    if failure or not server.started:
        server.should_exit = True
        thread.join(1.0)
        why = repr(failure[0]) if failure else f"not serving after {START_TIMEOUT_SECONDS:.0f}s"
        raise RuntimeError(f"the HTTP server {name!r} did not start: {why}")
    return RunningServer(name, str(bound_host), int(bound_port), server, thread)
