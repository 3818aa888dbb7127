"""Execute one claimed run, from PENDING to a final state (worker: one run).

1. Read the deployment (gone: CANCELLED, as Prefect does), its pool and its repository's last
   applied commit.
2. Fetch the flow code: the pull steps, in a fresh directory of the run
   (reconciler/worker/flow_code.py), unless the backend applies them where the run executes.
   A failure there: CRASHED, with the step's message.
3. The pool type's backend (reconciler/worker/backends/) renders the job configuration (pool
   template < deployment job variables < run overrides) and starts the run (a process, a
   container). It cannot start: CRASHED.
4. A plain function (reconciler's runner): RUNNING, with the pid or container id; output is
   stored as it comes, secrets masked, up to the run's log budget
   (reconciler/worker/log_budget.py). Exit 0: COMPLETED. Otherwise FAILED, with the exit
   code, what it usually means, and the last lines of output.
   A Prefect flow (reconciler/worker/flow_kind.py): Prefect's engine runs it against the
   Prefect API this worker serves (reconciler/worker/prefect_runtime.py) and moves the run
   through its states itself; the worker only records the process. Prefect's engine exits 0
   even when the flow failed, so the outcome is the state the API recorded, never the exit
   code; a process that ended without a final state is CRASHED, with the reason.
5. Cancelled meanwhile: CANCELLED.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reconciler.core.masking import Masker
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind
from reconciler.model.runs import FlowRun, RunState
from reconciler.model.specs import DeploymentSpec
from reconciler.prefect_rules.sensitive import sensitive_values
from reconciler.settings import Settings
from reconciler.steps.runner import StepFailed, TemplateValues
from reconciler.store import Store
from reconciler.worker.backends.interface import (
    Backend,
    PrefectEngineRun,
    RunRequest,
    StartedRun,
    StartError,
)
from reconciler.worker.flow_code import fetch_flow_code
from reconciler.worker.job_config import RunContext
from reconciler.worker.log_budget import DEFAULT_MAX_LOG_BYTES, LogBudget, for_message
from reconciler.worker.prefect_runtime import PrefectRuntime

log = logging.getLogger("reconciler.worker")

LOG_FLUSH_SECONDS = 0.25
STORE_RETRY_SECONDS = 1.0
TAIL_LINES = 20
_EXIT_MEANINGS = {
    1: "the flow raised an exception",
    2: "the flow could not be loaded",
    -9: "killed (SIGKILL), perhaps out of memory",
    137: "killed (SIGKILL), perhaps out of memory",
    -15: "terminated (SIGTERM)",
    143: "terminated (SIGTERM)",
    125: "the container could not be created",
    126: "the command could not be run",
    127: "the command was not found",
}
_API_UNREACHABLE = ("Failed to reach API", "ConnectError", "All connection attempts failed")
"""What Prefect's client prints when PREFECT_API_URL does not answer."""


class RunLog:
    """Output lines of one run, masked, stored in batches, and the last few kept for errors."""

    def __init__(
        self,
        store: Store,
        lock: threading.Lock,
        run_id: str,
        masker: Masker,
        max_bytes: int = DEFAULT_MAX_LOG_BYTES,
    ) -> None:
        self.budget = LogBudget(max_bytes)
        self.store = store
        self.lock = lock
        self.run_id = run_id
        self.masker = masker
        self.pending: list[tuple[str, str]] = []
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.guard = threading.Lock()
        self.last_flush = time.monotonic()
        self.echo = False
        """Also print each line on the worker's output (the job's stream_output)."""

    def keep_flushing(self, done: threading.Event) -> None:
        """Store what came in every LOG_FLUSH_SECONDS, while output trickles (run as a thread
        until `done`)."""
        while not done.wait(LOG_FLUSH_SECONDS):
            self.flush()
        self.flush()

    def hide(self, secrets: Iterable[str]) -> None:
        self.masker = self.masker.with_secrets(list(secrets))

    def add(self, stream: str, line: str) -> None:
        shown = self.masker(line)
        with self.guard:
            kept = self.budget.admit(shown)
            if kept is not None:
                self.pending.append((stream, kept))
            self.tail.append(for_message(shown))
            due = time.monotonic() - self.last_flush >= LOG_FLUSH_SECONDS
        if self.echo and kept is not None:
            print(f"[{self.run_id[:8]}] {kept}", flush=True)
        if due:
            self.flush()

    def finish(self) -> None:
        """The output ended: store what is pending, and say what the budget left out."""
        with self.guard:
            truncated = self.budget.truncation_line()
            if truncated is not None and (not self.pending or self.pending[-1][1] != truncated):
                self.pending.append(("stderr", truncated))
        if truncated is not None and self.echo:
            print(f"[{self.run_id[:8]}] {truncated}", flush=True)
        self.flush()

    def flush(self) -> None:
        with self.guard:
            batch, self.pending = self.pending, []
            self.last_flush = time.monotonic()
        if batch:
            with self.lock:
                self.store.append_run_logs(self.run_id, batch)


