"""What a worker backend is (worker: between a claimed run and its infrastructure).

A backend turns one run, whose flow code the worker has fetched, into something running
(a process, a container) and hands back a `RunHandle`: its output comes line by line to
`request.output` as it is printed, `stop(grace)` cancels it, `wait()` reports its exit code.
The worker (reconciler/worker/execute.py) does everything else the same way for every
backend: the pull steps, the run's states, its logs, cancellation requests.

A backend raises `StartError` with the reason when the run cannot start (the run is then
CRASHED with it). Backends are found by pool type in reconciler/worker/backends/__init__.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reconciler.model.runs import FlowRun
from reconciler.model.specs import StepSpec
from reconciler.prefect_rules.templating import BlockLookup
from reconciler.worker.job_config import RunContext, VariableLookup
from reconciler.worker.prefect_runtime import PrefectRuntime
from reconciler.worker.process_backend import StartError

__all__ = [
    "Backend",
    "PrefectEngineRun",
    "RunHandle",
    "RunOutput",
    "RunRequest",
    "StartError",
    "StartedRun",
]


class RunOutput(Protocol):
    """Where a run's output goes (the worker's is reconciler/worker/execute.py `RunLog`)."""

    echo: bool
    """Also print each line on the worker's output (a job's `stream_output`)."""

    def add(self, stream: str, line: str) -> None:
        """One line of `stream` ("stdout" or "stderr"), without its line end, in order."""

    def hide(self, secrets: Iterable[str]) -> None:
        """Mask these values in every line from now on (secrets the job configuration used)."""


class RunHandle(Protocol):
    """One started run."""

    @property
    def infrastructure_id(self) -> str:
        """What the run is recorded with (`pid P started T on HOST`, `container ID`)."""

    def wait(self) -> int:
        """Block until the run ends; its exit code. Every line of output has been handed to
        the request's `output` when this returns."""

    def stop(self, grace_seconds: float) -> None:
        """Ask the run to stop (SIGTERM); kill it when it is still there after
        `grace_seconds`. Safe to call from another thread while `wait()` blocks."""


@dataclass(frozen=True)
class RunRequest:
    """Everything a backend needs to start one run; the worker has fetched its code."""

    run: FlowRun
    context: RunContext
    """The run's identity, for the job template's placeholders and the labels."""
    entrypoint: str
    pull_steps: Sequence[StepSpec]
    """The deployment's pull steps (already run by the worker when `runs_pull_steps`)."""
    job_variables: Mapping[str, Any]
    """The deployment's job variables (the run's own are in `run.job_variables`)."""
    base_job_template: Mapping[str, Any]
    """The pool's (empty: the pool type's default)."""
    code_dir: Path
    """The flow code on this machine: where the pull steps put it, else the worker's
    working directory."""
    scratch: Path
    """A directory of this run's own on this machine, removed when the run ends."""
    output: RunOutput
    environ: Mapping[str, str]
    """The worker's environment (for `{{ $VAR }}` placeholders and a process's base)."""
    grace_seconds: float
    """How long a run has to stop after SIGTERM before it is killed."""
    blocks: BlockLookup | None = None
    """Block values for `{{ prefect.blocks.TYPE.NAME }}` placeholders."""
    variables: VariableLookup | None = None
    """Variable values for `{{ prefect.variables.NAME }}` placeholders."""
    prefect: PrefectRuntime | None = None
    """The Prefect API the worker gives Prefect flows; None: every flow is called as a plain
    function by reconciler's runner."""


def _no_reason(exit_code: int, tail: Sequence[str]) -> str | None:
    return None


@dataclass
class PrefectEngineRun:
    """A run that Prefect's engine executes: it reports the run's states through the API
    itself, and its exit code does not say whether the flow failed."""

    api_url: str
    """The PREFECT_API_URL the run's process got."""
    unreachable_hint: str = ""
    """What to do when the process could not reach that API (appended to the message)."""
    crash_reason: Callable[[int, Sequence[str]], str | None] = _no_reason
    """Why the process ended without a final state, when the backend can tell from the exit
    code and the last lines of output (None: the worker's generic message)."""
    plain_function: threading.Event = field(default_factory=threading.Event)
    """Set when the runner found a plain function after all (code it could only read where
    it runs): the exit code decides the outcome, as for any plain function."""

    @property
    def active(self) -> bool:
        return not self.plain_function.is_set()


@dataclass(frozen=True)
class StartedRun:
    """What `Backend.start` hands back: the run's handle, and how its outcome is read."""

    handle: RunHandle
    engine: PrefectEngineRun | None = None
    """Set when Prefect's engine runs the flow; None: reconciler's runner (or the job's own
    command) runs it and its exit code is the outcome."""


class Backend(Protocol):
    """How runs of one pool type start (reconciler/worker/backends/__init__.py finds it)."""

    def runs_pull_steps(self, pull_steps: Sequence[StepSpec]) -> bool:
        """Whether the worker runs these pull steps on this machine before `start`; False
        when they only apply where the run executes (a directory in a container's image)."""

    def start(self, request: RunRequest) -> StartedRun:
        """Start the run; StartError with the reason when it cannot start."""
