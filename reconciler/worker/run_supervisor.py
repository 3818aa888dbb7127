"""The top process of a run: it outlives the flow and stops every process the flow started
(worker: inside the run's process, between the backend and the flow).

    python -I -S /path/run_supervisor.py COMMAND [ARG...]     (what the process backend starts)
    supervise_this_process()                                  (a forked child, e.g. a forkserver's)

`supervise_this_process()` makes the calling process a child subreaper (Linux
`PR_SET_CHILD_SUBREAPER`) and forks: the child returns and becomes the flow; the parent never
returns. Every process the flow starts stays below the parent, whatever session or process
group it moves to and however often it forks (an orphan is re-parented to the nearest
subreaper, not to init). When the flow's process exits, the parent SIGTERMs what is left,
SIGKILLs it after `RECONCILER_STRAY_GRACE_SECONDS` (default 1), reaps it all, and exits the
way the flow did (same exit code, or killed by the same signal). It never waits for output
pipes: once every holder is dead they close.

Signals the parent handles (the worker sends them):
- SIGTERM (the worker's cancel, to the session): passed on to the processes that left the
  session's process group (the others received it already); SIGKILL for all of them after
  `RECONCILER_STOP_GRACE_SECONDS` (default 30) if the worker does not decide first.
- SIGUSR1: SIGKILL every process below, now (the worker's grace is over).
- The worker's death: `PR_SET_PDEATHSIG` delivers SIGTERM, handled as above.

This file imports nothing from reconciler (only the standard library, and few modules, so
that `python -I -S` starts it in a few milliseconds).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STRAY_GRACE_VARIABLE = "RECONCILER_STRAY_GRACE_SECONDS"
STOP_GRACE_VARIABLE = "RECONCILER_STOP_GRACE_SECONDS"
EXIT_CANNOT_START = 127


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # not Linux: no subreaper, the process group still helps
        return False


def _seconds(variable: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(variable, default)))
    except ValueError:
        return default


def descendants(root: int) -> list[int]:
    """Every live process below `root` (read from /proc), parents before their children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop(0)
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _signal_all(signum: int, *, outside_group_only: bool = False) -> None:
    group = os.getpgrp()
    for pid in descendants(os.getpid()):
        try:
            if outside_group_only and os.getpgid(pid) == group:
                continue
            os.kill(pid, signum)
        except OSError:  # already gone
            continue


def _reap_ready() -> bool:
    """Reap the children that ended; False when no child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def stop_everything_below(grace: float) -> None:
    """SIGTERM every process below this one, SIGKILL them after `grace`, reap them all."""
    if grace > 0:
        _signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _reap_ready() and time.monotonic() < deadline:
            time.sleep(0.01)
    while _reap_ready():
        _signal_all(signal.SIGKILL)
        time.sleep(0.005)


def supervise_this_process() -> None:
    """Fork: the child returns (and runs the flow); this process supervises it and exits as
    it did, after stopping everything the flow left. See the module docstring."""
    worker = os.getppid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    flow = os.fork()
    if flow == 0:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the supervisor killed: the flow goes too
        if os.getppid() == 1:
            os._exit(EXIT_CANNOT_START)
        return
    stop_grace = _seconds(STOP_GRACE_VARIABLE, 30.0)

    def on_term(signum: int, frame: object) -> None:
        # Those in our process group got the signal with us, unless the worker died.
        _signal_all(signal.SIGTERM, outside_group_only=os.getppid() == worker)
        signal.alarm(max(1, int(stop_grace + 0.999)))

    def kill_now(signum: int, frame: object) -> None:
        _signal_all(signal.SIGKILL)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR1, kill_now)
    signal.signal(signal.SIGALRM, kill_now)
    if os.getppid() != worker:  # the worker died before PR_SET_PDEATHSIG was in place
        on_term(signal.SIGTERM, None)
    status = _wait_for(flow)
    stop_everything_below(_seconds(STRAY_GRACE_VARIABLE, 1.0))
    _exit_like(status)


def _wait_for(flow: int) -> int:
    """Reap orphans as they come until the flow's own process ends; its wait status."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:  # cannot happen while the flow runs; be safe
            return 0
        if pid == flow:
            return status


def _exit_like(status: int) -> None:
    sys.stdout.flush()
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        signal.alarm(0)
        if signum != signal.SIGKILL and signum != signal.SIGSTOP:
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
        time.sleep(1)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> None:
    if not argv:
        print("usage: run_supervisor COMMAND [ARG...]", file=sys.stderr)
        os._exit(EXIT_CANNOT_START)
    supervise_this_process()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"cannot start {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        os._exit(EXIT_CANNOT_START)


if __name__ == "__main__":
    main(sys.argv[1:])
