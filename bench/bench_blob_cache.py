"""Benchmark of the per-file cache (issue 12, item 5): a commit that changes one file of a
10,000-deployment repository, planned as the daemon plans it (target: 0.2 s or less).

A generated repository (bench/generate.py) of `--deployments` deployments over `--files`
prefect.yaml files, each in a directory of its own with its flow, is applied to a SQLite store.
Then, `--repeat` times: one prefect.yaml gets a new description for one deployment in a new
commit, and that commit is planned (a dry-run, in this process, through `engine.reconcile` with
the daemon's `BuildCache`, warm from the commit before). The same plan without the cache is the
baseline. Printed: the median and the slowest time to plan, with the cache and without, how
many files the cache served, and the stages' shares of one cached plan.

    .venv/bin/python bench/bench_blob_cache.py [--deployments 10000] [--files 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))
from common import GIT_ENV, machine  # noqa: E402
from generate import generate  # noqa: E402

from reconciler.desired.build_cache import BuildCache  # noqa: E402
from reconciler.engine import stages as engine  # noqa: E402
from reconciler.engine.stages import ReconcileRequest, reconcile  # noqa: E402
from reconciler.settings import Settings  # noqa: E402
from reconciler.store.sqlite import SqliteStore  # noqa: E402

TARGET_SECONDS = 0.2
TIMED: tuple[tuple[Any, str], ...] = (
    (engine, "load"),
    (engine, "desired_state"),
    (SqliteStore, "observe"),
    (engine, "plan"),
)


def commit_change(repo: Path, round_: int, files: int) -> str:
    """Change one deployment's description in one file; returns the new commit."""
    path = repo / f"project-{round_ % files:02d}" / "prefect.yaml"
    text = path.read_text()
    path.write_text(text.replace("description: Deployment number", f"description: R{round_}", 1))
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "commit", "-qam", f"round {round_}"], cwd=repo, env=env, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (git): on a busy machine the wall
    time mostly measures the wait for a core."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_stages() -> dict[str, float]:
    """Wrap the engine's stages (and the store's observe, part of the desired-state stage) to
    add up their time; `untimed` restores them."""
    totals: dict[str, float] = {}
    for owner, name in TIMED:
        original = getattr(owner, name)

        def wrapper(*args: Any, _f: Callable[..., Any] = original, _n: str = name) -> Any:
            start = time.perf_counter()
            try:
                return _f(*args)
            finally:
                totals[_n] = totals.get(_n, 0.0) + time.perf_counter() - start

        wrapper.original = original  # type: ignore[attr-defined]
        setattr(owner, name, wrapper)
    return totals


def untimed() -> None:
    for owner, name in TIMED:
        setattr(owner, name, getattr(owner, name).original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-blob-cache-") as scratch:
        repo = Path(scratch) / "repo"
        generate(repo, args.deployments, args.files)
        settings = Settings(store_url=f"sqlite:///{Path(scratch) / 'state.db'}")
        start = time.perf_counter()
        reconcile(ReconcileRequest(repositories=(str(repo),), settings=settings), environ={})
        print(f"first apply of {args.deployments} deployments: {time.perf_counter() - start:.2f} s")
        cache = BuildCache()
        cpu: list[float] = []
        cpu_uncached: list[float] = []

        def plan(ref: str, with_cache: bool, dry_run: bool = True) -> tuple[float, Any]:
            request = ReconcileRequest(
                repositories=(str(repo),),
                ref=ref,
                settings=settings,
                dry_run=dry_run,
                cache=cache if with_cache else None,
            )
            cpu_before = cpu_seconds()
            start = time.perf_counter()
            outcome = reconcile(request, environ={})
            seconds = time.perf_counter() - start
            (cpu if with_cache and dry_run else cpu_uncached).append(cpu_seconds() - cpu_before)
            return seconds, outcome

        plan("HEAD", True)  # the daemon's cache, warm from the commit it applied last
        cpu.clear()
        cached: list[float] = []
        uncached: list[float] = []
        for round_ in range(args.repeat):
            ref = commit_change(repo, round_, args.files)
            hits_before = cache.hits
            seconds, outcome = plan(ref, True)
            cached.append(seconds)
            served = cache.hits - hits_before
            # Exactly the one deployment changed (the cache served nothing stale).
            changed = [c.key for c in outcome.plan.changes]
            file = round_ % args.files
            index = file * (args.deployments // args.files)
            assert changed == [f"pipeline-{file}/dep-{index:05d}"], changed
            uncached.append(plan(ref, False)[0])
            plan(ref, True, dry_run=False)  # applied, as the daemon does: the next commit's
            # plan reads a store that changed (nothing of the store is cached)
        totals = timed_stages()
        plan("HEAD", True)
        untimed()
    print(f"{args.deployments} deployments in {args.files} files; one file changed per commit")
    print(f"files served by the cache in each plan: {served} of {args.files}")
    print("| plan of a commit that changes one file | wall, median | wall, slowest | CPU, median |")
    print("|---|---|---|---|")
    print(
        f"| with the blob cache | {statistics.median(cached):.3f} s | {max(cached):.3f} s "
        f"| {statistics.median(cpu):.3f} s |"
    )
    print(
        f"| without (baseline) | {statistics.median(uncached):.3f} s | {max(uncached):.3f} s "
        f"| {statistics.median(cpu_uncached):.3f} s |"
    )
    print(
        "stages of one cached plan: "
        + ", ".join(f"{k} {v:.3f} s" for k, v in totals.items())
        + " (observe is part of desired_state)"
    )
    verdict = "met" if statistics.median(cached) <= TARGET_SECONDS else "NOT met"
    print(f"target {TARGET_SECONDS} s (median): {verdict}")


if __name__ == "__main__":
    main()
