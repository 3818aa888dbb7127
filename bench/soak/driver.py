"""The soak's driver (bench/soak): for a bounded time, commits every few seconds, creates runs,
kill -9s a random daemon or worker every 20-40 s and restarts it (same name), and takes the
store away once for 10 s.

Commits and runs come from a thread of their own ("load"); kills, restarts and the outage
happen on the calling (main) thread, so PostgreSQL restarted there lives as long as the soak.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.soak.fleet import Fleet
from bench.soak.project import Project
from reconciler.store import Store, open_store
from reconciler.worker.create_run import create_run

log = logging.getLogger("soak")


@dataclass
class Chaos:
    """How hard the driver pushes (the defaults are the issue's)."""

    seconds: float
    commit_every: tuple[float, float] = (3.0, 6.0)
    run_every: tuple[float, float] = (0.4, 1.2)
    kill_every: tuple[float, float] = (20.0, 40.0)
    restart_after: tuple[float, float] = (0.5, 3.0)
    outage_seconds: float = 10.0


@dataclass
class Record:
    """What the driver did, for the checks and the figures."""

    created: dict[str, float] = field(default_factory=dict)
    """Run id -> wall time just before `create_run` was called."""
    create_failures: int = 0
    commit_changes: list[str] = field(default_factory=list)
    kills: list[tuple[float, str]] = field(default_factory=list)
    outage: tuple[float, float] | None = None
    started: float = 0.0
    ended: float = 0.0


def drive(
    project: Project,
    fleet: Fleet,
    store_url: str,
    chaos: Chaos,
    outage: Callable[[float], None],
    rng: random.Random,
) -> Record:
    record = Record(started=time.time())
    stop = threading.Event()
    load = threading.Thread(
        target=_load, args=(project, store_url, chaos, record, stop, rng), name="load"
    )
    load.start()
    try:
        _chaos(fleet, chaos, outage, record, rng)
    finally:
        stop.set()
        load.join()
    record.ended = time.time()
    return record


def _chaos(
    fleet: Fleet,
    chaos: Chaos,
    outage: Callable[[float], None],
    record: Record,
    rng: random.Random,
) -> None:
    began = time.monotonic()
    end = began + chaos.seconds
    outage_at = began + chaos.seconds * rng.uniform(0.3, 0.6)
    next_kill = began + rng.uniform(*chaos.kill_every)
    while (now := time.monotonic()) < end:
        for member in fleet.members:  # one that died by itself is a finding: start it again
            if not member.alive():
                log.warning("%s exited by itself (%s): restarting", member.name, member.process)
                record.kills.append((time.time(), f"{member.name} exited by itself"))
                member.start()
        if record.outage is None and now >= outage_at:
            started = time.time()
            log.info("store outage: %.0f s", chaos.outage_seconds)
            outage(chaos.outage_seconds)
            record.outage = (started, time.time())
            continue
        if now >= next_kill:
            victim = rng.choice(fleet.members)
            log.info("kill -9 %s (pid %s)", victim.name, victim.process and victim.process.pid)
            victim.kill()
            record.kills.append((time.time(), victim.name))
            time.sleep(rng.uniform(*chaos.restart_after))
            victim.start()
            next_kill = time.monotonic() + rng.uniform(*chaos.kill_every)
            continue
        time.sleep(min(0.5, max(0.0, min(end, next_kill, outage_at) - now)))


def _load(
    project: Project,
    store_url: str,
    chaos: Chaos,
    record: Record,
    stop: threading.Event,
    rng: random.Random,
) -> None:
    next_commit = time.monotonic() + rng.uniform(*chaos.commit_every)
    store: Store | None = None
    try:
        while not stop.is_set():
            if time.monotonic() >= next_commit:
                record.commit_changes.append(project.change(rng))
                next_commit = time.monotonic() + rng.uniform(*chaos.commit_every)
            try:
                if store is None:
                    store = open_store(store_url)
                target = rng.choice(project.fixed)
                asked = time.time()
                run = create_run(store, f"work/{target}", parameters={"n": len(record.created)})
                record.created[run.id] = asked
            except Exception as exc:  # the store is away (the outage) or busy: count, go on
                record.create_failures += 1
                log.info("creating a run failed: %s", str(exc).splitlines()[0][:200])
                if store is not None:
                    _close_quietly(store)
                    store = None
            stop.wait(rng.uniform(*chaos.run_every))
    finally:
        if store is not None:
            _close_quietly(store)


def _close_quietly(store: Store) -> None:
    try:
        store.close()
    except Exception:  # a connection already cut: nothing to close
        log.debug("closing the driver's store failed", exc_info=True)
