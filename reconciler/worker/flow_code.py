"""Get a deployment's flow code where a run will execute (worker: before the flow starts).

Runs the deployment's stored pull steps with the step runner, in a directory of the run, and returns
the directory the flow's entrypoint is relative to: the last `directory` a step returned, else the
run's directory (Prefect's rule, docs/design-notes.md#step-runner).

Pull steps are imported here, by the worker's own Python, never where the plan ran: a custom
step's package must be installed for it, or named in the step's `requires:`, which is installed
with that Python's pip before the step runs (as Prefect's worker does).

The clone step generated for a file without pull steps (reconciler/steps/default_pull.py) names
no commit: here it is pinned to the commit its repository was last applied at, so a run
executes exactly the code that was reconciled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.diagnostics import Location
from reconciler.core.masking import Masker
from reconciler.model.specs import StepSpec
from reconciler.prefect_rules.yamlload import Path as StepPath
from reconciler.steps.context import StepContext
from reconciler.steps.default_pull import CLONE_STEP_ID, GIT_CLONE
from reconciler.steps.output import LineWriter
from reconciler.steps.runner import TemplateValues, run_steps
from reconciler.steps.spec import PlacedStep


def pinned_pull_steps(
    pull_steps: Sequence[StepSpec], repository_commit: str | None
) -> list[StepSpec]:
    """The steps with the generated clone pinned to `repository_commit` (when known)."""
    pinned = list(pull_steps)
    for index, step in enumerate(pinned):
        if (
            repository_commit
            and step.name == GIT_CLONE
            and step.id == CLONE_STEP_ID
            and not step.argument("branch")
            and not step.argument("commit_sha")
        ):
            pinned[index] = step.with_arguments(commit_sha=repository_commit)
    return pinned


@dataclass(frozen=True)
class StoredPositions:
    """Where each pull step was written, as the build stored it with the deployment: the step
    runner asks for a path (`("pull", index, ...)`) when a step fails and gets that step's
    file:line:column. Positions are those of `written_at`, the commit the deployment was last
    changed at; when the code that runs is of another commit, the file is named `FILE@COMMIT`,
    since lines above the step may have moved since. A step with no position (the generated
    clone, or a deployment stored before positions were) is named by its place in the list."""

    deployment: str
    steps: Sequence[StepSpec]
    written_at: str | None = None
    running_commit: str | None = None

    def location(self, path: StepPath) -> Location:
        index = path[1] if len(path) > 1 and isinstance(path[1], int) else 0
        step = self.steps[index] if 0 <= index < len(self.steps) else None
        position = step.position if step is not None else None
        if position is None:
            return Location(f"deployment {self.deployment}: pull step {index + 1}")
        moved = self.written_at and self.running_commit and self.written_at != self.running_commit
        file = (
            f"{position.file}@{self.written_at[:12]}"
            if moved and self.written_at
            else position.file
        )
        return Location(file, position.line, position.column)


def fetch_flow_code(
    pull_steps: Sequence[StepSpec],
    *,
    deployment: str,
    repository_commit: str | None,
    workdir: Path,
    env: Mapping[str, str],
    written_at: str | None = None,
    values: TemplateValues | None = None,
    masker: Masker | None = None,
    write: LineWriter | None = None,
) -> Path:
    """Run the pull steps of `deployment` in `workdir`; returns the flow's directory.
    Raises StepFailed naming the file:line the failed step was written at (as stored with the
    deployment, `written_at` the commit it was stored from: nothing is parsed again here)."""
    steps = pinned_pull_steps(pull_steps, repository_commit)
    placed = [PlacedStep(step, ("pull", index)) for index, step in enumerate(steps)]
    where = StoredPositions(deployment, steps, written_at, repository_commit)
    context = StepContext(cwd=workdir, env=dict(env), masker=masker or Masker(), write=write)
    # As Prefect's worker: a step that cannot be imported gets its `requires` installed.
    outputs = run_steps(placed, where, context, values=values, allow_install=True)
    directory = outputs.get("directory")
    if not isinstance(directory, str):
        return workdir
    # git_clone reports the clone's name relative to where the steps ran, as Prefect's does.
    return (workdir / directory).resolve()
