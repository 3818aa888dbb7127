"""Fixtures for the step tests: steps read from YAML text (so errors have real file:line), a
step context that records what a user would see, and a `git daemon` on 127.0.0.1 (from
`tests/infra/git_servers.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.masking import Masker
from reconciler.prefect_rules.yamlload import LoadedDocument, load_yaml
from reconciler.steps.context import StepContext
from reconciler.steps.runner import TemplateValues, run_steps
from reconciler.steps.spec import PlacedStep, step_from_mapping
from tests.conftest import GIT_ENV
from tests.infra.git_servers import GitDaemon as GitServer
from tests.infra.git_servers import running_git_daemon


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


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """One daemon per test module; each test publishes what it changes under its own name."""
    with running_git_daemon(tmp_path_factory.mktemp("served")) as daemon:
        yield daemon


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
