"""The actions of automations (automations.yaml) that act outside the run store's trigger
write: pause or resume a deployment (an override, as `reconcile deployment pause` makes),
pause or resume a work pool made by hand, and send a notification through the daemon's
Apprise targets. `run-deployment` is not here: the evaluator creates that run in the same
write as the firing (reconciler/scheduling/triggers.py), so it happens exactly once; these
happen after that write commits, from the trigger row's outbox: at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.core.errors import StaleStateError, UserError
from reconciler.engine import overrides
from reconciler.model.prefect_records import EventRecord
from reconciler.pools import manual
from reconciler.prefect_rules.triggers import render_text
from reconciler.store.base import Store

log = logging.getLogger("reconciler.automations")

Notify = Callable[[str, str, str], None]
"""(event kind, title, body): the daemon's Notifier.send."""

ACTOR = "automation"


def perform(
    store: Store,
    automation: str,
    action: Mapping[str, Any],
    event: EventRecord | None,
    notify: Notify | None,
) -> str:
    """Do one action; what happened, for the log. Never raises for a refusal (it is logged)."""
    kind = str(action.get("type"))
    actor = f"{ACTOR}:{automation}"
    try:
        if kind == "pause-deployment":
            return overrides.pause(store, str(action["deployment"]), actor)
        if kind == "resume-deployment":
            return overrides.resume(store, str(action["deployment"]))
        if kind in ("pause-work-pool", "resume-work-pool"):
            return _pool(store, str(action["work_pool"]), kind == "pause-work-pool")
        if kind == "send-notification":
            if notify is None:
                return "not sent: notifications are sent by the daemon, and none runs here"
            context = {"automation": {"name": automation}}
            title = render_text(str(action.get("subject") or automation), event, context)
            body = render_text(str(action["body"]), event, context)
            notify("automation", title, body)
            return f"notification sent: {title}"
    except (UserError, StaleStateError) as exc:
        return f"refused: {exc}"
    except Exception as exc:  # a template failing on this event, a store error: logged
        log.exception("automation %s: action %s failed", automation, kind)
        return f"failed: {exc}"
    return f"unknown action {kind!r}"


def _pool(store: Store, name: str, paused: bool) -> str:
    action = "pause" if paused else "resume"
    for _ in range(3):
        observed = store.observe()
        edit = manual.update_pool(observed, name, {"paused": paused}, action)
        if not edit.writes:
            return edit.message
        try:
            with store.transaction(expected_revision=observed.revision) as tx:
                for resource in edit.puts:
                    tx.put(resource)
        except StaleStateError:
            continue
        return edit.message
    raise StaleStateError("the store kept changing", "try again")
