"""What a running step may use: its working directory, environment, output and masker.

Steps run during apply, after the plan, never during a dry-run. One `StepContext` lives for a
run of steps: `set_working_directory` changes its `cwd` for the steps after it, never the
reconciler process's own working directory. A step function that needs the context declares a
keyword-only `context` parameter; the runner passes it and users cannot set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.masking import Masker
from reconciler.steps.output import LineWriter, StepOutput


class StepError(Exception):
    """A step could not do its work. `exit_code` is the failing process's, when there is one;
    `hint` tells the user what to do."""

    def __init__(self, message: str, exit_code: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint


@dataclass
class StepContext:
    """Shared by the steps of one run. `env` is the environment child processes start with
    (and the one `{{ $VAR }}` placeholders read); `write` receives each output line, already
    prefixed and masked; `quiet` silences it (the last lines are still kept for errors)."""

    cwd: Path
    env: Mapping[str, str]
    masker: Masker = field(default_factory=Masker)
    write: LineWriter | None = None
    quiet: bool = False
    output: StepOutput = field(init=False)

    def __post_init__(self) -> None:
        self.output = self.open_output("step")

    def open_output(self, label: str) -> StepOutput:
        """Start the output of the next step, shown as `[label] ...`."""
        self.output = StepOutput(label, write=self.write, mask=self.mask, quiet=self.quiet)
        return self.output

    def mask(self, text: str) -> str:
        return self.masker(text)

    def hide(self, *secrets: str) -> None:
        """Mask `secrets` in everything written from now on (tokens a step was given)."""
        self.masker = self.masker.with_secrets(secrets)

    def resolve(self, directory: str | None) -> Path:
        """`directory` as a step means it: relative paths start at the context's cwd."""
        return self.cwd if directory is None else self.cwd / directory
