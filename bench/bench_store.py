"""Benchmark of the store backends (issue 7): SQLite and PostgreSQL side by side.

- claim throughput: N processes (1, 4, 8) each claiming runs of one pool in batches of 10 and
  marking them COMPLETED at once (no flow runs: this measures the store's claim path), until
  4,000 runs are done; runs per second, and a check that no run was claimed twice;
- pickup latency: one `reconcile worker start` with default settings, 30 runs created one at a
  time, from creation to the flow's first line (PostgreSQL wakes the worker by NOTIFY);
- apply of 1,000 deployments (bench/generate.py) with the real CLI, first apply and no-op.

PostgreSQL comes from Debian's packages, started here on 127.0.0.1 (tests/infra/postgres_env.py);
without it, only SQLite is measured.

    .venv/bin/python bench/bench_store.py [--runs 4000] [--workers 1,4,8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import GIT_ENV, machine  # noqa: E402
from bench.generate import generate  # noqa: E402
from reconciler.model.resources import Kind, Resource  # noqa: E402
from reconciler.model.runs import NewRun, RunState  # noqa: E402
from reconciler.store import open_store  # noqa: E402

CLAIMER = textwrap.dedent(
    """
    import sys, time
    from reconciler.model.runs import RunState
    from reconciler.store import open_store
    url, name = sys.argv[1], sys.argv[2]
    store = open_store(url)
    done = []
    while True:
        runs = store.claim_runs("bench", name, limit=10, scheduled_before=time.time() + 60)
        for run in runs:
            store.set_run_state(run.id, RunState.COMPLETED)
            done.append(run.id)
        if not runs and not store.has_claimable_runs("bench", time.time() + 60):
            break
    print("\\n".join(done))
    """
)
FLOW = (
    "import time\n\n"
    "def first(n: int = 0) -> None:\n"
    "    print(f'FIRST {time.time():.6f}', flush=True)\n"
)


@contextlib.contextmanager
def postgres_url() -> Iterator[str | None]:
    from tests.infra.postgres_env import PostgresUnavailable, running_postgres

    try:
        with running_postgres() as server:
            yield server.create_database("bench")
    except PostgresUnavailable as exc:  # no PostgreSQL here: measure SQLite only
        print(f"(PostgreSQL not measured: {exc})")
        yield None


def seed_pool(url: str) -> None:
    store = open_store(url)
    try:
        with store.transaction() as tx:
            spec = {"name": "bench", "type": "process", "paused": False, "concurrency_limit": None}
            tx.put(Resource.of(Kind.WORK_POOL, "bench", spec, None))
            queue = {"pool": "bench", "name": "default", "priority": 1, "paused": False}
            tx.put(Resource.of(Kind.WORK_QUEUE, "bench/default", queue, None))
    finally:
        store.close()


def claim_throughput(url: str, workers: int, runs: int) -> float:
    store = open_store(url)
    try:
        now = time.time()
        store.create_runs(
            NewRun("f/d", "f", "bench", "default", now - 1, idempotency_key=f"{workers}-{i}")
            for i in range(runs)
        )
    finally:
        store.close()
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, f"w{workers}-{i}"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(workers)
    ]
    claimed: list[str] = []
    for process in processes:
        out, _ = process.communicate(timeout=600)
        claimed.extend(line for line in out.splitlines() if line)
    elapsed = time.monotonic() - started
    if len(claimed) != len(set(claimed)):
        raise SystemExit("a run was claimed twice")
    if len(claimed) != runs:
        raise SystemExit(f"{runs - len(claimed)} runs were not claimed")
    return runs / elapsed


def make_flow_repo(root: Path) -> Path:
    repo = root / "flows-repo"
    files = {
        "flows/f.py": FLOW,
        "work-pools.yaml": "work_pools:\n  - {name: pickup, type: process}\n",
        "prefect.yaml": "deployments:\n  - {name: d, entrypoint: flows/f.py:first, "
        "work_pool: {name: pickup}, pull: []}\n",
    }
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    git(repo)
    return repo


def git(repo: Path) -> None:
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)


def cli(*args: str, cwd: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "reconciler", *args], cwd=cwd, check=True, capture_output=True
    )
    return time.monotonic() - started


def pickup(url: str, repo: Path, count: int) -> list[float]:
    from reconciler.worker.create_run import create_run

    cli("--store", url, "-q", str(repo), cwd=repo)
    worker = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "worker", "start", "--pool", "pickup", "--store", url],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latencies = []
    try:
        time.sleep(2.0)
        for _ in range(count):
            store = open_store(url)
            try:
                created = time.time()
                run = create_run(store, "first/d")
                while (found := store.get_run(run.id)) is not None and not found.state.is_final:
                    time.sleep(0.01)
                assert found is not None and found.state is RunState.COMPLETED, found
                first = next(
                    float(line.line.split()[1])
                    for line in store.run_logs(run.id)
                    if line.line.startswith("FIRST ")
                )
            finally:
                store.close()
            latencies.append(first - created)
            time.sleep(0.3)
    finally:
        worker.terminate()
        worker.wait()
    return latencies


def apply_times(url: str, root: Path) -> tuple[float, float]:
    repo = root / "big"
    generate(repo, 1000, 10)
    first = cli("--store", url, "-q", "--no-color", str(repo), cwd=root)
    noop = statistics.median(cli("--store", url, "-q", str(repo), cwd=root) for _ in range(3))
    return first, noop


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--workers", default="1,4,8")
    parser.add_argument("--pickups", type=int, default=30)
    options = parser.parse_args()
    counts = [int(n) for n in options.workers.split(",")]
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    print(f"machine: {machine()}\n")
    rows: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as scratch, postgres_url() as pg:
        root = Path(scratch)
        backends = {"SQLite": f"sqlite:///{root / 'claims.db'}"}
        if pg is not None:
            backends["PostgreSQL"] = pg
        for label, url in backends.items():
            seed_pool(url)
            row = rows.setdefault(label, {})
            for workers in counts:
                row[f"claims, {workers} worker(s)"] = (
                    f"{claim_throughput(url, workers, options.runs):.0f} runs/s"
                )
        for label, url in list(backends.items()):
            fresh = f"sqlite:///{root / 'apply.db'}" if label == "SQLite" else url
            first, noop = apply_times(fresh, root / label)
            rows[label]["apply 1,000 deployments: first"] = f"{first:.2f} s"
            rows[label]["apply 1,000 deployments: no-op"] = f"{noop:.2f} s"
            pick_url = f"sqlite:///{root / 'pickup.db'}" if label == "SQLite" else url
            latencies = pickup(pick_url, make_flow_repo(root / f"{label}-flows"), options.pickups)
            rows[label]["pickup p50 / p95"] = (
                f"{statistics.median(latencies):.3f} s / {p95(latencies):.3f} s"
            )
    labels = list(rows)
    print("| measurement | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for key in rows[labels[0]]:
        print(f"| {key} | " + " | ".join(rows[label].get(key, "-") for label in labels) + " |")


if __name__ == "__main__":
    main()
