"""Benchmark of real Prefect flows (issue 11, Performance): reconciler's worker beside Prefect's.

One flow for every side, in one temporary git repository with a prefect.yaml: ten tasks, one of
which fails once and has `retries=1`; the flow's first line writes `time.time()` to the file
named by its parameter `first_line_file`. Against one real `prefect server` (Prefect from the
test extra, tests/infra/prefect_server.py):

- Prefect: the repository deployed with `prefect deploy`, runs created through the REST API
  and run by Prefect's own process worker, polling every 1 s and at its default (10 s);
- bare process: `python flows/ten_tasks.py FILE` with PREFECT_API_URL at the warm server
  (created = the process started, COMPLETED = it exited);
- reconciler: the same repository applied to a SQLite store, runs created with the store API
  and run by `reconcile worker start`.

Per run: created -> COMPLETED (the COMPLETED state's own time stamp, server or store) and
created -> the flow's first line; p50, p95, max; then the ratios against the targets of the
issue. Then N runs at once for a worker limited to 4 runs at a time on 2 cores: how many
ended FAILED or CRASHED (the flow itself always succeeds after its retry).

reconciler's worker serves the Prefect API its runs talk to (by default, `--reconciler-prefect-api
none`: no PREFECT_API_URL is given to the worker; it serves its own on 127.0.0.1). With `server`
the worker's runs report to the real Prefect server instead (`--prefect-api-url`), which
measures reconciler's claim and forkserver against Prefect's own API.

    .venv/bin/python bench/bench_prefect_flows.py [--runs 10] [--concurrent-total 100]
        [--concurrency-prefect] [--quick] [--reconciler-prefect-api server|none]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import GIT_ENV, machine  # noqa: E402
from reconciler.engine.stages import ReconcileRequest, reconcile  # noqa: E402
from reconciler.settings import Settings  # noqa: E402
from reconciler.store import open_store  # noqa: E402
from reconciler.worker.create_run import create_run  # noqa: E402
from tests.infra.prefect_server import (  # noqa: E402
    PrefectServer,
    prefect_executable,
    running_prefect_server,
    running_prefect_worker,
    stop_process,
)

POOL = "bench"
FLOW_NAME = "ten-tasks"
DEPLOYMENT = "bench"
RUN_TIMEOUT_S = 300
READY_TIMEOUT_S = 120
STARTED = " started on pool "  # in the line reconciler's worker logs once it polls
FORKSERVER_READY = "forkserver ready"  # logged once the warm interpreter has imported Prefect
POLL_S = 0.2  # final states are read with their own time stamps: no need to poll fast
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TARGETS = {"vs_prefect": 0.5, "vs_bare": 1.2, "first_line_p95": 1.0}

FLOW = '''\
"""Ten tasks; `flaky` fails on its first try and is retried once."""

import os
import sys
import time
from pathlib import Path

from prefect import flow, task

_failures_left = [1]


@task
def step(number: int) -> int:
    return number + 1


@task(retries=1, retry_delay_seconds=0)
def flaky(number: int) -> int:
    if _failures_left[0]:
        _failures_left[0] -= 1
        raise RuntimeError("fails once, on purpose")
    return number + 1


@flow
def ten_tasks(first_line_file: str = "") -> int:
    Path(first_line_file or os.environ["BENCH_FIRST_LINE_FILE"]).write_text(f"{time.time():.6f}")
    total = 0
    for _ in range(9):
        total = step(total)
    return flaky(total)


if __name__ == "__main__":
    ten_tasks(first_line_file=sys.argv[1])
'''


def project_files(repo: Path) -> dict[str, str]:
    return {
        "flows/ten_tasks.py": FLOW,
        "work-pools.yaml": f"work_pools:\n  - {{name: {POOL}, type: process}}\n",
        "prefect.yaml": textwrap.dedent(
            f"""\
            name: bench-prefect-flows
            pull:
              - prefect.deployments.steps.set_working_directory:
                  directory: {repo}
            deployments:
              - name: {DEPLOYMENT}
                entrypoint: flows/ten_tasks.py:ten_tasks
                work_pool: {{name: {POOL}}}
            """
        ),
    }


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    for name, content in project_files(repo).items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return repo


@dataclass
class Sample:
    """One side's runs: seconds from created to COMPLETED and to the first line, and the
    final state of every run (COMPLETED or not)."""

    completed: list[float] = field(default_factory=list)
    first_line: list[float] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)

    def add(self, state: str, created: float, done: float | None, first: float | None) -> None:
        self.states[state] += 1
        if state == "COMPLETED" and done is not None:
            self.completed.append(done - created)
        if first is not None:
            self.first_line.append(first - created)


def epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def read_first_line(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


# -- Prefect ---------------------------------------------------------------------------------


def deploy_to_prefect(server: PrefectServer, repo: Path) -> str:
    prefect = str(prefect_executable())
    for args in (
        ["work-pool", "create", POOL, "--type", "process"],
        ["--no-prompt", "deploy", "--all"],
    ):
        done = subprocess.run(
            [prefect, *args], cwd=repo, env=server.env(), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    deployment = server.request("GET", f"/deployments/name/{FLOW_NAME}/{DEPLOYMENT}")
    return str(deployment["id"])


def wait_for_prefect_worker(server: PrefectServer) -> None:
    """Until a worker of the pool has sent a heartbeat since now (it has started and polls),
    so that no run waits for a worker's start-up."""
    since = time.time()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        workers = server.request("POST", f"/work_pools/{POOL}/workers/filter", {})
        if any(epoch(w["last_heartbeat_time"]) >= since for w in workers):
            time.sleep(0.5)  # its first poll follows its first heartbeat
            return
        time.sleep(POLL_S)
    raise SystemExit(f"Prefect's worker sent no heartbeat within {READY_TIMEOUT_S} s")