class RunExecution:
    def __init__(
        self,
        run: FlowRun,
        *,
        settings: Settings,
        environ: dict[str, str],
        worker_name: str,
        backend: Backend,
        work_dir: Path | None,
        cancel_grace_seconds: float,
        prefect: PrefectRuntime | None = None,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    ) -> None:
        self.max_log_bytes = max_log_bytes
        self.run = run
        self.prefect = prefect
        self.settings = settings
        self.environ = environ
        self.worker_name = worker_name
        self.backend = backend
        self.work_dir = work_dir
        self.grace = cancel_grace_seconds
        self.finished = threading.Event()
        self.started: StartedRun | None = None
        self.cancel_requested = False
        self.abandoned: str | None = None
        self.lock = threading.Lock()

    # -- requests from the worker loop ---------------------------------------------------------

    def cancel(self) -> None:
        if self.cancel_requested:
            return
        self.cancel_requested = True
        if self.started is not None:
            threading.Thread(target=self.started.handle.stop, args=(self.grace,)).start()

    def abandon(self, reason: str, grace: float) -> None:
        self.abandoned = reason
        if self.started is not None:
            self.started.handle.stop(grace)

    # -- the run -------------------------------------------------------------------------------

    def execute(self) -> None:
        store = self._open_store()
        if store is None:  # the worker stopped while the store was away: a restart crashes it
            self.finished.set()
            return
        try:
            self._execute(store)
        except Exception as exc:  # a bug or an unexpected failure: the run must not hang
            log.exception("flow run %s: unexpected failure", self.run.id)
            with self.lock:
                store.set_run_state(
                    self.run.id, RunState.CRASHED, f"worker error: {type(exc).__name__}: {exc}"
                )
        finally:
            store.close()
            self.finished.set()

    def _open_store(self) -> Store | None:
        """The run's own connection. The run is claimed: it must run or end, so a store that
        is away for a while (a restart, an outage) is waited for, until the worker stops."""
        while True:
            try:
                return self.settings.open_store()
            except Exception as exc:  # unreachable for now: the worker's loop waits it out too
                if self.abandoned is not None:
                    return None
                log.warning(
                    "flow run %s: the store does not answer, trying again: %s",
                    self.run.id,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
                time.sleep(STORE_RETRY_SECONDS)

    def _execute(self, store: Store) -> None:
        run = self.run
        deployment = store.get(Kind.DEPLOYMENT, run.deployment)
        if deployment is None:
            self._end(store, RunState.CANCELLED, f"deployment {run.deployment} no longer exists")
            return
        spec = deployment.deployment_spec()
        # Only what templating and masking need: not every object of the store, for each run.
        observed = ObservedState(
            revision=0,
            variables=store.variables(),
            blocks={(b.type_slug, b.name): b.value for b in store.blocks()},
        )
        masker = Masker([*observed.secret_values, *sensitive_values(spec)])
        run_log = RunLog(store, self.lock, run.id, masker, self.max_log_bytes)
        commit = None
        if deployment.owner is not None:
            commit = next(
                (r.last_commit for r in store.repositories() if r.repo == deployment.owner.repo),
                None,
            )
        scratch = Path(tempfile.mkdtemp(prefix=f"reconciler-run-{run.id[:8]}-", dir=self.work_dir))
        done = threading.Event()
        flusher = threading.Thread(target=run_log.keep_flushing, args=(done,), daemon=True)
        flusher.start()
        try:
            try:
                flow_dir = self._fetch_code(
                    spec, deployment.source_commit, commit, scratch, observed, masker, run_log
                )
            except StepFailed as exc:
                run_log.flush()
                self._end(store, RunState.CRASHED, f"pull steps failed: {exc.message}")
                return
            if self._interrupted():
                self._finish_interrupted(store)
                return
            pool = store.get(Kind.WORK_POOL, run.pool)
            template = pool.pool_spec().base_job_template if pool else {}
            try:
                self.started = started = self.backend.start(
                    self._request(spec, template, flow_dir, run_log, observed, scratch)
                )
            except StartError as exc:
                run_log.flush()
                self._end(store, RunState.CRASHED, f"the infrastructure could not start: {exc}")
                return
            if not self._record_start(store, started):  # cancelled (or crashed) before it started
                started.handle.stop(self.grace)
                started.handle.wait()
                return
            if self._interrupted():
                started.handle.stop(self.grace)
            code = started.handle.wait()
            run_log.finish()
            if self._interrupted():
                self._finish_interrupted(store, code)
            elif started.engine is not None and started.engine.active:
                self._end_engine_run(store, code, run_log, started.engine)
            elif code == 0:
                self._end(store, RunState.COMPLETED, "exit code 0", exit_code=0)
            else:
                meaning = _EXIT_MEANINGS.get(code)
                last = "\n".join(run_log.tail)
                message = f"exit code {code}" + (f" ({meaning})" if meaning else "")
                if last:
                    message += f"; last lines of output:\n{last}"
                self._end(store, RunState.FAILED, message, exit_code=code)
        finally:
            done.set()
            flusher.join(timeout=10)
            shutil.rmtree(scratch, ignore_errors=True)

    def _fetch_code(
        self,
        spec: DeploymentSpec,
        written_at: str | None,
        commit: str | None,
        scratch: Path,
        observed: Any,
        masker: Masker,
        run_log: RunLog,
    ) -> Path:
        pull_steps = spec.pull_steps
        if not pull_steps:
            return Path.cwd()
        if not self.backend.runs_pull_steps(pull_steps):
            return Path.cwd()  # e.g. the code is in a container's image: the steps apply there
        values = TemplateValues(
            variables=observed.variables,
            blocks=lambda slug, name: observed.blocks.get((slug, name)),
        )
        return fetch_flow_code(
            pull_steps,
            deployment=self.run.deployment,
            repository_commit=commit,
            written_at=written_at,
            workdir=scratch,
            env=self.environ,
            values=values,
            masker=masker,
            write=lambda line: run_log.add("pull", line),
        )

    def _request(
        self,
        spec: DeploymentSpec,
        template: Mapping[str, Any],
        flow_dir: Path,
        run_log: RunLog,
        observed: Any,
        scratch: Path,
    ) -> RunRequest:
        run = self.run
        context = RunContext(
            flow_run_id=run.id,
            flow_run_name=run.name,
            flow_name=run.flow_name,
            deployment_name=run.deployment,
            work_pool_name=run.pool,
            worker_name=self.worker_name,
            flow_run_fields={"parameters": run.parameters, "name": run.name, "id": run.id},
        )
        return RunRequest(
            run=run,
            context=context,
            entrypoint=spec.entrypoint,
            pull_steps=spec.pull_steps,
            job_variables=spec.job_variables,
            base_job_template=template,
            code_dir=flow_dir,
            scratch=scratch,
            output=run_log,
            environ=self.environ,
            grace_seconds=self.grace,
            blocks=lambda slug, name: observed.blocks.get((slug, name)),
            variables=lambda name: observed.variables[name],
            prefect=self.prefect,
        )

    def _record_start(self, store: Store, started: StartedRun) -> bool:
        """Record the started process: False when the run was cancelled or crashed meanwhile.

        reconciler's runner: the worker moves the run to RUNNING. Prefect's engine proposes
        RUNNING itself through the API (and may already have done so): the process is
        recorded on the PENDING state, and a run that moved on is left to the engine."""
        by = f"started by {self.worker_name}"
        infrastructure_id = started.handle.infrastructure_id
        with self.lock:
            if started.engine is None or not started.engine.active:
                moved = store.set_run_state(
                    self.run.id,
                    RunState.RUNNING,
                    by,
                    expected=[RunState.PENDING],
                    infrastructure_id=infrastructure_id,
                )
                return moved is not None
            moved = store.set_run_state(
                self.run.id,
                RunState.PENDING,
                f"{by} (Prefect engine, {infrastructure_id})",
                expected=[RunState.PENDING],
                infrastructure_id=infrastructure_id,
            )
            if moved is not None:
                return True
            now = store.get_run(self.run.id)
        return now is not None and now.state is RunState.RUNNING

    def _end_engine_run(
        self, store: Store, code: int, run_log: RunLog, engine: PrefectEngineRun
    ) -> None:
        """The outcome of a Prefect engine run: the state it reported through the API, or
        CRASHED with what the process said when it ended without one."""
        with self.lock:
            now = store.get_run(self.run.id)
        if now is None or now.state.is_final:
            state = now.state.value if now else "gone"
            log.info("flow run %s %s (engine exit code %s)", self.run.id, state, code)
            return
        last = "\n".join(run_log.tail)
        reason = engine.crash_reason(code, list(run_log.tail))
        if reason is not None:
            self._end(store, RunState.CRASHED, reason, exit_code=code)
            return
        if any(marker in last for marker in _API_UNREACHABLE):
            message = (
                f"the Prefect API at {engine.api_url} could not be reached by the flow's "
                f"process{engine.unreachable_hint}"
            )
        elif code == 0:
            message = "the flow's process exited without reporting a final state"
        else:
            meaning = _EXIT_MEANINGS.get(code) if code not in (1, 2) else None
            message = f"the flow's process exited with code {code}" + (
                f" ({meaning})" if meaning else ""
            )
        if last:
            message += f"; last lines of output:\n{last}"
        self._end(store, RunState.CRASHED, message, exit_code=code)

    # -- endings -------------------------------------------------------------------------------

    def _interrupted(self) -> bool:
        """Set from the worker loop's thread at any time: read afresh each time."""
        return self.cancel_requested or self.abandoned is not None

    def _finish_interrupted(self, store: Store, code: int | None = None) -> None:
        if self.abandoned:
            self._end(store, RunState.CRASHED, self.abandoned, exit_code=code)
        else:
            with self.lock:
                store.set_run_state(
                    self.run.id,
                    RunState.CANCELLED,
                    "cancelled by request",
                    expected=[RunState.CANCELLING, RunState.PENDING, RunState.RUNNING],
                    exit_code=code,
                )

    def _end(
        self, store: Store, state: RunState, message: str, exit_code: int | None = None
    ) -> None:
        """Record the final state; a store that is away is retried (the run must not stay
        RUNNING under a live worker), until the worker stops (a restart then crashes it)."""
        pause = 0.5
        while True:
            try:
                with self.lock:
                    store.set_run_state(self.run.id, state, message, exit_code=exit_code)
                break
            except Exception as exc:
                if self.abandoned is not None:  # the worker stops: its restart crashes the run
                    raise
                log.warning(
                    "flow run %s: cannot record %s yet, trying again: %s",
                    self.run.id,
                    state.value,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
        log.info("flow run %s %s: %s", self.run.id, state.value, message.splitlines()[0])
