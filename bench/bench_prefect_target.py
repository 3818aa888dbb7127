"""Benchmark of the Prefect target (issue 16, Performance), side by side in one run against one
local `prefect server` (Prefect from the test extra, tests/infra/prefect_server.py):

- reconciler: `reconcile --store prefect+http://.../api` applying N new deployments (one
  prefect.yaml, one work pool) into the server, as a subprocess, end to end;
- Prefect: `prefect --no-prompt deploy --all` of a sample of the same shape (another flow and
  pool), timed and extrapolated per deployment to N (it redeploys one by one: ~0.3 s each);
- the Prefect server's own CPU time while reconcile applied (read from /proc): the server
  does ~25-30 ms of work per deployment it creates, so this is the floor of any apply;
- a no-op plan: `reconcile --dry-run` of the N applied deployments (best of 3), and the same
  plan again with `reconcile` (an apply that finds "No changes.").

    .venv/bin/python bench/bench_prefect_target.py [--deployments 500] [--prefect-sample N]

`--prefect-sample` (default: all N) times `prefect deploy --all` on fewer deployments and
extrapolates, for a quicker run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import GIT_ENV, machine  # noqa: E402
from tests.infra.prefect_server import (  # noqa: E402
    PrefectServer,
    prefect_executable,
    running_prefect_server,
)

FLOW = """\
from prefect import flow


@flow
def {name}(region: str = "emea", days: int = 1) -> int:
    return days
"""


def write_project(root: Path, flow: str, pool: str, count: int, pools_file: bool) -> None:
    (root / "flows").mkdir(parents=True)
    (root / "flows" / f"{flow}.py").write_text(FLOW.format(name=flow))
    lines = [
        f"name: bench-{flow}",
        "prefect-version: 3.9.1",
        "pull:",
        "  - prefect.deployments.steps.set_working_directory:",
        "      directory: /opt/flows",
        "deployments:",
    ]
    for index in range(count):
        lines += [
            f"  - name: d{index:04d}",
            f"    entrypoint: flows/{flow}.py:{flow}",
            f"    parameters: {{region: r{index % 7}, days: {index % 30 + 1}}}",
            f"    tags: [bench, t{index % 5}]",
            f"    schedules: [{{cron: '{index % 60} 2 * * *', timezone: UTC}}]",
            "    work_pool:",
            f"      name: {pool}",
        ]
    (root / "prefect.yaml").write_text("\n".join(lines) + "\n")
    if pools_file:
        (root / "work-pools.yaml").write_text(f"work_pools:\n  - name: {pool}\n    type: process\n")
    env = {**os.environ, **GIT_ENV}
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *argv], cwd=root, env=env, check=True)


def timed(argv: list[str], cwd: Path, env: Mapping[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[:3000]}")
    return elapsed, done.stdout


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reconcile_argv(root: Path, server: PrefectServer, *extra: str) -> list[str]:
    store = f"prefect+{server.api_url}"
    return [sys.executable, "-m", "reconciler", "apply", str(root), "--store", store, *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--prefect-sample", type=int, default=0, help="default: all")
    args = parser.parse_args()
    n, sample = args.deployments, args.prefect_sample or args.deployments
    print(machine())
    with (
        tempfile.TemporaryDirectory(prefix="bench-prefect-target-") as scratch,
        running_prefect_server() as server,
    ):
        env = {**server.env(), "NO_COLOR": "1"}
        ours = Path(scratch) / "ours"
        write_project(ours, "bench_ours", "bench-ours", n, pools_file=True)
        cpu_before = process_cpu_seconds(server.pid)
        applied, out = timed(reconcile_argv(ours, server, "-q"), ours, env)
        server_cpu = process_cpu_seconds(server.pid) - cpu_before
        assert f"{n + 2} added" in out, out[-500:]  # the pool, its default queue, N deployments
        noops = []
        for _ in range(3):
            elapsed, out = timed(reconcile_argv(ours, server, "--dry-run"), ours, env)
            assert "No changes." in out, out[-2000:]
            noops.append(elapsed)
        again, out = timed(reconcile_argv(ours, server), ours, env)
        assert "No changes." in out

        theirs = Path(scratch) / "theirs"
        write_project(theirs, "bench_theirs", "bench-theirs", sample, pools_file=False)
        server.request("POST", "/work_pools/", {"name": "bench-theirs", "type": "process"})
        deployed, _ = timed(
            [str(prefect_executable()), "--no-prompt", "deploy", "--all"], theirs, env
        )
    per = deployed / sample
    projected = per * n
    print(f"reconcile (prefect target): apply {n} new deployments   {applied:8.2f} s")
    print(
        f"  of which the Prefect server's own CPU time   {server_cpu:8.2f} s "
        f"({server_cpu / n * 1000:.0f} ms per deployment created: the floor of any apply)"
    )
    extrapolated = f"; {n} projected: {projected:.1f} s" if sample != n else ""
    print(
        f"prefect deploy --all: {sample} deployments {deployed:8.2f} s "
        f"({per:.3f} s each{extrapolated})"
    )
    print(f"speed-up (prefect / reconcile)                   {projected / applied:8.1f}x")
    print(
        f"  the most this server allows (prefect / the server's CPU for the apply) "
        f"{projected / server_cpu:.1f}x"
    )
    print(
        f"no-op plan of {n} (reconcile --dry-run, CLI)      best {min(noops):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in noops)})"
    )
    print(f"no-op apply of {n} (reconcile, 'No changes.')    {again:8.2f} s")


if __name__ == "__main__":
    main()
