"""One watched repository's reconcile loop (daemon: fetch -> plan -> steps -> apply -> status).

Level-triggered, as Flux and kopf are: whatever woke it (a new commit seen by the watcher, a
poll, a webhook, the drift timer, a retry), an attempt looks at the whole state again:

1. take the repository's lease in the store, so two daemons never work on it at once;
2. fetch: which commit is the branch at? A failed fetch changes nothing (Error, retried with
   backoff), so a failed read can never delete anything;
3. a new commit is applied (Progressing, then Synced); invalid files or a refused plan leave
   the previous state in place and stall until the commit changes (Stalled); a failing step
   or store is retried (Error);
4. the same commit is checked for drift: with self-heal the plan is applied, reverting what was
   changed out of band; without, the drift is reported (OutOfSync);
5. the status is written to the store, and one log line says what happened.

Triggers are coalesced: while an attempt runs, further triggers make one more attempt after it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.core.errors import (
    ConfigError,
    PlanRefused,
    ReconcilerError,
    StaleLeaseError,
    StaleStateError,
)
from reconciler.daemon.config import DaemonSettings, RepositoryConfig
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.sources import DaemonSource, Fetched
from reconciler.daemon.status import RepoStatus, State, in_seconds_iso, now_iso, retry_delay
from reconciler.desired.build_cache import BuildCache
from reconciler.engine.stages import ReconcileOutcome, ReconcileRequest, reconcile
from reconciler.model.observed import Fence
from reconciler.plan.model import Plan
from reconciler.store.base import LeaseStore, Store

LEASE_SECONDS = 60.0
CHECKS_STATE = frozenset({"start", "drift", "webhook", "retry", "api"})
"""Triggers that check the store against the commit even when the commit did not move."""
LEASE_WAIT_SECONDS = 2.0
STORE_BUSY_RETRY_SECONDS = 0.5
_MAX_MESSAGE = 2000

log = logging.getLogger("reconciler.daemon")


def holder_name() -> str:
    """This process, as named in leases: host and pid, so a restart on the same host can
    tell its own dead predecessor from a live daemon."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(holder: str) -> bool:
    """True only for a holder on this host whose process is gone."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def take_lease(store: LeaseStore, name: str, holder: str, ttl_seconds: float) -> str | None:
    """Take or renew lease `name`, taking it over at once from a dead process on this host;
    None when held, else the live holder."""
    current = store.acquire_lease(name, holder, ttl_seconds)
    if current is not None and holder_is_dead(current):
        current = store.acquire_lease(name, holder, ttl_seconds, replacing=current)
    return current


@dataclass
class Runtime:
    """What every controller shares."""

    settings: DaemonSettings
    status_store: Store
    store_lock: threading.Lock
    metrics: Metrics
    holder: str
    schedule_retry: Callable[[str, float], None]
    environ: dict[str, str]
    stopping: threading.Event
    fence: Fence | None = None
    """The leader lease this daemon holds (None while it stands by); every apply is fenced."""
    notify: Callable[[str, str, str], None] = lambda event, title, body: None
    """Send a notification (event, title, body): reconciler/daemon/notify.py."""
    planning_lock: threading.Lock = field(default_factory=threading.Lock)
    """One plan-and-apply at a time in this daemon: planning is CPU-bound (the GIL gains
    nothing from parallel plans) and each apply moves the store's revision, so parallel plans
    would mostly go stale. Fetches stay parallel."""


class RepoController:
    def __init__(self, config: RepositoryConfig, source: DaemonSource, runtime: Runtime):
        self.config = config
        self.source = source
        self.runtime = runtime
        self.cache = BuildCache()
        """Each file's result by git blob id: a commit that changes one file reads that one."""
        self._wake = threading.Lock()
        self._pending: list[str] = []
        self._running = False
        self.rollback_commit: str | None = None
        """Set by a rollback (web API): the next attempt applies this commit, not the branch."""
        self.status = RepoStatus(config.name, config.source, config.branch)
        self._reload_status()
        self._settled: State = self.status.state
        """The last state other than Progressing (notifications: reconciler/daemon/notify.py)."""

    # -- triggers ----------------------------------------------------------------------------

    def trigger(self, reason: str, submit: Callable[[Callable[[], None]], object]) -> None:
        """Ask for an attempt; `submit` runs the loop on a worker thread when none is running."""
        with self._wake:
            self._pending.append(reason)
            if self._running:
                return
            self._running = True
        submit(self._drain)

    def _drain(self) -> None:
        try:
            self._attempt_pending()
        except Exception:
            # The next trigger must start attempts again: a controller left "running" would
            # ignore every commit until the daemon restarts.
            log.exception(
                "repo=%s the attempts stopped; the next trigger restarts them", self.config.name
            )
            with self._wake:
                self._running = False

    def _attempt_pending(self) -> None:
        while not self.runtime.stopping.is_set():
            with self._wake:
                if not self._pending:
                    self._running = False
                    return
                reasons, self._pending = self._pending, []
            try:
                self.attempt(reasons)
            except Exception:  # a bug, or the store gone: keep the daemon alive, retry later
                log.exception("repo=%s unexpected failure", self.config.name)
                self._failed("internal error (see the daemon's log)", self.status.fetched_commit)
        with self._wake:
            self._running = False

    # -- one attempt ---------------------------------------------------------------------------

    def attempt(self, reasons: list[str]) -> None:
        if self.runtime.fence is None:
            return  # standing by: the active daemon does the work
        holder = self._take_lease()
        if holder is not None:
            log.info(
                "repo=%s waiting: another daemon (%s) is working on it", self.config.name, holder
            )
            self.runtime.schedule_retry(self.config.name, LEASE_WAIT_SECONDS)
            return
        started = time.monotonic()
        done = threading.Event()
        renewal = threading.Thread(target=self._renew_lease, args=(done,), daemon=True)
        renewal.start()
        try:
            self._reload_status()
            self._attempt(reasons, started)
        finally:
            done.set()
            renewal.join()
            with self.runtime.store_lock:
                self.runtime.status_store.release_lease(self.config.name, self.runtime.holder)

    def _renew_lease(self, done: threading.Event) -> None:
        """Keep the lease while a long attempt (a slow build) runs."""
        while not done.wait(LEASE_SECONDS / 3):
            with self.runtime.store_lock:
                self.runtime.status_store.acquire_lease(
                    self.config.name, self.runtime.holder, LEASE_SECONDS
                )

    def _reload_status(self) -> None:
        """The store's status is the truth: another daemon may have moved it on while this one
        waited for the lease (then its commit is not applied twice)."""
        with self.runtime.store_lock:
            stored = {r.name: r.status for r in self.runtime.status_store.repo_statuses()}
        if self.config.name in stored:
            self.status = RepoStatus.from_json(stored[self.config.name]).with_(
                source=self.config.source, branch=self.config.branch
            )

    def _take_lease(self) -> str | None:
        with self.runtime.store_lock:
            return take_lease(
                self.runtime.status_store, self.config.name, self.runtime.holder, LEASE_SECONDS
            )

    def _attempt(self, reasons: list[str], started: float) -> None:
        name = self.config.name
        self._save(self.status.with_(last_attempt_at=now_iso()))
        rollback = self.rollback_commit if "rollback" in reasons else None
        if rollback is not None:
            self.rollback_commit = None
            note = (
                f"rolled back to {rollback[:12]}; automatic sync is suspended until "
                f"`reconcile resume {name}`"
            )
            self._save(self.status.with_(state=State.PROGRESSING, message=note))
            self._apply(Fetched(rollback, note), started)
            return
        try:
            fetched = self.source.fetch()
        except ReconcilerError as exc:
            self._failed(f"fetch failed: {_message(exc)}", self.status.fetched_commit)
            self._log("fetch-failed", self.status.fetched_commit, started, _message(exc))
            return
        if fetched.note:
            log.warning("repo=%s commit=%s %s", name, fetched.commit[:12], fetched.note)
        status = self.status.with_(fetched_commit=fetched.commit)
        new_commit = fetched.commit != status.applied_commit
        if status.state is State.STALLED and fetched.commit == status.stalled_commit:
            self._save(status.with_(next_attempt_at=None))
            self._log("stalled", fetched.commit, started, "waiting for a new commit")
            return
        if not new_commit and status.state is State.ERROR:
            new_commit = True  # the last attempt at this commit failed: apply it again
        if new_commit:
            self._save(status.with_(state=State.PROGRESSING, message=_why(reasons)))
            self._apply(fetched, started)
        elif CHECKS_STATE & set(reasons):
            self._save(status)
            self._check_drift(fetched, started)
        else:  # a poll or a ref event that brought no new commit: no work
            self._save(status)

    def _apply(self, fetched: Fetched, started: float) -> None:
        try:
            outcome = self._reconcile(fetched.commit, dry_run=False)
        except (ConfigError, PlanRefused) as exc:
            self._stalled(fetched.commit, _message(exc))
            self._log("stalled", fetched.commit, started, _message(exc))
            return
        except StaleLeaseError as exc:
            self.runtime.fence = None  # another daemon is active now: stand by
            self._log("deposed", fetched.commit, started, _message(exc))
            return
        except StaleStateError as exc:
            # Other writers (another daemon, a CLI apply) kept the store busy: not a failure
            # of this repository. Try again soon, without the backoff of errors.
            self._save(self.status.with_(message=f"store busy, trying again: {_message(exc)}"))
            self.runtime.schedule_retry(self.config.name, STORE_BUSY_RETRY_SECONDS)
            self._log("retry", fetched.commit, started, _message(exc))
            return
        except ReconcilerError as exc:
            self._failed(_message(exc), fetched.commit)
            self._log("error", fetched.commit, started, _message(exc))
            return
        if outcome.errors:
            text = "; ".join(outcome.masker(d.render()) for d in outcome.errors)
            self._stalled(fetched.commit, text)
            self._log("stalled", fetched.commit, started, text)
            return
        self.runtime.metrics.builds(
            self.config.name, sum(1 for s in outcome.steps if s.status == "ran")
        )
        if outcome.step_failures:
            failure = outcome.step_failures[0]
            text = outcome.masker(failure.message)
            self._failed(f"a step failed: {text}", fetched.commit)
            self._log("error", fetched.commit, started, text)
            return
        self._synced(fetched.commit, fetched.note or _summary_text(outcome.plan, "applied"))
        self._log("applied", fetched.commit, started, _summary_text(outcome.plan, "applied"))

    def _check_drift(self, fetched: Fetched, started: float) -> None:
        heal = self.config.self_heal
        try:
            outcome = self._reconcile(fetched.commit, dry_run=not heal)
        except StaleLeaseError as exc:
            self.runtime.fence = None
            self._log("deposed", fetched.commit, started, _message(exc))
            return
        except (ConfigError, PlanRefused) as exc:
            self._stalled(fetched.commit, _message(exc))
            self._log("stalled", fetched.commit, started, _message(exc))
            return
        except ReconcilerError as exc:
            self._failed(_message(exc), fetched.commit)
            self._log("error", fetched.commit, started, _message(exc))
            return
        drift = _drifted(outcome.plan)
        if outcome.errors or outcome.step_failures:
            text = "; ".join(outcome.masker(d.render()) for d in outcome.errors) or (
                outcome.masker(outcome.step_failures[0].message)
            )
            self._failed(text, fetched.commit)
            self._log("error", fetched.commit, started, text)
            return
        if drift and (heal or drift != self.status.drift):
            self.runtime.notify(
                "drift",
                f"reconciler: drift in {self.config.name}",
                f"Objects of {self.config.name} were changed out of band: {', '.join(drift)}; "
                + ("reverted (self_heal)." if heal else "not reverted (self_heal is off)."),
            )
        if not drift:
            self._synced(fetched.commit, "in sync")
            self._log("in-sync", fetched.commit, started, None)
        elif heal:
            text = f"drift reverted: {', '.join(drift)}"
            self._synced(fetched.commit, text)
            self._log("healed", fetched.commit, started, text)
        else:
            self._save(
                self.status.with_(
                    state=State.OUT_OF_SYNC,
                    drift=drift,
                    message=f"drift: {', '.join(drift)} (self_heal is off)",
                    next_attempt_at=in_seconds_iso(self.runtime.settings.drift_interval),
                )
            )
            self._log("out-of-sync", fetched.commit, started, ", ".join(drift))

    def _reconcile(self, commit: str, *, dry_run: bool) -> ReconcileOutcome:
        request = ReconcileRequest(
            repositories=(self.source.location,),
            ref=commit,
            prefect_glob=self.config.prefect_glob,
            settings=self.runtime.settings.plan_settings,
            dry_run=dry_run,
            prune=self.config.prune,
            allow_empty=self.config.allow_empty,
            step_output=lambda line: log.info("repo=%s %s", self.config.name, line),
            quiet=False,
            schedule=not dry_run,
            fence=self.runtime.fence,
            cache=self.cache,
        )
        with self.runtime.planning_lock:
            return reconcile(request, environ=self.runtime.environ)

    # -- outcomes ------------------------------------------------------------------------------

    def _synced(self, commit: str, message: str) -> None:
        self.runtime.metrics.success(self.config.name)
        self._save(
            self.status.with_(
                state=State.SYNCED,
                applied_commit=commit,
                stalled_commit=None,
                message=message,
                failures=0,
                drift=[],
                last_success_at=now_iso(),
                next_attempt_at=in_seconds_iso(self.runtime.settings.drift_interval),
            )
        )

    def _stalled(self, commit: str, message: str) -> None:
        self.runtime.metrics.error(self.config.name)
        self._save(
            self.status.with_(
                state=State.STALLED,
                stalled_commit=commit,
                message="the files at this commit cannot be applied; what was applied before "
                "stays until a new commit fixes them",
                last_error=message[:_MAX_MESSAGE],
                last_error_at=now_iso(),
                next_attempt_at=None,
            )
        )

    def _failed(self, message: str, commit: str | None) -> None:
        self.runtime.metrics.error(self.config.name)
        failures = self.status.failures + 1
        delay = retry_delay(failures)
        # The retry first: when the store is what failed, saving the status fails too, and
        # the retry is what brings the repository back once the store is.
        self.runtime.schedule_retry(self.config.name, delay)
        status = self.status.with_(
            state=State.ERROR,
            message=f"retrying in {delay:.0f}s (failure {failures} in a row)",
            last_error=message[:_MAX_MESSAGE],
            last_error_at=now_iso(),
            failures=failures,
            next_attempt_at=in_seconds_iso(delay),
        )
        try:
            self._save(status)
        except Exception as exc:  # the store is away: the status stays in memory (GET /status)
            log.warning(
                "repo=%s the failure could not be recorded in the store: %s",
                self.config.name,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )

    def _save(self, status: RepoStatus) -> None:
        # Entering Error or Stalled is told once: a retry passes through Progressing and
        # fails again without a new notification.
        entered = status.state if status.state != self._settled else None
        if status.state is not State.PROGRESSING:
            self._settled = status.state
        self.status = status
        if entered in (State.ERROR, State.STALLED):
            self.runtime.notify(
                entered.value.lower(),
                f"reconciler: {status.name} is {entered.value}",
                f"Repository {status.name} ({status.source}, branch {status.branch}) is "
                f"{entered.value} at {(status.fetched_commit or '?')[:12]}: "
                f"{status.last_error or status.message or ''}",
            )
        with self.runtime.store_lock:
            self.runtime.status_store.put_repo_status(status.name, status.to_json())

    def _log(self, outcome: str, commit: str | None, started: float, detail: str | None) -> None:
        duration = time.monotonic() - started
        self.runtime.metrics.reconciled(self.config.name, outcome, duration)
        log.info(
            "reconcile repo=%s commit=%s outcome=%s duration=%.3fs%s",
            self.config.name,
            (commit or "-")[:12],
            outcome,
            duration,
            f" detail={detail}" if detail else "",
            extra={
                "repo": self.config.name,
                "commit": commit,
                "outcome": outcome,
                "duration_seconds": round(duration, 4),
                "detail": detail,
            },
        )


def _why(reasons: list[str]) -> str:
    return "applying: " + ", ".join(sorted(set(reasons)))


def _message(exc: ReconcilerError) -> str:
    if isinstance(exc, ConfigError):
        shown = [d.render() for d in exc.diagnostics if d.is_error][:5]
        return f"{exc.message}: " + " | ".join(shown)
    return exc.message + (f" ({exc.hint})" if exc.hint else "")


def _summary_text(plan: Plan, verb: str) -> str:
    summary = plan.summary
    if not plan.has_changes:
        return "no changes"
    return f"{verb}: {summary.add} added, {summary.change} changed, {summary.destroy} destroyed"


def _drifted(plan: Plan) -> list[str]:
    return [f"{change.action.symbol}{change.kind.value} {change.key}" for change in plan.changes]
