"""`reconcile worker start`: claim runs of one pool and execute them (worker: the loop).

Every `poll_interval` (0.1 s by default, where Prefect polls every 10 s) the worker asks the
store, with a cheap read, whether a run is due; only then does it claim, atomically, as many
as its free slots allow. Each claimed run executes on a thread of its own
(reconciler/worker/execute.py). Every `heartbeat_interval` the worker beats and crashes the
runs of workers that stopped beating (3 missed beats); the scheduler tick runs at the same
interval on a thread of its own, so that a slow tick never delays a beat; while no daemon is
active, it also evaluates the deployments' triggers (reconciler/scheduling/triggers.py). It
also watches its own runs for cancellation requests. The pool's type picks the backend that
starts each run (reconciler/worker/backends/): a type no backend handles stops the worker at
start.

Runs of Prefect flows talk to a Prefect-compatible API backed by the store: the worker serves
one on 127.0.0.1 (a free port, a random bearer token) for the runs it starts, or points them at
a daemon's (`--prefect-api-url`). It answers only about this worker's runs.

At start, a worker that restarts under the same name crashes what its predecessor left
behind. SIGTERM or SIGINT: no new claims; the runs in progress are stopped and CRASHED with
that reason, and the worker exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from reconciler.core.errors import UserError
from reconciler.model.resources import Kind
from reconciler.model.runs import FlowRun, RunState
from reconciler.scheduling.policy import tick_with_stored_policy
from reconciler.settings import Settings
from reconciler.store import Store
from reconciler.worker.backends import backend_for
from reconciler.worker.execute import RunExecution
from reconciler.worker.log_budget import DEFAULT_MAX_LOG_BYTES
from reconciler.worker.prefect_runtime import PrefectRuntime
from reconciler.worker.run_processes import stop_crashed_runs

log = logging.getLogger("reconciler.worker")
STORE_ERROR_PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerOptions:
    pool: str
    settings: Settings = field(default_factory=Settings)
    """The store, from --store / RECONCILER_STORE (reconciler/settings.py)."""
    queues: tuple[str, ...] = ()
    name: str = field(default_factory=lambda: default_worker_name())
    limit: int | None = None
    run_once: bool = False
    prefetch_seconds: float = 10.0
    poll_interval: float = 0.1
    heartbeat_interval: float = 10.0
    cancel_grace_seconds: float = 10.0
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    """Output stored per run (reconciler/worker/log_budget.py)."""
    work_dir: Path | None = None
    schedule: bool = True
    """Also run the scheduler tick with each heartbeat, so schedules make runs wherever a
    worker is alive, daemon or not (the runs' keys make that exactly once)."""
    with_healthcheck: bool = False
    healthcheck_address: tuple[str, int] = ("127.0.0.1", 8080)
    python: str | None = None
    """The interpreter of Prefect flows whose job names no `command` (default: the worker's)."""
    prefect_api_url: str | None = None
    """Point runs at this Prefect API (a daemon's) instead of serving one here."""
    prefect_api_token: str | None = None
    prefect_api_listen: tuple[str, int] | None = None
    """Serve this worker's Prefect API on this address instead of 127.0.0.1 (containers on
    bridge networks reach it there)."""
    """The bearer token of `prefect_api_url`, when it needs one."""
    forkserver: bool = True
    """Start Prefect flows from a warm interpreter that has imported Prefect (fast)."""


class Worker:
    def __init__(self, options: WorkerOptions, environ: dict[str, str]) -> None:
        if "/" in options.name or "%" in options.name:
            raise UserError(
                f"worker name {options.name!r} contains / or %", "choose another --name"
            )
        if options.work_dir is not None:
            try:  # now, not at each run: a bad --work-dir is one clear error, not N crashes
                options.work_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(
                    f"cannot create the work directory {options.work_dir}: {exc.strerror or exc}",
                    "pass a directory this worker can write to with --work-dir",
                ) from None
        self.options = options
        self.environ = environ
        self.stopping = threading.Event()
        self.store_lock = threading.Lock()
        self.store: Store = options.settings.open_store()
        pool = self.store.get(Kind.WORK_POOL, options.pool)
        if pool is None:
            known = ", ".join(r.key for r in self.store.list_resources(Kind.WORK_POOL)) or "none"
            self.store.close()
            raise UserError(
                f"work pool {options.pool!r} does not exist (pools: {known})",
                "reconcile the repository that declares it, or create it with "
                "`reconcile work-pool create`",
            )
        self.pool_type = pool.pool_spec().type
        try:
            self.backend = backend_for(self.pool_type, pool=options.pool)
        except UserError:
            self.store.close()
            raise
        self.prefect: PrefectRuntime | None = None
        self.running: dict[str, RunExecution] = {}
        self.threads: list[threading.Thread] = []
        self.last_poll = time.monotonic()

    # -- life cycle ----------------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        options = self.options
        with self.store_lock:
            leftovers = self.store.crash_orphaned_runs(worker=options.name)
            self.store.heartbeat(options.pool, options.name, options.heartbeat_interval)
            stop_crashed_runs(self.store, leftovers)
        if leftovers:
            log.warning("crashed %d run(s) left by a previous %s", len(leftovers), options.name)
        if options.with_healthcheck:
            self._serve_health()
        self.prefect = self._prefect_runtime()
        log.info(
            "worker %s started on pool %s (%s)%s",
            options.name,
            options.pool,
            self.pool_type,
            f", queues {', '.join(options.queues)}" if options.queues else "",
        )
        beating = threading.Thread(target=self._keep_beating, name="heartbeat", daemon=True)
        beating.start()
        if options.schedule:
            ticking = threading.Thread(target=self._keep_ticking, name="scheduler", daemon=True)
            ticking.start()
            threading.Thread(target=self._keep_evaluating, name="triggers", daemon=True).start()
        try:
            while not self.stopping.is_set():
                self.last_poll = time.monotonic()
                try:
                    self._reap()
                    self._watch_cancellations()
                    claimed = self._claim()
                except Exception:  # a busy or unreachable store: the loop goes on
                    log.exception("claiming runs failed; trying again")
                    self.stopping.wait(max(options.poll_interval, STORE_ERROR_PAUSE_SECONDS))
                    continue
                if options.run_once:
                    break
                if not claimed:  # PostgreSQL wakes it at once when a run comes; SQLite polls
                    self.store.wait_for_runs(options.pool, options.poll_interval, self.stopping)
            if options.run_once:
                for thread in list(self.threads):
                    thread.join()
        finally:
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping.set()

    def _shutdown(self) -> None:
        for execution in list(self.running.values()):
            execution.abandon(
                "the worker was stopped while the run was in progress",
                self.options.cancel_grace_seconds,
            )
        for thread in list(self.threads):
            thread.join(timeout=self.options.cancel_grace_seconds + 5)
        if self.prefect is not None:
            self.prefect.close()
        with self.store_lock:
            self.store.remove_worker(self.options.pool, self.options.name)
            self.store.close()
        log.info("worker %s stopped", self.options.name)

    # -- one turn ------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        if self.options.limit is None:
            return 1_000_000
        return max(0, self.options.limit - len(self.running))

    def _claim(self) -> int:
        free = self._free_slots()
        if free <= 0:
            return 0
        before = time.time() + self.options.prefetch_seconds
        with self.store_lock:
            if not self.store.has_claimable_runs(self.options.pool, before):
                return 0
            runs = self.store.claim_runs(
                self.options.pool,
                self.options.name,
                limit=free,
                scheduled_before=before,
                queues=self.options.queues or None,
            )
        for run in runs:
            self._start(run)
        return len(runs)

    def _start(self, run: FlowRun) -> None:
        log.info("worker %s submitting flow run %s (%s)", self.options.name, run.id, run.name)
        execution = RunExecution(
            run,
            settings=self.options.settings,
            environ=self.environ,
            worker_name=self.options.name,
            backend=self.backend,
            work_dir=self.options.work_dir,
            cancel_grace_seconds=self.options.cancel_grace_seconds,
            prefect=self.prefect,
            max_log_bytes=self.options.max_log_bytes,
        )
        self.running[run.id] = execution
        thread = threading.Thread(target=execution.execute, name=f"run-{run.id[:8]}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _reap(self) -> None:
        for run_id, execution in list(self.running.items()):
            if execution.finished.is_set():
                del self.running[run_id]
        self.threads = [t for t in self.threads if t.is_alive()]

    def _watch_cancellations(self) -> None:
        if not self.running:
            return
        with self.store_lock:
            states = {run.id: run.state for run in self.store.iter_active_runs(self.options.name)}
        for run_id, execution in list(self.running.items()):
            if states.get(run_id) is RunState.CANCELLING:
                execution.cancel()

    def _keep_beating(self) -> None:
        """Heartbeats on a thread and a connection of their own: a claim loop slowed by a
        busy store must not look like a dead worker."""
        store = self.options.settings.open_store()
        try:
            while not self.stopping.wait(self.options.heartbeat_interval):
                try:
                    store.heartbeat(
                        self.options.pool, self.options.name, self.options.heartbeat_interval
                    )
                    crashed = store.crash_orphaned_runs()
                    stop_crashed_runs(store, crashed)  # the heartbeat's own store: no lock
                except Exception:  # the next beat tries again
                    log.exception("heartbeat failed")
                    continue
                for run_id in crashed:
                    log.warning("flow run %s crashed: its worker stopped heartbeating", run_id)
        finally:
            store.close()

    def _keep_ticking(self) -> None:
        """The scheduler's tick, with each heartbeat interval, on a thread and a connection of
        its own: a slow tick (a busy store, many schedules) never delays a heartbeat, which
        would make this live worker look dead to the others."""
        store = self.options.settings.open_store()
        try:
            while not self.stopping.wait(self.options.heartbeat_interval):
                try:
                    tick_with_stored_policy(store)  # the daemon's policy, when one stored it
                except Exception:  # the next tick tries again
                    log.exception("scheduler tick failed")
        finally:
            store.close()

    def _keep_evaluating(self) -> None:
        """Deployment triggers while no daemon is active (its leader evaluates them then);
        several workers evaluating at once take turns on each trigger's row."""
        from reconciler.scheduling.triggers import daemon_leads, keep_evaluating

        def act(store: Store, automation: str, action: Any, event: Any) -> None:
            from reconciler.engine.automation_actions import perform

            outcome = perform(store, automation, action, event, None)
            log.info("automation %s: %s: %s", automation, action.get("type"), outcome)

        keep_evaluating(
            self.options.settings.open_store,
            lambda store: not daemon_leads(store),
            self.stopping,
            act=act,
        )

    # -- the Prefect API of the runs -----------------------------------------------------------

    def _prefect_runtime(self) -> PrefectRuntime:
        from reconciler.worker.prefect_serving import prefect_runtime

        return prefect_runtime(self.options)

    # -- health --------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Still polling: the loop turned within 30 poll intervals (at least 10 s)."""
        return time.monotonic() - self.last_poll <= max(10.0, 30 * self.options.poll_interval)

    def _serve_health(self) -> None:
        from reconciler.worker.health import serve_health

        serve_health(self.options.healthcheck_address, self.healthy, self.stopping)


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
