"""Shared fixtures: real git repositories in temporary directories, real SQLite stores, and
the CLI run as a subprocess (the way users run it)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

# Session fixtures for a real Docker engine (docker_client, base_image, reconciler_image,
# prefect_image, registry, auth_registry) and a real Prefect server (prefect_server).
pytest_plugins = ["tests.infra.fixtures"]

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@reconciler.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@reconciler.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class GitRepo:
    """A real git repository on disk; `write` then `commit` like a user would."""

    path: Path

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV, "HOME": str(self.path.parent)}
        done = subprocess.run(
            ["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def write(self, files: Mapping[str, str | bytes]) -> None:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(textwrap.dedent(content))

    def remove(self, *names: str) -> None:
        for name in names:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()

    def commit(
        self, files: Mapping[str, str | bytes] | None = None, message: str = "change"
    ) -> str:
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., GitRepo]:
    """`make_repo(files, name="repo")`: a new repository with one commit of `files`."""

    def make(files: Mapping[str, str | bytes] | None = None, name: str = "repo") -> GitRepo:
        path = tmp_path / name
        path.mkdir(parents=True)
        repo = GitRepo(path)
        repo.git("init", "-q", "-b", "main")
        if files is not None:
            repo.commit(files, "initial")
        return repo

    return make


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., CliResult]:
    """Run `reconcile ARGS` as a subprocess in `cwd` (default: the temp dir)."""

    def run(
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> CliResult:
        full_env = {**os.environ, **GIT_ENV, "NO_COLOR": "1", **(env or {})}
        if "RECONCILER_STORE" not in (env or {}):
            full_env.pop("RECONCILER_STORE", None)
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=cwd or tmp_path,
            env=full_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    return run


def store_dump(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of a SQLite store (empty when there is no file): compare two
    dumps to prove a command changed nothing."""
    path = url.removeprefix("sqlite:///")
    if not os.path.exists(path):
        return {}
    conn = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


@pytest.fixture
def dump_store() -> Callable[[str], dict[str, list[tuple[object, ...]]]]:
    return store_dump


@pytest.fixture(scope="session", autouse=True)
def _no_temporary_prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test may start Prefect's temporary (ephemeral) server: every process the tests start
    inherits a PREFECT_HOME of the session's own and has ephemeral mode switched off, so a
    flow that finds no API fails fast; at the end, no Prefect database may exist there (the
    temporary server creates one when it starts)."""
    home = tmp_path_factory.mktemp("prefect-home")
    saved = {name: os.environ.get(name) for name in ("PREFECT_HOME", _EPHEMERAL)}
    os.environ["PREFECT_HOME"] = str(home)
    os.environ[_EPHEMERAL] = "false"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    databases = sorted(str(path) for path in home.rglob("*.db"))
    assert not databases, f"a temporary Prefect server started during the tests: {databases}"


_EPHEMERAL = "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"


@pytest.fixture(autouse=True)
def _no_store_from_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("RECONCILER_STORE", raising=False)
    yield
