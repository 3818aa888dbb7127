"""Fixtures for the step tests: steps read from YAML text (so errors have real file:line), a
step context that records what a user would see, and a `git daemon` on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.masking import Masker
from reconciler.spec.prefect_file import PlacedStep
from reconciler.spec.steps import step_from_mapping
from reconciler.spec.yamlload import LoadedDocument, load_yaml
from reconciler.steps.context import StepContext
from reconciler.steps.runner import TemplateValues, run_steps
from tests.conftest import GIT_ENV


def load_steps(text: str, section: str = "build") -> tuple[list[PlacedStep], LoadedDocument]:
    """The steps of `section` in a prefect.yaml written as `text`, with their YAML paths."""
    document = load_yaml(textwrap.dedent(text).encode(), "prefect.yaml")
    steps = [
        PlacedStep(step_from_mapping(item), (section, index))
        for index, item in enumerate(document.data[section])
    ]
    return steps, document


def line_of(text: str, needle: str) -> int:
    """The 1-based line of `text` (as load_steps reads it) where `needle` first appears."""
    lines = textwrap.dedent(text).splitlines()
    return next(number for number, line in enumerate(lines, 1) if needle in line)


@dataclass
class Steps:
    """Runs YAML steps in a context rooted at `cwd`, recording every line written."""

    cwd: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    context: StepContext | None = None

    def make_context(self, secrets: tuple[str, ...] = (), quiet: bool = False) -> StepContext:
        self.context = StepContext(
            cwd=self.cwd,
            env=self.env,
            masker=Masker(secrets),
            write=self.lines.append,
            quiet=quiet,
        )
        return self.context

    def run(
        self,
        text: str,
        *,
        values: TemplateValues | None = None,
        secrets: tuple[str, ...] = (),
        quiet: bool = False,
        allow_install: bool = False,
        outputs: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        steps, document = load_steps(text)
        context = self.make_context(secrets, quiet)
        return run_steps(
            steps,
            document,
            context,
            values=values,
            outputs=outputs,
            allow_install=allow_install,
        )

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def steps(tmp_path: Path) -> Steps:
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", **GIT_ENV}
    return Steps(cwd=work, env=env)


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@dataclass
class GitServer:
    """A `git daemon` serving the bare repositories under `base` as git://127.0.0.1:port/."""

    base: Path
    url: str

    def publish(self, source: Path, name: str) -> str:
        """Serve a bare copy of the repository at `source` as `name`; returns its URL."""
        target = self.base / name
        git("clone", "-q", "--bare", str(source), str(target))
        git("config", "uploadpack.allowFilter", "true", cwd=target)
        return f"{self.url}/{name}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"git daemon exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"git daemon did not listen on port {port}")


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """One daemon per test module; each test publishes what it changes under its own name."""
    base = tmp_path_factory.mktemp("served")
    port = _free_port()
    process = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--informative-errors",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={base}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_listening(port, process)
        yield GitServer(base, f"git://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def write_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], None]]:
    """`write_module(name, source)`: a Python module importable for the rest of the test."""
    directory = tmp_path / "modules"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    names: list[str] = []

    def write(name: str, source: str) -> None:
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)

    yield write
    for name in names:
        sys.modules.pop(name, None)
