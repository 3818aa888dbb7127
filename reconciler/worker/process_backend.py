"""Worker backend `process`: each run is a subprocess on this machine (worker: execute).

The child runs in its own session (process group), so a cancellation stops the flow and
everything it started: SIGTERM to the group, then SIGKILL after the grace period. Output is
read line by line from both pipes and handed to `on_line(stream, line)` as it comes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LineSink = Callable[[str, str], None]


class StartError(Exception):
    """The infrastructure could not be started (the run is CRASHED, with this reason)."""


@dataclass
class ProcessHandle:
    process: subprocess.Popen[bytes]
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def infrastructure_id(self) -> str:
        return f"pid {self.process.pid}"

    def wait(self) -> int:
        code = self.process.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        return code

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM the process group, then SIGKILL when it outlives `grace_seconds`."""
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)


def start_process(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: LineSink,
) -> ProcessHandle:
    try:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise StartError(f"cannot start {command[0]!r}: {exc.strerror or exc}") from exc
    handle = ProcessHandle(process)
    for stream, pipe in (("stdout", process.stdout), ("stderr", process.stderr)):
        assert pipe is not None
        reader = threading.Thread(target=pump_lines, args=(pipe, stream, on_line), daemon=True)
        reader.start()
        handle.readers.append(reader)
    return handle


def pump_lines(pipe: IO[bytes], stream: str, on_line: LineSink) -> None:
    """Hand each line of `pipe` to `on_line(stream, line)` until it ends (then close it)."""
    with pipe:
        for raw in iter(pipe.readline, b""):
            on_line(stream, raw.decode("utf-8", errors="replace").rstrip("\r\n"))


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
