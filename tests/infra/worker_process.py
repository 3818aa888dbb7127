"""Test infrastructure, outside the pipeline: `reconcile worker start` as a real subprocess,
as a user starts it, and polling for what it does.

`worker_command(pool, store_url, *options)` is its argv; `start_worker(...)` starts it in the
background (its output to a file, or nowhere) and `stop_worker(process)` stops it as a service
manager does (SIGTERM, then wait); `run_worker(...)` runs it to its end (`--run-once`) and
returns what it printed. `wait_for(condition, what)` polls until a condition holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GIT_ENV, CliResult

WORKER_TIMEOUT_SECONDS = 120


def worker_command(pool: str, store_url: str, *options: str) -> list[str]:
    return [
        *(sys.executable, "-m", "reconciler", "worker", "start"),
        *("--pool", pool, "--store", store_url, *options),
    ]


def worker_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment with git's test settings, colours off, and `env` on top."""
    return {**os.environ, **GIT_ENV, "NO_COLOR": "1", **(env or {})}


def start_worker(
    pool: str,
    store_url: str,
    *options: str,
    cwd: Path,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """The worker in the background; its output goes to `log` (stdout and stderr), or nowhere."""
    argv = worker_command(pool, store_url, *options)
    if log is None:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=worker_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    with log.open("w") as out:  # the child keeps its own descriptor; ours is closed at once
        return subprocess.Popen(
            argv, cwd=cwd, env=worker_env(env), stdout=out, stderr=subprocess.STDOUT, text=True
        )


def run_worker(
    pool: str,
    store_url: str,
    *options: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> CliResult:
    """The worker run to its end (give `--run-once`); what it printed and its exit code."""
    done = subprocess.run(
        worker_command(pool, store_url, *options),
        cwd=cwd,
        env=worker_env(env),
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_SECONDS,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def stop_worker(process: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM (the worker crashes what it still runs and exits 0), then its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll `condition` every 0.1 s until it is true; fail the test, naming `what`, after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
