"""Real git servers on 127.0.0.1 for the tests of remote repositories (and the git_clone step).

- `running_git_daemon(base)`: `git daemon` serving the bare repositories under `base` as
  git://127.0.0.1:PORT/NAME, pushes enabled (`--enable=receive-pack`).
- `running_http_server(base, username, password)`: git's smart HTTP protocol,
  `git http-backend` run as a CGI program by a stdlib `ThreadingHTTPServer`, behind HTTP
  basic auth (401 with `WWW-Authenticate` without the right credentials; no auth when
  `username` is None). Pushes work too (`http.receivepack`).
- `Remote`: a bare repository on one of these servers plus a working clone, to change the
  remote the way people do: commit and push, force-push, delete a branch.

Both servers stop, and their processes end, when the context exits.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import io
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Protocol, cast
from urllib.parse import quote, urlsplit

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@reconciler.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@reconciler.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,  # the user's (or a test's) ~/.gitconfig plays no part
    "GIT_TERMINAL_PROMPT": "0",
}
START_TIMEOUT_S = 10.0
CGI_TIMEOUT_S = 60.0


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class GitServer(Protocol):
    """What the tests need of a server: where its repositories live and their URLs."""

    base: Path

    def url_of(self, name: str) -> str:
        """The URL clients fetch `name` from (no credentials)."""
        ...

    def push_url_of(self, name: str) -> str:
        """The URL a client with the right credentials pushes `name` to."""
        ...


def init_bare(path: Path, branch: str = "main") -> None:
    """A bare repository that accepts pushes over both protocols."""
    git("init", "-q", "--bare", f"--initial-branch={branch}", str(path))
    git("config", "http.receivepack", "true", cwd=path)
    git("config", "receive.denyDeleteCurrent", "ignore", cwd=path)  # tests delete branches
    git("config", "uploadpack.allowFilter", "true", cwd=path)


# --- git daemon ------------------------------------------------------------------------------


@dataclass
class GitDaemon:
    """A `git daemon` serving the bare repositories under `base` as git://127.0.0.1:port/."""

    base: Path
    url: str

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def push_url_of(self, name: str) -> str:
        return self.url_of(name)

    def publish(self, source: Path, name: str) -> str:
        """Serve a bare copy of the repository at `source` as `name`; returns its URL."""
        target = self.base / name
        git("clone", "-q", "--bare", str(source), str(target))
        git("config", "uploadpack.allowFilter", "true", cwd=target)
        return self.url_of(name)


@contextlib.contextmanager
def running_git_daemon(base: Path) -> Iterator[GitDaemon]:
    port = free_port()
    process = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--informative-errors",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={base}",
            str(base),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_listening(port, process)
        yield GitDaemon(base, f"git://127.0.0.1:{port}")
    finally:
        stop(process)


