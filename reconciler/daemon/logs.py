"""The daemon's log lines: text for people, JSON (`--log-format json`) for log pipelines.

Each reconcile logs one line with repository, commit, outcome and duration; in JSON those are
fields of their own.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

_FIELDS = ("repo", "commit", "outcome", "duration_seconds", "detail")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Only our lines: the scheduler's and the HTTP server's chatter stays at warnings, and the
    # HTTP server's (uvicorn, its event loop) are written in our format, never as bare text.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    for server_logger in ("uvicorn", "asyncio"):
        logger = logging.getLogger(server_logger)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.WARNING)
        logger.propagate = False
