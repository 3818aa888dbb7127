"""A step's output: streamed line by line with a prefix naming the step, and its last lines.

Steps run during apply, after the plan, never during a dry-run. Every line a step prints (its
processes' stdout and stderr, or what a Python step writes) goes through one `StepOutput`: it
is masked, written as `[label] line` to the caller's writer unless `quiet`, and kept in a
bounded buffer so a failure can quote the last lines.
"""

from __future__ import annotations

import collections
import io
import threading
from collections.abc import Callable

LineWriter = Callable[[str], None]
"""Receives one finished line (no newline), already prefixed and masked."""

TAIL_LINES = 20


class StepOutput:
    def __init__(
        self,
        label: str,
        *,
        write: LineWriter | None,
        mask: Callable[[str], str],
        quiet: bool = False,
        keep: int = TAIL_LINES,
    ) -> None:
        self.label = label
        self._write = None if quiet else write
        self._mask = mask
        self._tail: collections.deque[str] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def line(self, text: str, *, show: bool = True) -> None:
        """One line of output: kept for errors, and shown unless `show` is False or quiet.
        Safe to call from several threads (a process's stdout and stderr readers)."""
        with self._lock:
            self._tail.append(text)
            if show:
                self._show(text)

    def note(self, text: str) -> None:
        """A line about the step (such as the command it runs): shown, not kept for errors."""
        with self._lock:
            self._show(text)

    def last_lines(self) -> list[str]:
        """The most recent lines, masked with the masker as it is now."""
        with self._lock:
            return [self._mask(text) for text in self._tail]

    def as_file(self) -> io.TextIOBase:
        """A text file whose writes become lines of this output (for `print` in a step)."""
        return _LineFile(self)

    def _show(self, text: str) -> None:
        if self._write is not None:
            self._write(f"[{self.label}] {self._mask(text)}")


class _LineFile(io.TextIOBase):
    """Splits written text into lines; a last line without a newline is sent on flush."""

    def __init__(self, output: StepOutput) -> None:
        super().__init__()
        self._output = output
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *complete, self._pending = (self._pending + text).split("\n")
        for line in complete:
            self._output.line(line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._output.line(self._pending)
            self._pending = ""
