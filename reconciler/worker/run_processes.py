"""Which processes are a run's, and stopping those a crashed run left (worker and daemon:
after a run is marked CRASHED).

A run of the process backend records its top process (reconciler/worker/run_supervisor.py)
as `pid 123 started 456789 on HOST`: the pid, its start time (field 22 of /proc/PID/stat,
clock ticks since boot) and the host name. A worker that restarts, or any worker or daemon
that marks a run CRASHED, stops what is left of it when the record names its own host and
the pid still has that start time: a pid reused by an unrelated process is never signalled.

Stopping: SIGUSR1 to the supervisor (it SIGKILLs everything below it, whatever session it
moved to, then exits), and SIGKILL to the processes still in the run's session (the
supervisor's pid is the session id: the kernel does not give that pid to a new process while
the session has members).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from reconciler.model.runs import FlowRun

log = logging.getLogger("reconciler.worker")
_IDENTITY = re.compile(r"^pid (\d+) started (\d+) on (\S+)$")


class RunReader(Protocol):
    def get_run(self, run_id: str) -> FlowRun | None: ...


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    started: int
    host: str

    def __str__(self) -> str:
        return f"pid {self.pid} started {self.started} on {self.host}"


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat after the command name: field 3 (state) is item 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), None when there is no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def identity_of(pid: int) -> ProcessIdentity:
    return ProcessIdentity(pid, start_time(pid) or 0, socket.gethostname())


def parse_identity(text: str | None) -> ProcessIdentity | None:
    match = _IDENTITY.match(text or "")
    if match is None:
        return None
    return ProcessIdentity(int(match[1]), int(match[2]), match[3])


def session_members(session: int, *, not_before: int) -> list[int]:
    """The processes of session `session` started at or after `not_before`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if (
            fields
            and len(fields) > 19
            and int(fields[3]) == session
            and int(fields[19]) >= not_before
        ):
            members.append(int(entry))
    return members


def stop_leftovers(identity: ProcessIdentity, *, wait_seconds: float = 5.0) -> bool:
    """Stop what is left of the run `identity` started; True when something was signalled.
    Nothing happens for another host, or when the pid now belongs to another process."""
    if identity.host != socket.gethostname() or identity.pid == os.getpid():
        return False
    now = start_time(identity.pid)
    if now is not None and now != identity.started:
        return False  # the pid was reused: not ours
    signalled = False
    if now is not None:
        with contextlib.suppress(OSError):
            os.kill(identity.pid, signal.SIGUSR1)
            signalled = True
        deadline = time.monotonic() + wait_seconds
        while start_time(identity.pid) == identity.started and time.monotonic() < deadline:
            time.sleep(0.02)
    for pid in session_members(identity.pid, not_before=identity.started):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            signalled = True
    return signalled


def crashed_run_processes(
    store: RunReader, run_ids: Iterable[str]
) -> list[tuple[str, ProcessIdentity]]:
    """The recorded processes of `run_ids` (those of the process backend)."""
    found = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        identity = parse_identity(run.infrastructure_id if run else None)
        if identity is not None:
            found.append((run_id, identity))
    return found


def stop_run_processes(processes: Iterable[tuple[str, ProcessIdentity]]) -> None:
    """Stop what is left of each (run id, process): only those on this host, still the same."""
    for run_id, identity in processes:
        if stop_leftovers(identity):
            log.warning("flow run %s: stopped the processes it left (%s)", run_id, identity)


def stop_crashed_runs(store: RunReader, run_ids: Iterable[str]) -> None:
    """After `run_ids` were marked CRASHED: stop their processes that are on this host."""
    stop_run_processes(crashed_run_processes(store, run_ids))
