"""reconciler/http/server.py with real sockets on 127.0.0.1: a tiny Starlette app served by
`serve_in_thread`, short limits so each timeout shows within a second or two."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect as websocket_connect

from reconciler.http.protocol import ConnectionLimits
from reconciler.http.server import RunningServer, listen_socket, serve_in_thread

SHORT = ConnectionLimits(idle_timeout=0.5, header_timeout=1.0, max_connections=50)
released = threading.Event()
Serve = Callable[..., RunningServer]


def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def wait(request: Request) -> PlainTextResponse:
    released.wait(10)
    return PlainTextResponse("released")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(f"echo: {text}")


APP = Starlette(routes=[Route("/", hello), Route("/wait", wait), WebSocketRoute("/echo", echo)])


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[RunningServer] = []

    def start(limits: ConnectionLimits = SHORT) -> RunningServer:
        server = serve_in_thread(APP, "127.0.0.1", 0, name="test-http", limits=limits)
        started.append(server)
        return server

    yield start
    released.set()
    for server in started:
        server.stop(2.0)
    released.clear()


def get(server: RunningServer, path: str = "/") -> str:
    with urllib.request.urlopen(server.url + path, timeout=5) as answer:
        return str(answer.read().decode())


_OPENED: list[socket.socket] = []


@pytest.fixture(autouse=True)
def close_connections() -> Iterator[None]:
    """Close the test's client sockets once it ends (unclosed, each is a ResourceWarning)."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def open_connection(server: RunningServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    _OPENED.append(sock)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it stayed open."""
    sock.settimeout(within)
    received = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return received
            received += chunk
    except ConnectionResetError:
        return received
    except TimeoutError:
        return None


def test_port_0_serves_on_the_port_actually_bound(serve: Serve) -> None:
    server = serve()
    assert server.port != 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert get(server) == "hello"


def test_an_address_in_use_is_an_oserror_before_any_thread_starts(serve: Serve) -> None:
    server = serve()
    with pytest.raises(OSError):
        listen_socket("127.0.0.1", server.port)


def test_a_websocket_route_is_served(serve: Serve) -> None:
    server = serve()
    with websocket_connect(f"ws://127.0.0.1:{server.port}/echo") as websocket:
        websocket.send("one")
        assert websocket.recv(timeout=5) == "echo: one"
        websocket.send("two")
        assert websocket.recv(timeout=5) == "echo: two"


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(serve: Serve) -> None:
    server = serve()
    silent = open_connection(server)
    assert closed_by_server(silent, within=5) == b""
    # And a kept-alive connection after its response, the same.
    kept = open_connection(server)
    kept.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    answer = closed_by_server(kept, within=5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")


def test_headers_sent_byte_by_byte_are_cut_off_after_the_header_timeout(serve: Serve) -> None:
    server = serve()
    slow = open_connection(server)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n")
    # A byte every 0.2 s: never idle for the 0.5 s idle timeout, but the headers never end.
    deadline = time.monotonic() + 10
    cut_off = False
    while time.monotonic() < deadline and not cut_off:
        try:
            slow.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            cut_off = True
            break
        cut_off = closed_by_server(slow, within=0.2) is not None
    assert cut_off, "the slow client was still connected after 10 s"
    assert get(server) == "hello"


def test_oversized_headers_are_refused_with_431(serve: Serve) -> None:
    server = serve()
    sock = open_connection(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * (70 * 1024))
    answer = closed_by_server(sock, within=5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 431")


def test_over_the_budget_the_longest_idle_connection_makes_room(serve: Serve) -> None:
    server = serve(ConnectionLimits(idle_timeout=30, header_timeout=30, max_connections=5))
    idle = [open_connection(server) for _ in range(5)]
    time.sleep(0.2)  # accepted, in this order
    assert get(server) == "hello"
    assert closed_by_server(idle[0], within=5) == b""
    assert [closed_by_server(sock, within=0.2) for sock in idle[1:]] == [None] * 4


def test_when_every_connection_is_busy_the_newcomer_is_closed(serve: Serve) -> None:
    server = serve(ConnectionLimits(idle_timeout=30, header_timeout=30, max_connections=2))
    busy = [open_connection(server) for _ in range(2)]
    for sock in busy:
        sock.sendall(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
    time.sleep(0.3)
    newcomer = open_connection(server)
    assert closed_by_server(newcomer, within=5) == b""
    released.set()
    for sock in busy:
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_stop_closes_the_port(serve: Serve) -> None:
    server = serve()
    kept = open_connection(server)
    server.stop(2.0)
    assert not server.running
    assert closed_by_server(kept, within=2) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2)
