"""Benchmark of the worker (issue 5): pickup latency and throughput of flow runs.

- Pickup latency: from just before a run is created (`create_run` returns in a few ms) to the
  first line the flow prints (its own `time.time()`), p50 and p95 over 50 runs taken one at a
  time by one worker with default settings. Baseline in the same run: starting the flow runner
  by hand on the same flow (interpreter start + import + call), the floor of any worker that
  runs each flow in a fresh process.
- Throughput: 200 trivial runs created at once, drained by 1 worker and by 4 workers (each with
  --limit 8), in runs per second.

    .venv/bin/python bench/bench_worker.py [--runs 50] [--burst 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import GIT_ENV, machine  # noqa: E402
from reconciler.engine.stages import ReconcileRequest, reconcile  # noqa: E402
from reconciler.model.runs import RunState  # noqa: E402
from reconciler.settings import Settings  # noqa: E402
from reconciler.store import open_store  # noqa: E402
from reconciler.worker.create_run import create_run  # noqa: E402

FLOW = """\
import time


def first_line(n: int = 0) -> int:
    print(f"FIRST {time.time():.6f}", flush=True)
    return n
"""
FILES = {
    "flows/bench.py": FLOW,
    "work-pools.yaml": "work_pools:\n  - {name: bench, type: process}\n",
    "prefect.yaml": textwrap.dedent(
        """\
        deployments:
          - name: first
            entrypoint: flows/bench.py:first_line
            work_pool: {name: bench}
            pull: []
        """
    ),
}
FINAL = {RunState.COMPLETED, RunState.FAILED, RunState.CRASHED, RunState.CANCELLED}


def make_project(root: Path) -> tuple[Path, str]:
    repo = root / "repo"
    for name, content in FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    store_url = f"sqlite:///{root / 'state.db'}"
    reconcile(
        ReconcileRequest(repositories=(str(repo),), settings=Settings(store_url=store_url)),
        environ={},
    )
    return repo, store_url


def start_worker(store_url: str, cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "worker",
            "start",
            "--pool",
            "bench",
            "--store",
            store_url,
            *args,
        ],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_final(store_url: str, run_ids: list[str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    store = open_store(store_url, readonly=True)
    try:
        pending = set(run_ids)
        while pending:
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(pending)} runs did not finish")
            pending = {r for r in pending if (run := store.get_run(r)) and run.state not in FINAL}
            if pending:
                time.sleep(0.01)
    finally:
        store.close()


def first_line_at(store_url: str, run_id: str) -> float:
    store = open_store(store_url, readonly=True)
    try:
        for line in store.run_logs(run_id):
            if line.line.startswith("FIRST "):
                return float(line.line.split()[1])
    finally:
        store.close()
    raise SystemExit(f"run {run_id} printed no first line")


def pickup(store_url: str, cwd: Path, runs: int) -> list[float]:
    worker = start_worker(store_url, cwd)
    try:
        time.sleep(2.0)  # started and idle, as a worker waiting for work is
        latencies = []
        for _ in range(runs):
            store = open_store(store_url)
            try:
                created_at = time.time()
                run = create_run(store, "first-line/first")
            finally:
                store.close()
            wait_final(store_url, [run.id])
            latencies.append(first_line_at(store_url, run.id) - created_at)
            time.sleep(0.3)  # the next run arrives at a random point of the poll interval
    finally:
        worker.terminate()
        worker.wait()
    return latencies


def baseline(repo: Path, runs: int) -> list[float]:
    times = []
    env = {**os.environ, "RECONCILER_FLOW_PARAMETERS": "{}"}
    for _ in range(runs):
        started = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "reconciler.worker.flow_runner", "flows/bench.py:first_line"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(done.stdout.split()[1]) - started)
    return times


def throughput(store_url: str, cwd: Path, workers: int, burst: int) -> float:
    store = open_store(store_url)
    try:
        ids = [create_run(store, "first-line/first", parameters={"n": i}).id for i in range(burst)]
    finally:
        store.close()
    started = time.monotonic()
    processes = [start_worker(store_url, cwd, "--limit", "8") for _ in range(workers)]
    try:
        wait_final(store_url, ids)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
    return burst / (time.monotonic() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    options = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as in any install
    print(f"machine: {machine()}\n")
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as scratch:
        root = Path(scratch)
        repo, store_url = make_project(root)
        base = baseline(repo, 10)
        latencies = pickup(store_url, repo, options.runs)
        one = throughput(store_url, repo, 1, options.burst)
        four = throughput(store_url, repo, 4, options.burst)
    print(f"Pickup: run created -> the flow's first line, {options.runs} runs, one idle worker")
    print("with default settings (--poll-interval 0.1)\n")
    print("| | p50 | p95 | max |")
    print("|---|---|---|---|")
    print(
        f"| baseline: the flow runner started by hand | {statistics.median(base):.3f} s | "
        f"{percentile(base, 0.95):.3f} s | {max(base):.3f} s |"
    )
    print(
        f"| worker pickup | {statistics.median(latencies):.3f} s | "
        f"{percentile(latencies, 0.95):.3f} s | {max(latencies):.3f} s |"
    )
    print(f"\nThroughput: {options.burst} trivial runs created at once\n")
    print("| workers | runs per second |")
    print("|---|---|")
    print(f"| 1 (--limit 8) | {one:.1f} |")
    print(f"| 4 (--limit 8 each) | {four:.1f} |")
    print(json.dumps({"p50": statistics.median(latencies), "p95": percentile(latencies, 0.95)}))


if __name__ == "__main__":
    main()
