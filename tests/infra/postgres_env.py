"""Test infrastructure: a throwaway PostgreSQL server from Debian's packages, for the tests of
the PostgreSQL store (tests/contract, tests/postgres).

`running_postgres()` finds the server's programs (`/usr/lib/postgresql/*/bin`, the newest
version), runs `initdb` into a fresh temporary directory and starts `postgres` on a free
127.0.0.1 port (its unix socket stays inside that directory), with password authentication
and durability turned off (fsync, synchronous commit): the tests want speed, not crash safety.
It stops the server and removes the directory afterwards. The server is a child of the test
run (not daemonised by pg_ctl) and Linux stops it if the run is killed (PR_SET_PDEATHSIG).

PostgreSQL refuses to run as root. As root (CI), the directory is given to the `postgres`
user (Debian's package creates it; else `nobody`) and the programs run as that user (the child
drops root before exec, as `runuser` would); as anyone else they run as the caller.

`PostgresServer.create_database()` makes a fresh, empty database and returns its
`postgresql://` URL: each test gets its own.

Run `python -m tests.infra.postgres_env` to keep a server up until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SUPERUSER = "reconciler"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
START_TIMEOUT_S = 30
INSTALL_HINT = "run `bash .ci/system-deps` (installs the Debian package postgresql)"
# Settings for a disposable test server: nothing it holds needs to survive a crash.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


_ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server programs here, or the server would not start: the PostgreSQL
    tests skip on this, except on CI where it is a failure."""


def find_bindir() -> Path:
    """The newest `/usr/lib/postgresql/VERSION/bin` holding initdb, pg_ctl and postgres
    (Debian keeps them off PATH), else the directory of an `initdb` on PATH."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable(
        f"no PostgreSQL server programs (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin "
        f"or on PATH; {INSTALL_HINT}"
    )


def _server_user() -> str | None:
    """Whom to run the server as: None (the caller) unless the caller is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root, and there is no `postgres` or `nobody` user")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    directory: Path
    port: int
    password: str
    user: str | None
    host: str = "127.0.0.1"
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, database: str, *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{secret}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self, stem: str = "test") -> str:
        """A new empty database (name from `stem`, made unique); returns its URL."""
        name = re.sub(r"[^a-z0-9_]+", "_", stem.lower())[:40].strip("_") or "test"
        name = f"{name}_{next(self._numbers)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop_for(self, seconds: float) -> None:
        """An outage (the chaos soak, bench/soak): a fast shutdown (clients are disconnected,
        transactions in progress roll back), `seconds` down (connections are refused), then
        the same server started again on the same port with its data."""
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            self.process.wait(timeout=60)
        time.sleep(seconds)
        process, failure = _launch(self)
        if process is None:
            raise PostgresUnavailable(f"postgres did not start again; its log ends:\n{failure}")
        self.process = process

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database`, ending its connections."""
        name = url.rsplit("/", 1)[1]
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_server_user(user: str | None) -> Callable[[], None]:
    """What the child runs before exec: drop root for `user` (when given), then ask Linux to
    stop it (SIGQUIT: PostgreSQL's immediate shutdown) when the test run ends."""
    record = pwd.getpwnam(user) if user is not None else None

    def prepare() -> None:
        if record is not None:
            os.setgroups([])
            os.setgid(record.pw_gid)
            os.setuid(record.pw_uid)
        # After the change of user: changing credentials clears the parent-death signal.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)

    return prepare


def _run(user: str | None, argv: Sequence[str], what: str, timeout: float = 120) -> None:
    done = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_ENV,
        cwd="/",
        preexec_fn=_as_server_user(user),
    )
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): {done.stderr.strip()}")


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server for the length of the `with` block (see the module docstring)."""
    bindir = find_bindir()
    user = _server_user()
    # Not under pytest's base temp: its directories are private to the caller (0700), and
    # the server user must reach its own.
    directory = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    password = f"pw-{secrets.token_hex(8)}"
    server: PostgresServer | None = None
    try:
        pwfile = directory / "password"
        pwfile.write_text(password + "\n")
        if user is not None:
            record = pwd.getpwnam(user)
            for path in (directory, pwfile):
                os.chown(path, record.pw_uid, record.pw_gid)
        _run(
            user,
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(directory / "data"),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            "initdb",
        )
        server = _start(bindir, user, directory, password)
        yield server
    finally:
        if server is not None and server.process is not None:
            _stop(server.process)  # the one running now: `stop_for` starts another
        shutil.rmtree(directory, ignore_errors=True)


def _start(bindir: Path, user: str | None, directory: Path, password: str) -> PostgresServer:
    """`postgres` on a free port, ready for connections; a port taken between choosing it
    and binding it is tried again."""
    failure = ""
    for _ in range(3):
        server = PostgresServer(bindir, directory, _free_port(), password, user)
        process, failure = _launch(server)
        if process is not None:
            server.process = process
            return server
    raise PostgresUnavailable(f"postgres did not start; its log ends:\n{failure}")


def _launch(server: PostgresServer) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Start `postgres` for `server` (its directory, its port) and wait until it answers;
    the process, or None and the end of its log."""
    log_path = server.directory / "server.log"
    settings = {
        **SERVER_SETTINGS,
        "port": str(server.port),
        "unix_socket_directories": str(server.directory),
    }
    argv = [str(server.bindir / "postgres"), "-D", str(server.directory / "data")]
    for name, value in settings.items():
        argv += ["-c", f"{name}={value}"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_ENV,
            cwd="/",
            preexec_fn=_as_server_user(server.user),
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        try:
            psycopg.connect(server.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            time.sleep(0.05)
            continue
        return process, ""
    _stop(process)
    return None, log_path.read_text(errors="replace")[-2000:]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGQUIT)  # immediate shutdown: nothing here needs keeping
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def main() -> None:
    with running_postgres() as server:
        print(f"PostgreSQL {server.bindir.parent.name} on {server.url('postgres')}", flush=True)
        print("Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    sys.exit(main())
