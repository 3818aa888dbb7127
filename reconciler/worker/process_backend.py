"""Worker backend `process`: each run is a subprocess on this machine (worker: execute).

The command runs below a supervisor (reconciler/worker/run_supervisor.py), in a session of its
own: when the flow's process ends, the supervisor stops every process the flow started,
whatever session it moved to, and exits as the flow did. A cancellation: SIGTERM to the
session's group (the supervisor passes it on to those that left the group), then, after the
grace period, SIGUSR1 to the supervisor (SIGKILL for everything below it), then SIGKILL to
the group if the supervisor is still there. The run is recorded as `pid P started T on HOST`
(reconciler/worker/run_processes.py), so that what a crashed worker left can be stopped.
Output is read line by line from both pipes and handed to `on_line(stream, line)` as it comes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from reconciler.worker import run_supervisor
from reconciler.worker.run_processes import ProcessIdentity, identity_of

LineSink = Callable[[str, str], None]
SUPERVISOR_PATH = str(Path(run_supervisor.__file__))
SUPERVISOR_KILL_SECONDS = 5.0
"""How long the supervisor has to kill what is below it before the group is SIGKILLed."""


class StartError(Exception):
    """The infrastructure could not be started (the run is CRASHED, with this reason)."""


@dataclass
class ProcessHandle:
    process: subprocess.Popen[bytes]
    identity: ProcessIdentity
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def infrastructure_id(self) -> str:
        return str(self.identity)

    def wait(self) -> int:
        code = self.process.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        return code

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM the session's group; when it outlives `grace_seconds`, the supervisor
        SIGKILLs everything below it; the group is SIGKILLed if that did not end it."""
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGUSR1)
        try:
            self.process.wait(timeout=SUPERVISOR_KILL_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)


def start_process(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: LineSink,
    stop_grace_seconds: float = 30.0,
) -> ProcessHandle:
    """Start `command` below a run supervisor; StartError when it cannot be run at all."""
    program = _find_program(command[0], cwd, env)
    supervised = [sys.executable, "-I", "-S", SUPERVISOR_PATH, program, *command[1:]]
    environment = {**env, run_supervisor.STOP_GRACE_VARIABLE: str(stop_grace_seconds)}
    try:
        process = subprocess.Popen(
            supervised,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise StartError(f"cannot start {command[0]!r}: {exc.strerror or exc}") from exc
    handle = ProcessHandle(process, identity_of(process.pid))
    for stream, pipe in (("stdout", process.stdout), ("stderr", process.stderr)):
        assert pipe is not None
        reader = threading.Thread(target=pump_lines, args=(pipe, stream, on_line), daemon=True)
        reader.start()
        handle.readers.append(reader)
    return handle


def _find_program(program: str, cwd: Path, env: Mapping[str, str]) -> str:
    """`program` as the supervisor will exec it: a path, or found on the job's PATH."""
    if os.sep in program:
        path = Path(cwd, program)
        if not os.access(path, os.X_OK) or path.is_dir():
            raise StartError(f"cannot start {program!r}: no such executable file in {cwd}")
        return str(path)
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise StartError(f"cannot start {program!r}: it is not on the job's PATH")
    return found


def pump_lines(pipe: IO[bytes], stream: str, on_line: LineSink) -> None:
    """Hand each line of `pipe` to `on_line(stream, line)` until it ends (then close it)."""
    with pipe:
        for raw in iter(pipe.readline, b""):
            on_line(stream, raw.decode("utf-8", errors="replace").rstrip("\r\n"))


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