def wait_until_listening(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT_S:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the process and what it forked (it leads its own session)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait(timeout=10)


# --- smart HTTP --------------------------------------------------------------------------------


@dataclass
class Request:
    """One request the HTTP server answered: what the tests may check."""

    method: str
    path: str
    status: int
    body_bytes: int  # bytes of the response body


@dataclass
class HttpGitServer:
    """`git http-backend` on http://127.0.0.1:port/, behind basic auth when `username` is set."""

    base: Path
    url: str
    username: str | None
    password: str | None
    requests: list[Request] = field(default_factory=list)

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def push_url_of(self, name: str) -> str:
        if self.username is None or self.password is None:
            return self.url_of(name)
        parts = urlsplit(self.url)
        userinfo = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
        return f"{parts.scheme}://{userinfo}@{parts.netloc}/{name}"

    def bytes_sent(self, since: int = 0) -> int:
        """Response bytes of the requests from index `since` on."""
        return sum(request.body_bytes for request in self.requests[since:])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    git: HttpGitServer
    backend: str
    log: IO[bytes]
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the requests are recorded in `HttpGitServer.requests`

    def _serve(self) -> None:
        if not self._authorized():
            self._answer(HTTPStatus.UNAUTHORIZED, [("WWW-Authenticate", 'Basic realm="git"')])
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.git.base),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.server.git.base),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": self.server.git.username or "",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
        }
        if self.headers.get("Content-Length"):
            env["CONTENT_LENGTH"] = self.headers["Content-Length"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        backend = subprocess.Popen(
            [self.server.backend],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.server.log,
        )
        assert backend.stdin is not None and backend.stdout is not None
        feeder = threading.Thread(target=self._copy_body, args=(backend.stdin,), daemon=True)
        feeder.start()
        try:
            self._relay(cast(io.BufferedReader, backend.stdout))
        finally:
            feeder.join(timeout=CGI_TIMEOUT_S)
            try:
                backend.wait(timeout=CGI_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                backend.kill()
                backend.wait()
            backend.stdout.close()

    def _authorized(self) -> bool:
        expected_user, expected_password = self.server.git.username, self.server.git.password
        if expected_user is None or expected_password is None:
            return True
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(user, expected_user) & hmac.compare_digest(
            password, expected_password
        )

    def _copy_body(self, sink: IO[bytes]) -> None:
        """The request body to the CGI's stdin: Content-Length bytes, or the decoded chunks."""
        try:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    sink.write(self.rfile.read(size))
                    self.rfile.readline()
            else:
                remaining = int(self.headers.get("Content-Length") or 0)
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 65536))
                    if not chunk:
                        break
                    sink.write(chunk)
                    remaining -= len(chunk)
        except (BrokenPipeError, ValueError):
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()

    def _relay(self, source: io.BufferedReader) -> None:
        """The CGI's headers (its `Status:` as the status line), then its body as it comes."""
        status = HTTPStatus.OK.value
        reason = ""
        headers: list[tuple[str, str]] = []
        while True:
            line = source.readline().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            if name.lower() == "status":
                code, _, reason = value.strip().partition(" ")
                status = int(code)
            else:
                headers.append((name.strip(), value.strip()))
        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        while chunk := source.read1(65536):
            self.wfile.write(chunk)
            sent += len(chunk)
        self.wfile.flush()
        self._record(status, sent)

    def _answer(self, status: HTTPStatus, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._record(status.value, 0)

    def _record(self, status: int, body_bytes: int) -> None:
        with self.server.lock:
            self.server.git.requests.append(Request(self.command, self.path, status, body_bytes))


def http_backend() -> str:
    exec_path = git("--exec-path")
    backend = Path(exec_path) / "git-http-backend"
    if not backend.exists():
        raise RuntimeError(f"git-http-backend is not in git's exec-path {exec_path}")
    return str(backend)


@contextlib.contextmanager
def running_http_server(
    base: Path, username: str | None = None, password: str | None = None
) -> Iterator[HttpGitServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.git = HttpGitServer(base, f"http://127.0.0.1:{port}", username, password)
    server.backend = http_backend()
    server.lock = threading.Lock()
    with open(base.parent / f"{base.name}-http-backend.log", "ab") as log:
        server.log = log
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.git
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


# --- changing a remote -----------------------------------------------------------------------


class Remote:
    """A bare repository served by `server` as `name`, with a working clone to change it:
    every change is a real push through the server."""

    def __init__(self, server: GitServer, name: str, branch: str = "main") -> None:
        self.server = server
        self.name = name
        self.branch = branch
        self.bare = server.base / name
        init_bare(self.bare, branch)
        self.work = Path(tempfile.mkdtemp(prefix="work-", dir=server.base.parent))
        git("init", "-q", f"--initial-branch={branch}", str(self.work))
        git("remote", "add", "origin", server.push_url_of(name), cwd=self.work)

    @property
    def url(self) -> str:
        """The URL clients fetch from, without credentials."""
        return self.server.url_of(self.name)

    def head(self, branch: str | None = None) -> str:
        return git("rev-parse", f"refs/heads/{branch or self.branch}", cwd=self.bare)

    def commit(
        self,
        files: Mapping[str, str | bytes],
        message: str = "change",
        branch: str | None = None,
    ) -> str:
        """Commit `files` on `branch` (default: the remote's branch) and push it."""
        branch = branch or self.branch
        self._switch(branch)
        self._write(files)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def force_push(self, files: Mapping[str, str | bytes], message: str = "rewritten") -> str:
        """Replace the branch's last commit by a new one with `files` and force-push it."""
        self._switch(self.branch)
        git("reset", "-q", "--hard", "HEAD~1", cwd=self.work)
        self._write(files)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def delete_branch(self, branch: str | None = None) -> None:
        git("push", "-q", "origin", f":refs/heads/{branch or self.branch}", cwd=self.work)

    def _switch(self, branch: str) -> None:
        if git("branch", "--list", branch, cwd=self.work):
            git("checkout", "-q", branch, cwd=self.work)
        elif self._has_commits():
            git("checkout", "-q", "-b", branch, cwd=self.work)
        else:
            git("checkout", "-q", "--orphan", branch, cwd=self.work)

    def _has_commits(self) -> bool:
        probe = ["git", "rev-parse", "--verify", "--quiet", "HEAD^{commit}"]
        return subprocess.run(probe, cwd=self.work, capture_output=True).returncode == 0

    def _write(self, files: Mapping[str, str | bytes]) -> None:
        for name, content in files.items():
            target = self.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(textwrap.dedent(content))

    def remove(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