def prefect_create(server: PrefectServer, deployment_id: str, marker: Path) -> tuple[str, float]:
    created = time.time()
    run = server.request(
        "POST",
        f"/deployments/{deployment_id}/create_flow_run",
        {"parameters": {"first_line_file": str(marker)}},
    )
    return str(run["id"]), created


def prefect_wait(server: PrefectServer, run_ids: list[str]) -> dict[str, tuple[str, float | None]]:
    """Final state and its time stamp of every run (TIMEOUT when it did not end in time).
    The time stamps are the server's, so polling slowly costs no precision."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    ended: dict[str, tuple[str, float | None]] = {}
    while len(ended) < len(run_ids):
        time.sleep(POLL_S)
        pending = [run_id for run_id in run_ids if run_id not in ended]
        query = {"flow_runs": {"id": {"any_": pending}}, "limit": len(pending)}
        for run in server.request("POST", "/flow_runs/filter", query):
            state = run["state"]
            if state["type"] in FINAL:
                ended[run["id"]] = (state["type"], epoch(state["timestamp"]))
        if time.monotonic() > deadline:
            ended.update({r: ("TIMEOUT", None) for r in run_ids if r not in ended})
    return ended


def prefect_side(
    server: PrefectServer, deployment_id: str, scratch: Path, runs: int, query: float | None
) -> Sample:
    sample = Sample()
    with running_prefect_worker(server, POOL, query_seconds=query, cwd=scratch):
        wait_for_prefect_worker(server)
        for number in range(runs):
            marker = scratch / f"prefect-{query}-{number}.first"
            run_id, created = prefect_create(server, deployment_id, marker)
            state, done = prefect_wait(server, [run_id])[run_id]
            sample.add(state, created, done, read_first_line(marker))
            time.sleep(random.uniform(0, 1))  # the next run comes at another point of the poll
    return sample


def prefect_concurrent(
    server: PrefectServer, deployment_id: str, scratch: Path, total: int
) -> Counter[str]:
    with running_prefect_worker(server, POOL, query_seconds=1, limit=4, cwd=scratch):
        wait_for_prefect_worker(server)
        ids = [
            prefect_create(server, deployment_id, scratch / f"prefect-many-{n}.first")[0]
            for n in range(total)
        ]
        return Counter(state for state, _ in prefect_wait(server, ids).values())


# -- bare process ----------------------------------------------------------------------------


def bare_side(server: PrefectServer, repo: Path, scratch: Path, runs: int) -> Sample:
    sample = Sample()
    for number in range(runs):
        marker = scratch / f"bare-{number}.first"
        created = time.time()
        done = subprocess.run(
            [sys.executable, "flows/ten_tasks.py", str(marker)],
            cwd=repo,
            env=server.env(),
            capture_output=True,
            text=True,
        )
        ended = time.time()
        state = "COMPLETED" if done.returncode == 0 else "FAILED"
        sample.add(state, created, ended, read_first_line(marker))
    return sample


# -- reconciler ------------------------------------------------------------------------------


def reconciler_store(repo: Path, scratch: Path) -> str:
    store_url = f"sqlite:///{scratch / 'state.db'}"
    reconcile(
        ReconcileRequest(repositories=(str(repo),), settings=Settings(store_url=store_url)),
        environ={},
    )
    return store_url


@contextlib.contextmanager
def reconciler_worker(
    store_url: str, scratch: Path, env: Mapping[str, str], *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    log_path = scratch / "reconciler-worker.log"
    log = log_path.open("ab")
    started_before = log_path.read_text(errors="replace").count(STARTED)
    warm_before = log_path.read_text(errors="replace").count(FORKSERVER_READY)
    if env.get("PREFECT_API_URL"):  # `--reconciler-prefect-api server`
        args = (*args, "--prefect-api-url", env["PREFECT_API_URL"])
    argv = ["worker", "start", "--pool", POOL, "--store", store_url, "--no-schedule", *args]
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *argv],
        cwd=scratch,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_worker_start(log_path, started_before)
        # Measured warm, as Prefect's worker is: the first Prefect run starts the worker's warm
        # interpreter (and itself runs cold); it is not measured.
        if log_path.read_text(errors="replace").count(FORKSERVER_READY) == warm_before:
            run_id, _ = reconciler_create(store_url, scratch / "reconciler-warm-up.first")
            reconciler_wait(store_url, [run_id])
            wait_for_worker_start(log_path, warm_before, FORKSERVER_READY)
        yield process
    finally:
        stop_process(process)
        log.close()


def wait_for_worker_start(log_path: Path, previous_starts: int, marker: str | None = None) -> None:
    """Until the worker's log says it started (one more `marker` line than before: "started on
    pool" by default)."""
    marker = marker or STARTED
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if log_path.read_text(errors="replace").count(marker) > previous_starts:
            return
        time.sleep(POLL_S)
    raise SystemExit(
        f"reconciler's worker did not start within {READY_TIMEOUT_S} s; its log: {log_path}"
    )


