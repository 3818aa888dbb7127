"""`reconcile daemon`: wires the controllers to their triggers and runs until told to stop.

Triggers of a repository's attempts (reconciler/daemon/controller.py):
- start-up: every repository once;
- local repositories: watchfiles on the git directory; a change under refs/ or to HEAD or
  packed-refs is a possible new commit (debounced to 50 ms);
- remote repositories: a fetch every `poll_interval` (+-10 % jitter), and webhooks;
- every `drift_interval`: a drift check of every repository;
- retries after failures, with backoff.

Every `scheduler.interval` (10 s) the scheduler tick turns schedules into runs
(reconciler/scheduling/scheduler.py), under the policy of `scheduler:`, which the daemon stores
at start-up for every tick, its own and the workers' (reconciler/scheduling/policy.py); an
apply that changed deployments ticks at once. Every
10 s it also crashes the flow runs of workers that stopped heartbeating. Every `events.interval`
(0.1 s) the active daemon evaluates the deployments' triggers against new events
(reconciler/scheduling/triggers.py) and deletes events older than `events.retention`.

SIGTERM or SIGINT: no new attempt starts; the one running finishes (an apply is one
transaction: it commits or rolls back) and the process exits 0 within 10 s. A restart reads
the status back from the store and picks up where it was: a commit applied is not applied
again.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from reconciler.daemon.config import DaemonSettings
from reconciler.daemon.controller import RepoController, Runtime, holder_name, take_lease
from reconciler.daemon.http import DaemonEndpoints, daemon_app
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.sources import open_source
from reconciler.http.server import RunningServer, listen_socket, serve_in_thread
from reconciler.model.observed import Fence
from reconciler.model.prefect_records import EventRecord
from reconciler.scheduling.policy import store_policy, tick_with_stored_policy
from reconciler.store.base import Store
from reconciler.worker.run_processes import crashed_run_processes, stop_run_processes

SHUTDOWN_GRACE_SECONDS = 8.0
LEADER_LEASE = "daemon-leader"
LEADER_TTL_SECONDS = 10.0
LEADER_RETRY_SECONDS = 2.0
WATCH_DEBOUNCE_MS = 50
ORPHAN_CHECK_SECONDS = 10.0
HTTP_STOP_SECONDS = 1.5
SYNC_NOW = "api"
"""The reason of an attempt asked for through the web API; it runs even while suspended."""
ROLLBACK = "rollback"
"""The reason of a rollback's attempt (web API); it runs even while suspended."""
log = logging.getLogger("reconciler.daemon")


