"""uvicorn's httptools protocol with the limits it lacks (reconciler/http: server.py uses it).

uvicorn arms its keep-alive timer only after a response; a connection that never sends a byte,
or sends a request's headers one byte at a time, is never timed out, and the number of open
connections is bounded only by the process's file descriptors. Here each connection:

- that has no request in progress (new, or between requests) is closed after `idle_timeout`
  seconds of silence;
- must complete a request's headers within `header_timeout` seconds of their first byte, and
  in at most `max_header_bytes` (else 431 and close);
- counts against `max_connections`: over it, the connection idle for longest (no request in
  progress, including ones still sending headers) is closed to make room; when every
  connection is busy with a request, the newcomer is closed instead.

Websocket connections leave the budget's eviction alone (they have pings and their own close).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger("reconciler.http")

WARNING_INTERVAL_SECONDS = 10.0
_arrivals = itertools.count()  # ties between equal idle times: the earlier arrival goes first


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout: float = 5.0
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 1000


class LimitedConfig(Config):
    """uvicorn's Config carrying our limits to every connection's protocol."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **options: Any) -> None:
        # uvicorn types timeout_keep_alive as int; it only reaches loop.call_later (float).
        keep_alive: Any = limits.idle_timeout
        super().__init__(
            app, http=GuardedHttpToolsProtocol, timeout_keep_alive=keep_alive, **options
        )
        self.connection_limits = limits
        self.last_budget_warning = 0.0


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limited_config = config if isinstance(config, LimitedConfig) else None
        self.limits = (
            config.connection_limits if isinstance(config, LimitedConfig) else ConnectionLimits()
        )
        self.idle_since: float | None = None
        self.header_timer: asyncio.TimerHandle | None = None
        self.header_bytes = 0
        self.arrival = next(_arrivals)

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.idle_since = self.loop.time()
        # The same timer uvicorn arms after a response: any byte received cancels it.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.limits.idle_timeout, self.timeout_keep_alive_handler
        )
        self._keep_within_budget()

    def data_received(self, data: bytes) -> None:
        if self.header_timer is None and self._between_requests():
            self.header_bytes = 0
            self.header_timer = self.loop.call_later(
                self.limits.header_timeout, self._headers_too_slow
            )
        if self.header_timer is not None:
            self.header_bytes += len(data)
        super().data_received(data)
        if (
            self.header_timer is not None
            and self.header_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._cancel_header_timer()
            self._refuse(431, "Request Header Fields Too Large")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self.idle_since = None
        super().connection_lost(exc)

    # -- parser callbacks ----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self.idle_since = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():
            self.idle_since = self.loop.time()

    # -- limits --------------------------------------------------------------------------------

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        self.transport.close()

    def _keep_within_budget(self) -> None:
        budget = self.limits.max_connections
        if len(self.connections) <= budget:
            return
        open_now = [c for c in self.connections if not c.transport.is_closing()]
        excess = len(open_now) - budget
        if excess <= 0:
            return
        idle = [
            (c.idle_since, c.arrival, c)
            for c in open_now
            if isinstance(c, GuardedHttpToolsProtocol)
            and c is not self
            and c.idle_since is not None
        ]
        for _, _, oldest in heapq.nsmallest(excess, idle):
            oldest.transport.close()
        if len(idle) < excess:
            self._warn(f"{len(open_now) - 1} connections are all busy (budget {budget})")
            self.transport.close()

    def _warn(self, message: str) -> None:
        config = self.limited_config
        now = time.monotonic()
        if config is None or now - config.last_budget_warning >= WARNING_INTERVAL_SECONDS:
            if config is not None:
                config.last_budget_warning = now
            log.warning("HTTP connection refused: %s", message)
