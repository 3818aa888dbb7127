"""The daemon as users run it: a real `reconcile daemon` subprocess, real repositories, a real
HTTP client. `start_daemon(config)` writes the config, starts the process, waits until it
listens, and stops it (SIGTERM, then SIGKILL) at teardown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import GIT_ENV

LISTENING = re.compile(r"listening on (http://[0-9.]+:[0-9]+)")


@dataclass
class HttpAnswer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class DaemonProcess:
    process: subprocess.Popen[str]
    log_path: Path
    store_url: str
    url: str = ""
    _stopped: bool = field(default=False)

    def log(self) -> str:
        return self.log_path.read_text()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> HttpAnswer:
        call = urllib.request.Request(
            self.url + path, data=body if method == "POST" else None, method=method
        )
        for name, value in (headers or {}).items():
            call.add_header(name, value)
        try:
            with urllib.request.urlopen(call, timeout=10) as answer:
                return HttpAnswer(answer.status, answer.read())
        except urllib.error.HTTPError as error:
            return HttpAnswer(error.code, error.read())

    def statuses(self) -> dict[str, dict[str, Any]]:
        answer = self.request("GET", "/status")
        assert answer.status == 200, answer
        return {s["name"]: s for s in answer.json()["repositories"]}

    def wait_for(
        self, check: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 20.0
    ) -> dict[str, dict[str, Any]]:
        """Poll /status until `check` holds; fail with the last status and the log."""
        deadline = time.monotonic() + timeout
        seen: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the daemon exited:\n{self.log()}"
            seen = self.statuses()
            if check(seen):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"timed out; last status:\n{json.dumps(seen, indent=2)}\n{self.log()}")

    def wait_for_log(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.log()}")

    def terminate(self, timeout: float = 15.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    started: list[DaemonProcess] = []
    counter = iter(range(1000))

    def start(
        config: dict[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        wait: bool = True,
    ) -> DaemonProcess:
        number = next(counter)
        config = {
            "store": f"sqlite:///{tmp_path / 'state.db'}",
            "listen": "127.0.0.1:0",
            "cache_dir": str(tmp_path / "cache"),
            **config,
        }
        config_path = tmp_path / f"daemon-{number}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_path = tmp_path / f"daemon-{number}.log"
        full_env = {**os.environ, **GIT_ENV, **(env or {})}
        full_env.pop("RECONCILER_STORE", None)
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "daemon", "--config", str(config_path), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                text=True,
                cwd=tmp_path,
            )
        daemon = DaemonProcess(process, log_path, config["store"])
        started.append(daemon)
        if wait:
            daemon.url = daemon.wait_for_log(LISTENING.pattern).group(1)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(timeout=10)
