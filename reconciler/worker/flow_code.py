"""Get a deployment's flow code where a run will execute (worker: before the flow starts).

Runs the deployment's stored pull steps with the step runner, in a directory of the run, and returns
the directory the flow's entrypoint is relative to: the last `directory` a step returned, else the
run's directory (Prefect's rule, docs/design-notes.md#step-runner).

Pull steps are imported here, by the worker's own Python, never where the plan ran: a custom
step's package must be installed for it, or named in the step's `requires:`, which is installed
with that Python's pip before the step runs (as Prefect's worker does).

The clone step generated for a file without pull steps (reconciler/spec/default_pull.py) names
no commit: here it is pinned to the commit its repository was last applied at, so a run
executes exactly the code that was reconciled.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.masking import Masker
from reconciler.spec.default_pull import CLONE_STEP_ID, GIT_CLONE
from reconciler.spec.prefect_file import PlacedStep
from reconciler.spec.steps import step_from_mapping
from reconciler.spec.yamlload import load_yaml
from reconciler.steps.context import StepContext
from reconciler.steps.output import LineWriter
from reconciler.steps.runner import TemplateValues, run_steps


def pinned_pull_steps(
    pull_steps: Sequence[Mapping[str, Any]], repository_commit: str | None
) -> list[dict[str, Any]]:
    """The steps with the generated clone pinned to `repository_commit` (when known)."""
    pinned = [copy.deepcopy(dict(step)) for step in pull_steps]
    for step in pinned:
        body = step.get(GIT_CLONE)
        if (
            repository_commit
            and isinstance(body, dict)
            and body.get("id") == CLONE_STEP_ID
            and not body.get("branch")
            and not body.get("commit_sha")
        ):
            body["commit_sha"] = repository_commit
    return pinned


def fetch_flow_code(
    pull_steps: Sequence[Mapping[str, Any]],
    *,
    deployment: str,
    repository_commit: str | None,
    workdir: Path,
    env: Mapping[str, str],
    values: TemplateValues | None = None,
    masker: Masker | None = None,
    write: LineWriter | None = None,
) -> Path:
    """Run the pull steps of `deployment` in `workdir`; returns the flow's directory.
    Raises StepFailed (naming the deployment's step) when a step fails."""
    steps = pinned_pull_steps(pull_steps, repository_commit)
    # The steps as a document of their own, so a failure can name the step that failed.
    document = load_yaml(
        json.dumps({"pull": steps}, indent=2).encode(), f"deployment {deployment}: pull steps"
    )
    placed = [
        PlacedStep(step_from_mapping(step), ("pull", index)) for index, step in enumerate(steps)
    ]
    context = StepContext(cwd=workdir, env=dict(env), masker=masker or Masker(), write=write)
    # As Prefect's worker: a step that cannot be imported gets its `requires` installed.
    outputs = run_steps(placed, document, context, values=values, allow_install=True)
    directory = outputs.get("directory")
    if not isinstance(directory, str):
        return workdir
    # git_clone reports the clone's name relative to where the steps ran, as Prefect's does.
    return (workdir / directory).resolve()
