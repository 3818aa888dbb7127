"""`pip_install_requirements`, and installing a custom step's `requires`
(docs/design-notes.md#step-runner).

Steps run during apply, after the plan, never during a dry-run. Both run
`python -m pip install` with the reconciler's own interpreter, in the step context's
environment; installing `requires` happens only when the user passed `--allow-install`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from reconciler.steps.context import StepContext, StepError
from reconciler.steps.process import run_process

_PIP = (sys.executable, "-m", "pip", "install")


def pip_install_requirements(
    directory: str | None = None,
    requirements_file: str = "requirements.txt",
    stream_output: bool = True,
    *,
    context: StepContext,
) -> dict[str, str]:
    """`pip install -r requirements_file` in `directory`; returns pip's stdout and stderr."""
    cwd = context.resolve(directory)
    if not (cwd / requirements_file).is_file():
        raise StepError(
            f"the requirements file {requirements_file!r} does not exist in {str(cwd)!r}",
            hint="set `requirements_file` (relative to `directory`) to a file of the checkout",
        )
    command = [*_PIP, "-r", requirements_file]
    result = run_process(command, context=context, cwd=cwd, show=stream_output)
    if result.exit_code != 0:
        raise StepError(
            f"`pip install -r {requirements_file}` failed",
            exit_code=result.exit_code,
            hint="check the package names and versions in the requirements file (pip's "
            "message is in the last lines above)",
        )
    return {"stdout": result.stdout.strip(), "stderr": result.stderr.strip()}


def install_packages(packages: Sequence[str], context: StepContext) -> None:
    """`pip install packages` (a step's `requires`), streamed to the step's output. After
    `--`, a requirement can never be read as a pip option."""
    result = run_process([*_PIP, "--", *packages], context=context)
    if result.exit_code != 0:
        raise StepError(
            f"installing {', '.join(packages)} failed",
            exit_code=result.exit_code,
            hint="check the `requires` of the step (pip's message is in the last lines above)",
        )
