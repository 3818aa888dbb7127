"""A small HTTP proxy on 127.0.0.1 in front of the real Prefect server, for the faults and URL
shapes a local server does not have: a rate limit (429), and Prefect Cloud's workspace URL
(`/api/accounts/A/workspaces/W/...`) with its Bearer API keys. `answer_first(handler, body)`
may answer a request itself (status, body) before it is forwarded; anything else goes to the
server unchanged, with the server's answer returned as it came."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

Verdict = tuple[int, dict[str, Any] | None, dict[str, str]] | None
"""None: forward. Else the status, JSON body (None: empty) and headers to answer with."""


class ForwardingProxy:
    def __init__(
        self,
        upstream: str,
        *,
        prefix: str = "/api",
        answer_first: Callable[[http.server.BaseHTTPRequestHandler, bytes | None], Verdict]
        | None = None,
    ) -> None:
        decide = answer_first or (lambda _handler, _body: None)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # connections kept open, as a real server does

            def log_message(self, *_: Any) -> None:
                pass

            def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                verdict = decide(self, body)
                if verdict is not None:
                    status, document, headers = verdict
                    payload = b"" if document is None else json.dumps(document).encode()
                    self._reply(status, payload, headers)
                    return
                if not self.path.startswith(prefix + "/"):
                    self._reply(404, b'{"detail": "Not Found"}', {})
                    return
                call = urllib.request.Request(
                    upstream + self.path.removeprefix(prefix),
                    data=body,
                    method=self.command,
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(call, timeout=60) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                self._reply(status, payload, {})

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{prefix}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
