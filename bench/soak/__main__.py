"""`make soak`: the chaos soak on PostgreSQL, then on SQLite (bench/soak/__init__.py).

    .venv/bin/python -m bench.soak [--minutes 10] [--backend postgres|sqlite|both] [--seed N]

`--minutes` bounds the whole soak: each backend gets its share, of which ~70 % is chaos and
the rest setting up, settling (runs due by the cut-off finishing) and checking. Exits 1 when
an invariant is violated (each is printed), 2 when the soak itself could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.common import machine  # noqa: E402
from bench.soak.checks import Outcome, RawStore, check_all, dumps, read_marks  # noqa: E402
from bench.soak.driver import Chaos, drive  # noqa: E402
from bench.soak.fleet import Fleet, kill_marked, make_fleet, marked_processes  # noqa: E402
from bench.soak.outage import postgres_outage, sqlite_outage  # noqa: E402
from bench.soak.project import POOL, Project  # noqa: E402
from reconciler.model.resources import Kind  # noqa: E402
from reconciler.store import Store, open_store  # noqa: E402
from tests.infra.postgres_env import running_postgres  # noqa: E402

log = logging.getLogger("soak")
CHAOS_SHARE = 0.7
SETTLE_SHARE = 0.15
ORPHAN_GRACE_S = 15.0


@contextlib.contextmanager
def backend_store(backend: str, root: Path) -> Iterator[tuple[str, Callable[[float], None]]]:
    """The store's URL, and how to take it away for a while."""
    if backend == "sqlite":
        database = root / "state.db"
        yield f"sqlite:///{database}", lambda seconds: sqlite_outage(database, seconds)
        return
    with running_postgres() as server:
        yield server.create_database("soak"), lambda seconds: postgres_outage(server, seconds)


def soak(backend: str, seconds: float, rng: random.Random, keep: bool) -> Outcome:
    root = Path(tempfile.mkdtemp(prefix=f"reconciler-soak-{backend}-"))
    token = secrets.token_hex(8)
    marks = root / "marks.txt"
    started = time.monotonic()
    try:
        with backend_store(backend, root) as (store_url, outage):
            project = Project.create(root / "repo")
            fleet = make_fleet(root, project.path, store_url, token, marks)
            fleet.daemon.start()
            fleet.wait_listening()
            _wait_reconciled(store_url, project)
            for worker in fleet.workers:
                worker.start()
            chaos = Chaos(seconds=max(30.0, seconds * CHAOS_SHARE))
            log.info("%s: chaos for %.0f s (root %s)", backend, chaos.seconds, root)
            record = drive(project, fleet, store_url, chaos, outage, rng)
            cutoff = record.ended
            settled = _settle(store_url, cutoff, max(30.0, seconds * SETTLE_SHARE))
            fleet.stop()
            orphans = _orphans(token)
            with contextlib.closing(open_store(store_url)) as store:
                outcome = check_all(
                    store, RawStore(store_url), project, record, read_marks(marks), cutoff
                )
            outcome.add("orphans", orphans)
            outcome.add("daemon or worker", _exits(fleet))
            outcome.add(
                "daemon or worker",
                (
                    f"{what} ({time.strftime('%H:%M:%S', time.localtime(at))})"
                    for at, what in record.kills
                    if what.endswith("exited by itself")
                ),
            )
            outcome.figures.update(
                {
                    "backend": backend,
                    "elapsed s": round(time.monotonic() - started, 1),
                    "chaos s": round(record.ended - record.started, 1),
                    "settled in s": settled,
                    "store outage s": (
                        round(record.outage[1] - record.outage[0], 1) if record.outage else None
                    ),
                    "killed": [name for _, name in record.kills],
                    "load average at the end": round(os.getloadavg()[0], 2),
                }
            )
            return outcome
    finally:
        kill_marked(token)
        if keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _wait_reconciled(store_url: str, project: Project, timeout: float = 120.0) -> None:
    """Until the daemon has applied the first commit: the workers need the pool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(open_store(store_url)) as store:
            if store.get(Kind.WORK_POOL, POOL) is not None and {
                r.key for r in store.list_resources(Kind.DEPLOYMENT)
            } == set(project.keys()):
                return
        time.sleep(0.2)
    raise SystemExit("the daemon did not apply the soak's first commit in time")


def _settle(store_url: str, cutoff: float, timeout: float) -> float | None:
    """Wait until every run due by the cut-off is final; seconds taken, None on timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            with contextlib.closing(open_store(store_url)) as store:
                if not _unfinished(store, cutoff):
                    return round(time.monotonic() - began, 1)
        except Exception as exc:  # a store still recovering: try again
            log.info("settling: %s", exc)
        time.sleep(1.0)
    return None


def _unfinished(store: Store, cutoff: float) -> int:
    return sum(
        1
        for run in store.list_runs(limit=10_000_000)
        if not run.state.is_final and run.scheduled_time <= cutoff
    )


def _orphans(token: str) -> list[str]:
    """Processes of the soak still alive once the daemon and workers have stopped (after a
    grace for run supervisors finishing their own stop)."""
    deadline = time.monotonic() + ORPHAN_GRACE_S
    left = marked_processes(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = marked_processes(token)
    return [f"pid {pid}: {cmdline[:200]}" for pid, cmdline in left]


def _exits(fleet: Fleet) -> list[str]:
    """Stopped with SIGTERM, each must exit 0 (in time)."""
    return [
        f"{name} exited {codes[-1]} on SIGTERM (None: did not stop in time)"
        for name, codes in fleet.exits.items()
        if codes and codes[-1] != 0
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="the whole soak's budget")
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the logs and the store")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    backends = ["postgres", "sqlite"] if options.backend == "both" else [options.backend]
    share = options.minutes * 60 / len(backends)
    print(f"machine: {machine()}")
    print(f"seed {seed}, {options.minutes:g} minutes for {', '.join(backends)}", flush=True)
    rng = random.Random(seed)
    failed = False
    for backend in backends:
        outcome = soak(backend, share, rng, options.keep)
        print(f"\n== {backend} ==\n{dumps(outcome.figures)}")
        if outcome.violations:
            failed = True
            print(f"{len(outcome.violations)} violation(s):")
            for violation in outcome.violations:
                print(f"  - {violation}")
        else:
            print("all invariants hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