def reconciler_create(store_url: str, marker: Path) -> tuple[str, float]:
    store = open_store(store_url)
    try:
        created = time.time()
        run = create_run(
            store, f"{FLOW_NAME}/{DEPLOYMENT}", parameters={"first_line_file": str(marker)}
        )
    finally:
        store.close()
    return run.id, created


def reconciler_wait(store_url: str, run_ids: list[str]) -> dict[str, tuple[str, float | None]]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    ended: dict[str, tuple[str, float | None]] = {}
    store = open_store(store_url, readonly=True)
    try:
        while len(ended) < len(run_ids):
            for run_id in run_ids:
                run = None if run_id in ended else store.get_run(run_id)
                if run is not None and run.state.is_final:
                    at = next(c.at for c in reversed(run.history) if c.state == run.state)
                    ended[run_id] = (run.state.value, epoch(at))
            if time.monotonic() > deadline:
                ended.update({r: ("TIMEOUT", None) for r in run_ids if r not in ended})
            time.sleep(POLL_S)
    finally:
        store.close()
    return ended


def reconciler_side(store_url: str, scratch: Path, env: Mapping[str, str], runs: int) -> Sample:
    sample = Sample()
    with reconciler_worker(store_url, scratch, env):
        for number in range(runs):
            marker = scratch / f"reconciler-{number}.first"
            run_id, created = reconciler_create(store_url, marker)
            state, done = reconciler_wait(store_url, [run_id])[run_id]
            sample.add(state, created, done, read_first_line(marker))
            time.sleep(random.uniform(0, 1))
    return sample


def reconciler_concurrent(
    store_url: str, scratch: Path, env: Mapping[str, str], total: int
) -> Counter[str]:
    ids = [
        reconciler_create(store_url, scratch / f"reconciler-many-{n}.first")[0]
        for n in range(total)
    ]
    with reconciler_worker(store_url, scratch, env, "--limit", "4"):
        return Counter(state for state, _ in reconciler_wait(store_url, ids).values())


def reconciler_env(server: PrefectServer, prefect_api: str, scratch: Path) -> dict[str, str]:
    env = server.env({"PREFECT_HOME": str(scratch / "reconciler-prefect-home")})
    if prefect_api == "none":
        env.pop("PREFECT_API_URL")
    return env


