"""Run one child process for a step, streaming its stdout and stderr line by line.

Steps run during apply, after the plan, never during a dry-run. A command is a list of
arguments run without a shell; only a step that asks for a shell (`run_shell_script` with
`shell: true`) passes a string, which `/bin/sh -c` runs.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from reconciler.steps.context import StepContext, StepError
from reconciler.steps.output import StepOutput


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int
    stdout: str
    stderr: str


def run_process(
    command: Sequence[str] | str,
    *,
    context: StepContext,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    show: bool = True,
) -> ProcessResult:
    """Run `command` in `cwd` (default: the context's) with `env` (default: the context's).

    Every line goes to the step's output (shown when `show`, always kept for errors). A
    program that cannot be started raises StepError; a non-zero exit is returned, not raised.
    """
    directory = cwd or context.cwd
    if not directory.is_dir():
        raise StepError(f"the directory {str(directory)!r} does not exist")
    if show:
        context.output.note(f"$ {_display(command)}")
    try:
        process = subprocess.Popen(
            command,
            shell=isinstance(command, str),
            cwd=directory,
            env=dict(env if env is not None else context.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise StepError(
            f"cannot run {_program(command)!r}: {exc.strerror or exc}",
            hint="check that the program is installed and on the PATH of the step's environment",
        ) from exc
    stdout, stderr = _stream(process, context.output, show)
    return ProcessResult(process.wait(), stdout, stderr)


def _stream(process: subprocess.Popen[str], output: StepOutput, show: bool) -> tuple[str, str]:
    """Read both pipes at once (one thread each), so neither can fill up and block the child."""
    assert process.stdout is not None and process.stderr is not None
    captured: dict[str, list[str]] = {"stdout": [], "stderr": []}
    readers = [
        threading.Thread(target=_read, args=(pipe, captured[name], output, show), daemon=True)
        for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr))
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    return "".join(captured["stdout"]), "".join(captured["stderr"])


def _read(pipe: IO[str], into: list[str], output: StepOutput, show: bool) -> None:
    with pipe:
        for line in pipe:
            into.append(line)
            output.line(line.rstrip("\r\n"), show=show)


def _display(command: Sequence[str] | str) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def _program(command: Sequence[str] | str) -> str:
    return command if isinstance(command, str) else command[0]
