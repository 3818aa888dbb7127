"""How much of a run's output is stored (worker: between the run's output and its run log).

Each run stores at most `max_bytes` of output (UTF-8, a newline counted per line; the
worker's `--max-log-bytes`, 10 MB by default). The line that crosses the limit is cut to fit;
later lines are counted, not stored, and one last line says so:
`... output truncated after 10 MB; 20971520 more bytes not stored`. The run's failure message
still quotes the last lines of the output: they are kept apart from what is stored.
"""

from __future__ import annotations

DEFAULT_MAX_LOG_BYTES = 10 * 1024 * 1024
TAIL_LINE_CHARS = 4096
"""Longer lines are cut in failure messages (the state message is not a log)."""


def show_size(size: int) -> str:
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def for_message(line: str) -> str:
    """`line` as a failure message quotes it: cut past TAIL_LINE_CHARS."""
    return line if len(line) <= TAIL_LINE_CHARS else line[:TAIL_LINE_CHARS] + " ..."


class LogBudget:
    def __init__(self, max_bytes: int = DEFAULT_MAX_LOG_BYTES) -> None:
        self.max_bytes = max_bytes
        self.stored = 0
        self.dropped = 0

    def admit(self, line: str) -> str | None:
        """`line`, or the part of it that fits, when it may be stored; None when not."""
        size = len(line.encode("utf-8", errors="replace")) + 1
        room = self.max_bytes - self.stored
        if self.dropped or room <= 0:
            self.dropped += size
            return None
        if size <= room:
            self.stored += size
            return line
        kept = line.encode("utf-8", errors="replace")[: max(0, room - 1)]
        part = kept.decode("utf-8", errors="ignore")
        stored = len(part.encode("utf-8")) + 1
        self.stored += stored
        self.dropped += size - stored
        return part

    def truncation_line(self) -> str | None:
        """The line that ends a truncated log; None when everything was stored."""
        if not self.dropped:
            return None
        return (
            f"... output truncated after {show_size(self.max_bytes)}; "
            f"{self.dropped} more bytes not stored"
        )
