"""The soak's processes (bench/soak): one `reconcile daemon` and 3 `reconcile worker start`,
each restartable under the same name after a kill -9, and the search for orphans.

Every process started here carries `SOAK_MARK=<token>` in its environment, and so does every
process they start (flows, run supervisors, git): after the soak, a process still holding the
token is an orphan. The processes are started from the thread that calls `start` (the main
thread of the soak): nothing here depends on that thread, but PostgreSQL's restart does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.common import GIT_ENV
from bench.soak.project import POOL

LISTENING = re.compile(r"listening on http://[0-9.]+:[0-9]+")
STOP_TIMEOUT_S = 60.0


@dataclass
class Member:
    """One daemon or worker: its command, its log, its current process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd
            )
        self.starts += 1

    def kill(self) -> None:
        """kill -9: no handler runs, nothing is cleaned up."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)
        self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM and wait: the exit code (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Fleet:
    daemon: Member
    workers: list[Member]
    token: str
    exits: dict[str, list[int | None]] = field(default_factory=dict)

    @property
    def members(self) -> list[Member]:
        return [self.daemon, *self.workers]

    def start(self) -> None:
        for member in self.members:
            member.start()

    def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not LISTENING.search(self.daemon.log_path.read_text(errors="replace")):
            if time.monotonic() > deadline or not self.daemon.alive():
                raise SystemExit(
                    "the soak's daemon did not start; its log:\n"
                    + self.daemon.log_path.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Workers first (their runs in progress end CRASHED), then the daemon."""
        for member in [*self.workers, self.daemon]:
            self.exits.setdefault(member.name, []).append(member.stop())

    def kills(self) -> int:
        return sum(member.kills for member in self.members)


def make_fleet(root: Path, repo: Path, store_url: str, token: str, marks: Path) -> Fleet:
    env = {
        **os.environ,
        **GIT_ENV,
        "SOAK_MARK": token,
        "SOAK_MARKS": str(marks),
        "PYTHONUNBUFFERED": "1",
        # No flow here imports Prefect; should one, it must never start a server of its own.
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
    }
    env.pop("RECONCILER_STORE", None)
    config = {
        "store": store_url,
        "listen": "127.0.0.1:0",
        "cache_dir": str(root / "cache"),
        "drift_interval": "30s",
        "repositories": [{"name": "soak", "path": str(repo)}],
        "scheduler": {"interval": "5s", "min_time": "1m"},
    }
    config_path = root / "daemon.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    python = [sys.executable, "-m", "reconciler"]
    daemon = Member(
        "daemon",
        [*python, "daemon", "--config", str(config_path)],
        env,
        root,
        root / "daemon.log",
    )
    workers = [
        Member(
            f"soak-w{number}",
            [
                *python,
                "worker",
                "start",
                "--pool",
                POOL,
                "--store",
                store_url,
                "--name",
                f"soak-w{number}",
                "--limit",
                "4",
                "--work-dir",
                str(root / "runs"),
            ],
            env,
            repo,
            root / f"worker-{number}.log",
        )
        for number in (1, 2, 3)
    ]
    return Fleet(daemon, workers, token)


def marked_processes(token: str) -> list[tuple[int, str]]:
    """Live processes whose environment holds SOAK_MARK=token: (pid, command line)."""
    needle = f"SOAK_MARK={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append((int(entry), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


def kill_marked(token: str) -> None:
    """Clean up after a failed soak: SIGKILL whatever still holds the token."""
    for pid, _ in marked_processes(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