# -- report ----------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def cell(values: list[float], fraction: float | None = None) -> str:
    if not values:
        return "-"
    value = max(values) if fraction is None else percentile(values, fraction)
    return f"{value:.2f} s"


def states_text(states: Counter[str]) -> str:
    return ", ".join(f"{count} {state}" for state, count in sorted(states.items()))


def p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio_line(label: str, value: float | None, target: float, unit: str = "x") -> str:
    if value is None:
        return f"| {label} | - | <= {target}{unit} | no figure |"
    verdict = "met" if value <= target else "NOT met"
    return f"| {label} | {value:.2f}{unit} | <= {target}{unit} | {verdict} |"


def report(sides: dict[str, Sample], runs: int) -> None:
    print(f"Per run, one at a time, {runs} runs per side (created -> ...)\n")
    print("| side | COMPLETED p50 | p95 | max | first line p50 | p95 | max | final states |")
    print("|---|---|---|---|---|---|---|---|")
    for label, sample in sides.items():
        done, first = sample.completed, sample.first_line
        print(
            f"| {label} | {cell(done, 0.5)} | {cell(done, 0.95)} | {cell(done)} "
            f"| {cell(first, 0.5)} | {cell(first, 0.95)} | {cell(first)} "
            f"| {states_text(sample.states)} |"
        )
    ours = sides["reconciler worker"]
    ours_p50 = p50(ours.completed)
    print("\nTargets (issue 11)\n")
    print("| figure | measured | target | |")
    print("|---|---|---|---|")
    for label in ("Prefect worker, query 1 s", "Prefect worker, default query"):
        theirs = p50(sides[label].completed) if label in sides else None
        value = ours_p50 / theirs if ours_p50 is not None and theirs else None
        print(ratio_line(f"reconciler p50 / {label} p50", value, TARGETS["vs_prefect"]))
    bare = p50(sides["bare process"].completed)
    value = ours_p50 / bare if ours_p50 is not None and bare else None
    print(ratio_line("reconciler p50 / bare process p50", value, TARGETS["vs_bare"]))
    first_p95 = percentile(ours.first_line, 0.95) if ours.first_line else None
    print(ratio_line("reconciler first line p95", first_p95, TARGETS["first_line_p95"], " s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per side, one at a time")
    parser.add_argument(
        "--concurrent-total", type=int, default=100, help="runs for the 4-at-once mode (0: skip)"
    )
    parser.add_argument(
        "--concurrency-prefect",
        action="store_true",
        help="the 4-at-once mode for Prefect's worker too (adds a few minutes)",
    )
    parser.add_argument(
        "--reconciler-prefect-api",
        choices=("server", "none"),
        default="none",
        help="none: the worker serves its own Prefect API (default); server: its runs use the "
        "real Prefect server's",
    )
    parser.add_argument("--quick", action="store_true", help="3 runs per side, 8 at once")
    options = parser.parse_args()
    if options.quick:
        options.runs, options.concurrent_total = 3, 8
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as in any install
    # Everything (server, workers, flows) on at most 2 cores, as the figures are.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
    print(f"machine: {machine()}\n")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-prefect-") as name:
        scratch = Path(name)
        repo = make_repo(scratch)
        with running_prefect_server() as server:
            deployment_id = deploy_to_prefect(server, repo)
            store_url = reconciler_store(repo, scratch)
            env = reconciler_env(server, options.reconciler_prefect_api, scratch)
            sides = {
                "bare process": bare_side(server, repo, scratch, options.runs),
                "Prefect worker, query 1 s": prefect_side(
                    server, deployment_id, scratch, options.runs, 1
                ),
                "Prefect worker, default query": prefect_side(
                    server, deployment_id, scratch, options.runs, None
                ),
                "reconciler worker": reconciler_side(store_url, scratch, env, options.runs),
            }
            report(sides, options.runs)
            total = options.concurrent_total
            if total > 0:
                print(f"\n{total} runs created at once, a worker running 4 at a time on 2 cores\n")
                print("| worker | final states | failed or crashed |")
                print("|---|---|---|")
                counts = {"reconciler": reconciler_concurrent(store_url, scratch, env, total)}
                if options.concurrency_prefect:
                    counts["Prefect (query 1 s)"] = prefect_concurrent(
                        server, deployment_id, scratch, total
                    )
                for label, states in counts.items():
                    bad = sum(n for s, n in states.items() if s != "COMPLETED")
                    print(f"| {label} | {states_text(states)} | {bad} |")
    print(f"\n(benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
