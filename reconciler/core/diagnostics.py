"""Diagnostics: what every stage reports to the user, with the place in the file it came from.

A `Diagnostic` is a value (severity, message, location, hint). Stages collect them rather than
raising at the first problem, so one run reports every error at once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Location:
    """A place in a file: `file` as shown to the user, 1-based line and column when known."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = self.file
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    location: Location | None = None
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def render(self, mask: Callable[[str], str] = str) -> str:
        """One or two lines: `file:line:col: error: message` then `  hint: ...`."""
        from reconciler.core.terminal_text import printable

        where = f"{printable(str(self.location))}: " if self.location else ""
        text = f"{where}{self.severity.value}: {printable(mask(self.message), keep_newlines=True)}"
        if self.hint:
            text += f"\n  hint: {printable(mask(self.hint), keep_newlines=True)}"
        return text

    def to_json(self) -> dict[str, object]:
        loc = self.location
        return {
            "severity": self.severity.value,
            "message": self.message,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
            "hint": self.hint,
        }


def error(message: str, location: Location | None = None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, location, hint)


def warning(message: str, location: Location | None = None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(Severity.WARNING, message, location, hint)


def sort_key(diag: Diagnostic) -> tuple[str, int, int, str]:
    loc = diag.location
    if loc is None:
        return ("", 0, 0, diag.message)
    return (loc.file, loc.line or 0, loc.column or 0, diag.message)


def sorted_diagnostics(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=sort_key)
