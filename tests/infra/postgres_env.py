"""Test infrastructure: a throwaway PostgreSQL server from Debian's packages, for the tests of
the PostgreSQL store (tests/contract, tests/postgres).

`running_postgres()` finds the server's programs (`/usr/lib/postgresql/*/bin`, the newest
version), runs `initdb` into a fresh temporary directory and starts `postgres` on a free
127.0.0.1 port (its unix socket stays inside that directory), with password authentication
and durability turned off (fsync, synchronous commit): the tests want speed, not crash safety.
It stops the server and removes the directory afterwards.

PostgreSQL refuses to run as root. As root (CI), the directory is given to the `postgres`
user (Debian's package creates it; else `nobody`) and the programs run as that user through
`runuser`; as anyone else they run as the caller.

`PostgresServer.create_database()` makes a fresh, empty database and returns its
`postgresql://` URL: each test gets its own.

Run `python -m tests.infra.postgres_env` to keep a server up until Ctrl-C.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SUPERUSER = "reconciler"
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

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database`, ending its connections."""
        name = url.rsplit("/", 1)[1]
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_server_user(user: str | None, argv: Sequence[str]) -> list[str]:
    if user is None:
        return list(argv)
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    if os.access(runuser, os.X_OK):
        return [runuser, "-u", user, "--", *argv]
    return ["su", user, "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in argv)]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _run(user: str | None, argv: Sequence[str], what: str, timeout: float = 120) -> None:
    done = subprocess.run(
        _as_server_user(user, argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        cwd="/",
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
    data = directory / "data"
    password = f"pw-{secrets.token_hex(8)}"
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
                str(data),
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
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            _run(
                user,
                [str(bindir / "pg_ctl"), "--pgdata", str(data), "--mode", "immediate", "stop"],
                "pg_ctl stop",
                timeout=30,
            )
        shutil.rmtree(directory, ignore_errors=True)


def _start(bindir: Path, user: str | None, directory: Path, password: str) -> PostgresServer:
    """pg_ctl start on a free port; a port taken between choosing and binding is tried again."""
    failure: PostgresUnavailable | None = None
    for _ in range(3):
        port = _free_port()
        settings = {**SERVER_SETTINGS, "port": str(port), "unix_socket_directories": str(directory)}
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        try:
            _run(
                user,
                [
                    str(bindir / "pg_ctl"),
                    "--pgdata",
                    str(directory / "data"),
                    "--log",
                    str(directory / "server.log"),
                    "--options",
                    options,
                    "--wait",
                    "--timeout",
                    str(START_TIMEOUT_S),
                    "start",
                ],
                "pg_ctl start",
                timeout=START_TIMEOUT_S + 10,
            )
        except PostgresUnavailable as exc:
            log = directory / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            failure = PostgresUnavailable(f"{exc}\n{tail}")
            continue
        return PostgresServer(bindir, directory, port, password, user)
    assert failure is not None
    raise failure


def main() -> None:
    with running_postgres() as server:
        print(f"PostgreSQL {server.bindir.parent.name} on {server.url('postgres')}", flush=True)
        print("Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    sys.exit(main())
