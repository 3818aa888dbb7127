"""`prefect.deployments.steps.run_shell_script`, implemented natively
(docs/design-notes.md#builtin-steps).

Steps run during apply, after the plan, never during a dry-run. Each line of the script is its
own process. By default a line is split with shlex and run without a shell, so text that
templating put into a line (`;`, `$(...)`, `|`) is passed literally as an argument; only
`shell: true` hands the line to `/bin/sh`.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Mapping
from typing import Any

from reconciler.steps.context import StepContext, StepError
from reconciler.steps.process import run_process


def run_shell_script(
    script: str,
    directory: str | None = None,
    env: Mapping[str, Any] | None = None,
    stream_output: bool = True,
    expand_env_vars: bool = False,
    shell: bool = False,
    *,
    context: StepContext,
) -> dict[str, str]:
    """Run each line of `script`; returns everything they printed, stripped."""
    if not isinstance(script, str):
        raise StepError(f"`script` must be text, not {type(script).__name__}")
    environment = {**context.env, **{name: str(value) for name, value in (env or {}).items()}}
    cwd = context.resolve(directory)
    stdout: list[str] = []
    stderr: list[str] = []
    for line in script.splitlines():
        if not line.strip():
            continue
        if expand_env_vars:
            line = string.Template(line).safe_substitute(environment)
        command = line.strip() if shell else _arguments(line)
        result = run_process(command, context=context, cwd=cwd, env=environment, show=stream_output)
        stdout.append(result.stdout)
        stderr.append(result.stderr)
        if result.exit_code != 0:
            raise StepError(f"the command `{line.strip()}` failed", exit_code=result.exit_code)
    return {"stdout": "".join(stdout).strip(), "stderr": "".join(stderr).strip()}


def _arguments(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise StepError(
            f"cannot split the command `{line.strip()}` into arguments: {exc}",
            hint="balance the quotes, or set `shell: true` to let a shell read the line",
        ) from exc
