"""The exception tree. Every user-facing failure is a `ReconcilerError`; the CLI prints it
without a traceback and exits 1. Anything else is a bug and keeps its traceback.

    ReconcilerError
    ├── UserError            bad input or a refused operation: fix something, then run again
    │   ├── ConfigError      invalid files; carries every Diagnostic of the run
    │   ├── SourceError      not a git repository, a ref that does not exist, an unreadable tree
    │   ├── PlanRefused      the plan is valid but unsafe (empty owner, ownership conflict)
    │   └── StoreUrlError    a store URL we cannot open
    ├── StaleStateError      the store changed between plan and apply: plan again
    └── StaleLeaseError      another process took over the lease this one worked under
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.core.diagnostics import Diagnostic


class ReconcilerError(Exception):
    """Base class. `hint` tells the user what to do next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UserError(ReconcilerError):
    pass


class ConfigError(UserError):
    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        errors = [d for d in diagnostics if d.is_error]
        count = len(errors)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in the configuration")
        self.diagnostics = tuple(diagnostics)


class SourceError(UserError):
    pass


class PlanRefused(UserError):
    pass


class StoreUrlError(UserError):
    pass


class StaleStateError(ReconcilerError):
    """Raised by apply when the store's revision is not the one the plan was made from."""


class StaleLeaseError(ReconcilerError):
    """A fenced write by a process whose lease was taken over: refused, nothing written."""