class Daemon:
    def __init__(
        self,
        settings: DaemonSettings,
        environ: dict[str, str],
        mounts: Mapping[str, ASGIApp] | None = None,
        web: Callable[[Daemon], list[BaseRoute]] | None = None,
    ) -> None:
        """`mounts`: more ASGI apps served on the daemon's address, by path prefix; `web`
        makes the web API's and dashboard's routes for this daemon (reconciler/web)."""
        from apscheduler.schedulers.background import BackgroundScheduler

        self.settings = settings
        self.stopping = threading.Event()
        self.metrics = Metrics()
        self.store_lock = threading.Lock()
        self.status_store = settings.settings.open_store()
        # Stored once, so that every tick (this daemon's, each worker's) uses daemon.yaml's.
        store_policy(self.status_store, settings.settings.scheduling)
        self.scheduler = BackgroundScheduler(timezone=datetime.UTC)
        self.executor = ThreadPoolExecutor(
            max_workers=min(4, len(settings.repositories)), thread_name_prefix="reconcile"
        )
        self._active = 0
        self._idle = threading.Condition()
        self._announced_standby = False
        from reconciler.daemon.notify import Notifier, RunWatch

        self.notifier = Notifier(settings.notifications)
        self.run_watch = RunWatch()
        runtime = Runtime(
            notify=self.notifier.send,
            settings=settings,
            status_store=self.status_store,
            store_lock=self.store_lock,
            metrics=self.metrics,
            holder=holder_name(),
            schedule_retry=self.schedule_retry,
            environ=environ,
            stopping=self.stopping,
        )
        self.runtime = runtime
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        self.controllers = {
            config.name: RepoController(config, open_source(config, settings.cache_dir), runtime)
            for config in settings.repositories
        }
        for name in self.controllers:
            self.metrics.register(name)
        endpoints = DaemonEndpoints(
            secrets={
                c.name: (c.webhook_secret.value if c.webhook_secret else None)
                for c in settings.repositories
            },
            trigger=self.trigger,
            statuses=self.statuses,
            healthy=self.healthy,
            metrics=self.metrics,
            role=lambda: self.role,
            event_hooks={h.name: (h.secret.value, h.template) for h in settings.event_webhooks},
            store_event=self.store_event,
        )
        self.app = daemon_app(endpoints, mounts, web(self) if web is not None else None)
        # Bound now, so a busy address is reported before anything starts; served in run().
        self.listener = listen_socket(settings.listen_host, settings.listen_port)
        self.server: RunningServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return str(host), int(port)

    # -- triggers ----------------------------------------------------------------------------

    def trigger(self, name: str, reason: str) -> None:
        controller = self.controllers.get(name)
        if controller is None or self.stopping.is_set() or self.runtime.fence is None:
            return  # a standby does no work: the active daemon does it
        if reason not in (SYNC_NOW, ROLLBACK) and self._sync_suspended(name):
            return  # suspended through the web API: only "sync now" starts an attempt
        controller.trigger(reason, self._submit)

    def sync_now(self, name: str) -> str | None:
        """The web API's "sync now": why it cannot start, or None when it started."""
        problem = self._why_not(name)
        if problem is not None:
            return problem
        self.trigger(name, SYNC_NOW)
        return None

    def rollback_to(self, name: str, commit: str) -> str | None:
        """The web API's rollback: apply `commit` (applied before) now; why it cannot, or
        None when it started. The API has suspended the automatic sync already."""
        problem = self._why_not(name)
        if problem is not None:
            return problem
        self.controllers[name].rollback_commit = commit
        self.trigger(name, ROLLBACK)
        return None

    def _why_not(self, name: str) -> str | None:
        if name not in self.controllers:
            return f"this daemon does not watch {name!r}"
        if self.stopping.is_set():
            return "the daemon is stopping"
        if self.runtime.fence is None:
            return "this daemon is a standby: the active daemon syncs"
        return None

    def git_dir_of(self, repo: str) -> str | None:
        """The local cache of the remote repository whose objects record `repo` as owner
        (for the web API's owner lines); None for any other."""
        from reconciler.daemon.sources import RemoteSource

        for controller in self.controllers.values():
            source = controller.source
            if isinstance(source, RemoteSource) and source.remote.repo_id == repo:
                return source.location
        return None

    def plan_ref(self, name: str, ref: str) -> dict[str, Any]:
        """The web API's plan of any ref of a watched repository (daemon/ref_plans.py)."""
        from reconciler.core.errors import UserError
        from reconciler.daemon.ref_plans import plan_ref

        controller = self.controllers.get(name)
        if controller is None:
            raise UserError(
                f"this daemon does not watch {name!r}",
                "GET /api/v1/repositories lists the repositories it watches",
            )
        return plan_ref(controller, ref)

    def _sync_suspended(self, name: str) -> bool:
        try:
            with self.store_lock:
                return any(s.name == name for s in self.status_store.suspended_syncs())
        except Exception:  # an unreadable store: the attempt itself will report it
            return False

    def _submit(self, work: Callable[[], None]) -> object:
        def tracked() -> None:
            try:
                work()
            finally:
                with self._idle:
                    self._active -= 1
                    self._idle.notify_all()

        with self._idle:
            self._active += 1
        try:
            return self.executor.submit(tracked)
        except RuntimeError:  # shutting down
            with self._idle:
                self._active -= 1
            return None

    def schedule_retry(self, name: str, delay: float) -> None:
        if self.stopping.is_set():
            return
        when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=delay)
        self.scheduler.add_job(
            self.trigger,
            "date",
            run_date=when,
            args=[name, "retry"],
            id=f"retry:{name}",
            replace_existing=True,
        )

    def schedule_runs(self) -> None:
        """The scheduler tick: look-ahead runs for every schedule, late runs marked."""
        if self.runtime.fence is None:
            return
        try:
            with self.store_lock:
                result = tick_with_stored_policy(self.status_store)
        except Exception:  # the next tick tries again
            log.exception("the scheduler tick failed")
            return
        for deployment in result.errors:  # each one is logged by the tick itself
            self.metrics.schedule_error(deployment)
        if result.created or result.late:
            log.info("scheduler: %d runs created, %d late", result.created, result.late)

    def store_event(self, event: EventRecord) -> None:
        """An event from an event webhook, into the store (any daemon, standby too)."""
        from reconciler.store.run_events import record_event

        with self.store_lock:
            record_event(self.status_store, event)

    def _evaluate_triggers(self) -> None:
        """Deployment triggers (reconciler/scheduling/triggers.py), the active daemon only,
        on a thread and a store connection of their own."""
        from reconciler.scheduling.triggers import keep_evaluating

        keep_evaluating(
            self.settings.settings.open_store,
            lambda _store: self.runtime.fence is not None,
            self.stopping,
            interval=self.settings.trigger_interval,
            retention_seconds=self.settings.event_retention,
            act=self._act,
        )

    def _act(self, store: Store, automation: str, action: Any, event: Any) -> None:
        """An automation's action beyond run-deployment (reconciler/engine/automation_actions.py),
        with the daemon's notification targets."""
        from reconciler.engine.automation_actions import perform

        outcome = perform(store, automation, action, event, self.notifier.send)
        log.info("automation %s: %s: %s", automation, action.get("type"), outcome)

    def notify_failed_runs(self) -> None:
        """Runs that ended FAILED or CRASHED since the last look (the active daemon only)."""
        from reconciler.daemon.notify import run_message

        if self.runtime.fence is None:
            return
        try:
            with self.store_lock:
                fresh = self.run_watch.new_failures(self.status_store)
        except Exception:  # the next look tries again
            log.exception("looking for failed runs failed")
            return
        for run in fresh:
            self.notifier.send(*run_message(run))

    def crash_orphaned_runs(self) -> None:
        """Runs of workers that stopped heartbeating are CRASHED by any live worker or
        daemon, so their concurrency slots are freed even when no worker of the pool runs."""
        with self.store_lock:
            crashed = self.status_store.crash_orphaned_runs()
            leftovers = crashed_run_processes(self.status_store, crashed)
        stop_run_processes(leftovers)  # outside the lock: it may wait a few seconds
        for run_id in crashed:
            log.warning("flow run %s crashed: its worker stopped heartbeating", run_id)

    # -- HTTP callbacks --------------------------------------------------------------------------

    def statuses(self) -> list[dict[str, Any]]:
        with self.store_lock:
            return [
                {**r.status, "updated_at": r.updated_at} for r in self.status_store.repo_statuses()
            ]

    @property
    def role(self) -> str:
        return "active" if self.runtime.fence is not None else "standby"

    def healthy(self) -> str | None:
        if self.stopping.is_set():
            return "stopping"
        if not self.scheduler.running:
            return "the scheduler is not running"
        try:
            with self.store_lock:
                self.status_store.revision()
        except Exception as exc:  # any failure to read is "unhealthy", with its reason
            return f"the store does not answer: {type(exc).__name__}"
        return None

    # -- life cycle ----------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        from apscheduler.triggers.interval import IntervalTrigger

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        settings = self.settings
        for config in settings.repositories:
            if config.is_remote:
                self.scheduler.add_job(
                    self.trigger,
                    IntervalTrigger(
                        seconds=config.poll_interval, jitter=config.poll_interval * 0.1
                    ),
                    args=[config.name, "poll"],
                    id=f"poll:{config.name}",
                )
            self.scheduler.add_job(
                self.trigger,
                IntervalTrigger(
                    seconds=settings.drift_interval, jitter=settings.drift_interval * 0.1
                ),
                args=[config.name, "drift"],
                id=f"drift:{config.name}",
            )
        self.scheduler.add_job(
            self.schedule_runs,
            IntervalTrigger(seconds=settings.scheduler_interval),
            id="schedules",
            next_run_time=datetime.datetime.now(datetime.UTC),
        )
        if self.settings.notifications:
            from reconciler.daemon.notify import RUN_CHECK_SECONDS

            self.scheduler.add_job(
                self.notify_failed_runs,
                IntervalTrigger(seconds=min(RUN_CHECK_SECONDS, settings.scheduler_interval)),
                id="failed-runs",
                next_run_time=datetime.datetime.now(datetime.UTC),
            )
        self.scheduler.add_job(
            self.crash_orphaned_runs,
            IntervalTrigger(seconds=ORPHAN_CHECK_SECONDS),
            id="orphaned-runs",
        )
        self.scheduler.start()
        self.server = serve_in_thread(self.app, name="http", sock=self.listener)
        watched = self._watched_paths()
        if watched:
            threading.Thread(target=self._watch, args=(watched,), name="watch", daemon=True).start()
        host, port = self.address
        log.info(
            "daemon started: %d repositories, listening on http://%s:%d, store %s",
            len(self.controllers),
            host,
            port,
            self.status_store.url,
        )
        threading.Thread(target=self._lead, name="leader", daemon=True).start()
        threading.Thread(target=self._evaluate_triggers, name="triggers", daemon=True).start()
        self.stopping.wait()
        return self._shutdown()

    # -- leadership ----------------------------------------------------------------------------

    def _lead(self) -> None:
        """Active/standby: the daemon holding the leader lease reconciles and schedules; the
        others wait, trying every LEADER_RETRY_SECONDS, and take over when it lapses (at once
        when its holder is a dead process on this host). Every apply is fenced with the
        lease's token, so a deposed daemon that comes back cannot write."""
        runtime = self.runtime
        while not self.stopping.is_set():
            try:
                with self.store_lock:
                    holder = take_lease(
                        self.status_store, LEADER_LEASE, runtime.holder, LEADER_TTL_SECONDS
                    )
                    token = (
                        self.status_store.lease_token(LEADER_LEASE, runtime.holder)
                        if holder is None
                        else None
                    )
            except Exception:  # the store is unreachable: keep the role, try again
                log.exception("the leader lease could not be renewed")
                self.stopping.wait(LEADER_RETRY_SECONDS)
                continue
            was_leader = runtime.fence is not None
            if token is not None:
                fence = Fence(LEADER_LEASE, runtime.holder, token)
                if runtime.fence != fence:
                    runtime.fence = fence
                    log.info("this daemon is now the active one (lease token %d)", token)
                    for name in self.controllers:
                        self.trigger(name, "start")
            elif was_leader:
                runtime.fence = None
                log.warning("this daemon lost the active role to %s: standing by", holder)
            elif holder is not None and not self._announced_standby:
                self._announced_standby = True
                log.info("standing by: %s is the active daemon", holder)
            self.stopping.wait(LEADER_RETRY_SECONDS)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the work in progress", signal.Signals(signum).name)
        self.stopping.set()

    def _shutdown(self) -> int:
        self.scheduler.shutdown(wait=False)
        if self.server is not None:
            self.server.stop(HTTP_STOP_SECONDS)
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._idle:
            finished = self._idle.wait_for(lambda: self._active <= 0, SHUTDOWN_GRACE_SECONDS)
        if not finished:
            log.warning(
                "an attempt is still running after %.0fs (a long build step?): stopping it; "
                "an apply in progress rolls back, and the next start does the work again",
                SHUTDOWN_GRACE_SECONDS,
            )
            logging.shutdown()
            os._exit(0)
        self.notifier.close()
        with self.store_lock:
            self.status_store.release_lease(LEADER_LEASE, self.runtime.holder)
            self.status_store.close()
        log.info("daemon stopped")
        return 0

    # -- watching local repositories ----------------------------------------------------------

    def _watched_paths(self) -> dict[Path, str]:
        paths: dict[Path, str] = {}
        for name, controller in self.controllers.items():
            for path in controller.source.watch_paths():
                paths[path] = name
        return paths

    def _watch(self, watched: dict[Path, str]) -> None:
        import watchfiles

        def is_ref_change(change: watchfiles.Change, path: str) -> bool:
            return "/refs/" in path or path.endswith(("/HEAD", "/packed-refs"))

        try:
            for changes in watchfiles.watch(
                *watched,
                watch_filter=is_ref_change,
                debounce=WATCH_DEBOUNCE_MS,
                step=WATCH_DEBOUNCE_MS,
                stop_event=self.stopping,
                rust_timeout=1000,
                yield_on_timeout=False,
            ):
                names = {
                    name
                    for _, changed in changes
                    for root, name in watched.items()
                    if Path(changed).is_relative_to(root)
                }
                for name in sorted(names):
                    self.trigger(name, "commit")
        except Exception:  # the watcher died: polls and drift checks still run
            log.exception("watching local repositories failed; drift checks continue")
