"""Notifications (daemon: status and runs -> Apprise -> Slack, e-mail, webhooks...).

The daemon sends, to each URL of `notifications:` in daemon.yaml whose `events` include it:

    error, stalled   a repository entering Error or Stalled (once per entry, not per retry)
    drift            objects changed out of band: reverted (self-heal) or reported (OutOfSync,
                     once per new set of drifted objects)
    run_failed,      flow runs that ended FAILED or CRASHED, found by a look at the store every
    run_crashed      RUN_CHECK_SECONDS (only the active daemon sends, so HA pairs send once)

Sending is Apprise's (the library Prefect's own notifications use), on one thread of its own:
a slow or failing receiver never holds up a reconcile. The URLs are secrets (a Slack webhook
is its token): they never appear in our logs, and Apprise's own log records are masked and
kept to warnings.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from reconciler.core.masking import Masker
from reconciler.daemon.config import NotificationTarget
from reconciler.model.runs import RunState
from reconciler.store.web_types import RunQuery

log = logging.getLogger("reconciler.daemon")
RUN_CHECK_SECONDS = 10.0
RUNS_LOOKED_AT = 200
SEND_TIMEOUT_SECONDS = 10.0
_STOP = object()


def secret_parts(url: str) -> list[str]:
    """The URL and every part of it that may be a token: password, user, path segments,
    query values. Masked wherever Apprise might log them."""
    parts = [url]
    try:
        split = urlsplit(url)
    except ValueError:
        return parts
    parts += [p for p in (split.password, split.username) if p]
    parts += [segment for segment in split.path.split("/") if segment]
    parts += [value for _, value in parse_qsl(split.query) if value]
    if split.netloc:
        parts.append(split.netloc)
    return parts


class _MaskApprise(logging.Filter):
    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.masker(record.getMessage())
        record.args = None
        return True


def check_url(url: str) -> str | None:
    """Why Apprise cannot send to `url` (never quoting it), or None."""
    import apprise

    scheme = url.split("://", 1)[0] if "://" in url else ""
    logger = logging.getLogger("apprise")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its error quotes the URL
    try:
        ok = apprise.Apprise().add(url)
    finally:
        logger.setLevel(level)
    if ok:
        return None
    return (
        f"is not a URL Apprise can send to (scheme {scheme!r})"
        if scheme
        else ("is not a URL (SCHEME://...)")
    )


@dataclass(frozen=True)
class Message:
    event: str
    title: str
    body: str


class Notifier:
    """Queues messages and sends them on its own thread."""

    def __init__(self, targets: Sequence[NotificationTarget]) -> None:
        self.targets = tuple(targets)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        if not self.targets:
            return
        import apprise

        secrets = [part for t in self.targets for part in secret_parts(t.url.value)]
        apprise_log = logging.getLogger("apprise")
        apprise_log.setLevel(logging.WARNING)
        apprise_log.addFilter(_MaskApprise(Masker(secrets)))
        self._senders = []
        for target in self.targets:
            sender = apprise.Apprise()
            sender.add(target.url.value)
            self._senders.append(sender)
        self._thread = threading.Thread(target=self._send_all, name="notify", daemon=True)
        self._thread.start()

    def send(self, event: str, title: str, body: str) -> None:
        if self._thread is not None and any(event in t.events for t in self.targets):
            self._queue.put(Message(event, title, body))

    def close(self, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        """Send what is queued (for at most `timeout`), then stop."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _send_all(self) -> None:
        while True:
            message = self._queue.get()
            if message is _STOP:
                return
            for number, (target, sender) in enumerate(
                zip(self.targets, self._senders, strict=True), start=1
            ):
                if message.event not in target.events:
                    continue
                try:
                    sent = bool(sender.notify(title=message.title, body=message.body))
                except Exception:  # a plugin's bug must not stop the notifications
                    sent = False
                scheme = target.url.value.split("://", 1)[0]
                if sent:
                    log.info("notification %d (%s) sent: %s", number, scheme, message.event)
                else:
                    log.warning(
                        "notification %d (%s, %s) could not be sent: %s",
                        number,
                        scheme,
                        target.where,
                        message.event,
                    )


class RunWatch:
    """Flow runs that ended FAILED or CRASHED since the last look."""

    def __init__(self) -> None:
        self._seen: set[str] | None = None

    def new_failures(self, store: Any) -> list[Any]:
        runs = store.query_runs(
            RunQuery(states=(RunState.FAILED, RunState.CRASHED), limit=RUNS_LOOKED_AT)
        )
        ids = {run.id for run in runs}
        if self._seen is None:  # the first look: what failed before this daemon started
            self._seen = ids
            return []
        fresh = [run for run in runs if run.id not in self._seen]
        self._seen = ids
        return fresh


def run_message(run: Any) -> tuple[str, str, str]:
    state = run.state.value
    event = "run_crashed" if state == RunState.CRASHED.value else "run_failed"
    title = f"reconciler: flow run {run.name} of {run.deployment} {state}"
    body = f"Flow run {run.id} ({run.deployment}, pool {run.pool}) ended {state}"
    if run.state_message:
        body += f": {run.state_message}"
    return event, title, body


def drift_text(items: Iterable[str]) -> str:
    return ", ".join(items)
