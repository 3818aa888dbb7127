"""The soak's repository (bench/soak): plain-function flows, a pool, and the deployments the
driver changes by committing (a parameter changed, a deployment added or removed).

The flow appends one line per execution to the file named by `SOAK_MARKS`: the run's id, a
fresh uuid4 (one per process that executed the run), the time it started, its pid. Two lines
with one run id mean that run was executed twice.
"""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.common import GIT_ENV

POOL = "soak"
FLOW = '''\
"""A soak flow: says it ran, sleeps 0-2 s."""

import os
import random
import time
import uuid


def work(n: int = 0, label: str = "first") -> int:
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID", "?")
    mark = f"{run_id} {uuid.uuid4().hex} {time.time():.6f} {os.getpid()}\\n"
    fd = os.open(os.environ["SOAK_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, mark.encode())  # one write of a short line: never interleaved
    finally:
        os.close(fd)
    print(f"run {run_id} n={n} label={label}", flush=True)
    time.sleep(random.uniform(0, 2))
    print("done", flush=True)
    return n
'''
WORK_POOLS = f"work_pools:\n  - name: {POOL}\n    type: process\n"
MANUAL = ("manual-a", "manual-b")
"""Deployments that are never removed: the driver's runs go to these."""
SCHEDULED = {"every-10s": 10, "every-15s": 15}
"""Deployments with an interval schedule (seconds), never removed either."""


@dataclass
class Deployment:
    name: str
    interval: int | None = None
    label: str = "first"

    def to_yaml(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "name": self.name,
            "entrypoint": "flows/soak.py:work",
            "parameters": {"label": self.label},
            "work_pool": {"name": POOL},
            "pull": [],
        }
        if self.interval is not None:
            entry["schedules"] = [{"interval": self.interval}]
        return entry


@dataclass
class Project:
    """The repository, and every commit made to it in order."""

    path: Path
    deployments: dict[str, Deployment] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    extras: int = 0

    @classmethod
    def create(cls, path: Path) -> Project:
        project = cls(path)
        (path / "flows").mkdir(parents=True)
        (path / "flows" / "soak.py").write_text(FLOW)
        (path / "work-pools.yaml").write_text(WORK_POOLS)
        for name in MANUAL:
            project.deployments[name] = Deployment(name)
        for name, seconds in SCHEDULED.items():
            project.deployments[name] = Deployment(name, interval=seconds)
        project._git("init", "-q", "-b", "main")
        project.commit("the soak's first commit")
        return project

    @property
    def fixed(self) -> tuple[str, ...]:
        return (*MANUAL, *SCHEDULED)

    def keys(self) -> list[str]:
        """The deployments' store keys (FLOW/NAME): the flow is the function's name."""
        return [f"work/{name}" for name in self.deployments]

    def change(self, rng: random.Random) -> str:
        """One change, committed: a parameter, or an extra deployment added or removed."""
        extras = [name for name in self.deployments if name not in self.fixed]
        roll = rng.random()
        if roll < 0.5 or (roll < 0.75 and len(extras) >= 3):
            target = rng.choice(list(self.deployments))
            self.deployments[target].label = f"label-{len(self.commits)}"
            what = f"{target}: label changed"
        elif roll < 0.75 or not extras:
            self.extras += 1
            name = f"extra-{self.extras}"
            self.deployments[name] = Deployment(name, interval=rng.choice((None, 12)))
            what = f"{name} added"
        else:
            name = rng.choice(extras)
            del self.deployments[name]
            what = f"{name} removed"
        self.commit(what)
        return what

    def commit(self, message: str) -> str:
        document = {"deployments": [d.to_yaml() for d in self.deployments.values()]}
        (self.path / "prefect.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        self._git("add", "-A")
        self._git("commit", "-qm", message)
        sha = self._git("rev-parse", "HEAD")
        self.commits.append(sha)
        return sha

    def _git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **GIT_ENV},
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()
