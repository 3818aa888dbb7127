"""The trigger evaluator: stored events to the runs that deployments' `triggers:` ask for
(design notes: "Triggers"). It runs in the daemon (the leader only) and in workers when no
daemon leads, like the scheduler tick.

Each trigger has one row in `trigger_states` (migration 10): where it has read the events up
to (`cursor`, the receive time of the last event it took, with the ids it took in the last
OVERLAP_SECONDS, because a writer that started earlier may commit an event a little later),
and its buckets as Prefect keeps them (start, end, count, last event, per `for_each` key).
One evaluation of a trigger is one write: lock its row, read the events after its cursor,
fold them in, create the runs of its firings, write the row back. Two evaluators (a daemon
failing over, workers) take turns on the row, and each firing's run carries the key
`trigger <id> <firing>` that the runs' unique idempotency key refuses twice: a firing makes
one run whatever happens, and an event is taken once.

The folding is Prefect's (prefect/server/events/triggers.py, summarised in the design notes):
Reactive triggers fire when `threshold` events came within `within`, Proactive ones when fewer
came by the end of the window; composite triggers fire on their children's firings.

An automation's other actions (pause, resume, notify: reconciler/engine/automation_actions.py)
act outside the store's write, so they go through an outbox in the same row: the firing's
write adds a `pending` entry (the firing's key, its event's id, when it was taken); after the
commit the evaluator does the actions and then removes the entry in a second write. An entry
still there ACTION_RETRY_SECONDS after it was taken (its evaluator died in between) is taken
again: the actions happen at least once, and once in every run without a crash.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.prefect_records import EventRecord
from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import FlowRun, NewRun
from reconciler.model.specs import DeploymentSpec
from reconciler.prefect_rules.triggers import (
    CompositeTrigger,
    DeploymentTrigger,
    EventTrigger,
    TriggerNode,
    automation_trigger,
    parse_triggers,
    render_parameters,
)
from reconciler.store.base import Store
from reconciler.store.run_rows import now_iso
from reconciler.store.sql import Conn
from reconciler.store.sql_runs import insert_runs
from reconciler.store.sql_store import SqlStoreBase

log = logging.getLogger("reconciler.triggers")

OVERLAP_SECONDS = 5.0
"""Events received this long before a trigger's cursor are read again (and skipped by id)."""
LOOKBACK_SECONDS = 15.0
"""A first bucket starts this long before its first event, so that events arriving out of
order around it count (Prefect's preceding-event lookback)."""
BATCH = 2000
"""Events one evaluation of a trigger takes at most; the next takes the rest."""
ACTION_RETRY_SECONDS = 30.0
"""An automation's actions taken by an evaluator that has not said they are done after this
long (it died between its write and them) are taken again by the next evaluation."""
DEFAULT_RETENTION_SECONDS = 7 * 86400.0
DAEMON_LEADER_LEASE = "daemon-leader"
"""The lease the active daemon holds (reconciler/daemon/runner.py): while it is held, workers
leave the triggers to the daemon."""


def _epoch(text: str) -> float:
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _iso(seconds: float) -> str:
    """As `now_iso` writes receive times (so that they compare as text)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


def _event_json(event: EventRecord) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred": event.occurred,
        "event": event.event,
        "resource": event.resource,
        "related": event.related,
        "payload": event.payload,
    }


def _event_of(raw: Any) -> EventRecord | None:
    if not isinstance(raw, dict):
        return None
    return EventRecord(
        id=raw["id"],
        occurred=raw["occurred"],
        event=raw["event"],
        resource=raw["resource"],
        related=raw["related"],
        payload=raw["payload"],
    )


@dataclass(frozen=True)
class Firing:
    key: str
    """Unique for this firing of this trigger node."""
    at: float
    event: EventRecord | None
    """The triggering event (Proactive: the last one seen, if any)."""


# -- Prefect's folding, on a JSON state -------------------------------------------------------


def _bucket(start: float, end: float, count: int, last: EventRecord | None) -> dict[str, Any]:
    return {"start": start, "end": end, "count": count, "last": last and _event_json(last)}


def _evaluate(
    trigger: EventTrigger,
    buckets: dict[str, Any],
    key: str,
    now: float,
    event: EventRecord | None,
    path: str,
) -> list[Firing]:
    """One step of a bucket: spend the event (if any) in it, fire when it is ready, and
    open the next window."""
    bucket = buckets[key]
    count = 1 if event is not None else 0
    if now < bucket["start"]:
        return []  # late, or in the rest of a window that already fired
    if count and (trigger.immediate or bucket["start"] <= now < bucket["end"]):
        bucket["count"] += 1
        bucket["last"] = _event_json(event) if event is not None else bucket["last"]
        count = 0
    ready = trigger.posture == "Reactive" or bucket["end"] <= now
    fired: list[Firing] = []
    if ready and trigger.meets_threshold(bucket["count"]):
        cause = event if event is not None else _event_of(bucket["last"])
        mark = event.id if event is not None else f"{bucket['end']:.3f}"
        fired.append(Firing(f"{path}|{key}|{mark}", now, cause))
        del buckets[key]
    elif now < bucket["end"]:
        if (
            event is not None
            and trigger.posture == "Proactive"
            and trigger.starts_after(event.event)
            and trigger.expects(event.event)
        ):  # the same event opens the next window of a heartbeat-like trigger
            buckets[key] = _bucket(now, now + trigger.within, 0, event)
        return fired
    if trigger.after or trigger.within == 0:
        buckets.pop(key, None)
        return fired
    start = max(bucket["end"], now)
    buckets[key] = _bucket(start, start + trigger.within, 0, None)
    if trigger.posture == "Reactive" and count > 0:
        fired.extend(_evaluate(trigger, buckets, key, now, event, path))
    return fired


def _feed_leaf(
    trigger: EventTrigger, state: dict[str, Any], event: EventRecord, path: str
) -> list[Firing]:
    if not trigger.covers(event):
        return []
    now = _epoch(event.occurred)
    key = trigger.bucket_key(event)
    buckets: dict[str, Any] = state.setdefault("buckets", {})
    if trigger.after and trigger.starts_after(event.event) and key not in buckets:
        initial = -1 if trigger.expects(event.event) else 0
        buckets[key] = _bucket(now, now + trigger.within, initial, event)
    if key not in buckets and not trigger.after and trigger.expects(event.event):
        buckets[key] = _bucket(now - LOOKBACK_SECONDS, now + trigger.within, 0, event)
    if not trigger.expects(event.event) or key not in buckets:
        return []
    return _evaluate(trigger, buckets, key, now, event, path)


def _tick_leaf(trigger: EventTrigger, state: dict[str, Any], now: float, path: str) -> list[Firing]:
    buckets: dict[str, Any] = state.setdefault("buckets", {})
    fired: list[Firing] = []
    if trigger.posture == "Proactive":
        if not trigger.for_each and not trigger.after and "[]" not in buckets:
            buckets["[]"] = _bucket(now, now + trigger.within, 0, None)
        for key in sorted(buckets):
            if key in buckets and buckets[key]["end"] <= now:
                fired.extend(_evaluate(trigger, buckets, key, now, None, path))
    else:  # a Reactive bucket long over is forgotten; the next event opens a new one
        for key in [k for k, b in buckets.items() if b["end"] + LOOKBACK_SECONDS < now]:
            del buckets[key]
    return fired


def _compose(
    node: CompositeTrigger, state: dict[str, Any], index: int, child: Firing, path: str
) -> list[Firing]:
    fired_children: dict[str, Any] = state.setdefault("fired", {})
    if node.within is not None:
        for name in [n for n, f in fired_children.items() if f["at"] < child.at - node.within]:
            del fired_children[name]
    if node.kind == "sequence" and any(str(i) not in fired_children for i in range(index)):
        return []  # out of order: a sequence starts again from its first trigger
    fired_children[str(index)] = {
        "at": child.at,
        "key": child.key,
        "event": child.event and _event_json(child.event),
    }
    done = len(fired_children) >= node.require
    if node.kind == "sequence":
        done = all(str(i) in fired_children for i in range(len(node.triggers)))
    if not done:
        return []
    keys = "|".join(fired_children[name]["key"] for name in sorted(fired_children))
    fired_children.clear()
    digest = hashlib.sha256(keys.encode()).hexdigest()[:24]
    return [Firing(f"{path}|{digest}", child.at, child.event)]


def feed(
    node: TriggerNode, state: dict[str, Any], event: EventRecord, path: str = ""
) -> list[Firing]:
    """Fold one event into the trigger's state; the firings it caused."""
    if isinstance(node, EventTrigger):
        return _feed_leaf(node, state.setdefault(path or "/", {}), event, path or "/")
    fired: list[Firing] = []
    own = state.setdefault(path or "/", {})
    for index, child in enumerate(node.triggers):
        for firing in feed(child, state, event, f"{path}/{index}"):
            fired.extend(_compose(node, own, index, firing, path or "/"))
    return fired


def tick(node: TriggerNode, state: dict[str, Any], now: float, path: str = "") -> list[Firing]:
    """What the passing of time fires (Proactive windows that ended)."""
    if isinstance(node, EventTrigger):
        return _tick_leaf(node, state.setdefault(path or "/", {}), now, path or "/")
    fired: list[Firing] = []
    own = state.setdefault(path or "/", {})
    for index, child in enumerate(node.triggers):
        for firing in tick(child, state, now, f"{path}/{index}"):
            fired.extend(_compose(node, own, index, firing, path or "/"))
    return fired


def next_due(node: TriggerNode, state: Mapping[str, Any], path: str = "") -> float | None:
    """When the next Proactive window of this trigger ends (None: it waits for events)."""
    if isinstance(node, EventTrigger):
        if node.posture != "Proactive":
            return None
        buckets = state.get(path or "/", {}).get("buckets", {})
        if not buckets:
            return 0.0 if not node.for_each and not node.after else None
        return float(min(b["end"] for b in buckets.values()))
    ends = [next_due(child, state, f"{path}/{i}") for i, child in enumerate(node.triggers)]
    found = [e for e in ends if e is not None]
    return min(found) if found else None


# -- the evaluator ----------------------------------------------------------------------------


@dataclass
class Armed:
    """A trigger as the evaluator holds it between ticks: a deployment's (its runs are the
    deployment's) or an automation's (its actions say what to do)."""

    resource: Resource
    """The deployment, or the automation."""
    trigger: DeploymentTrigger
    spec: DeploymentSpec | None = None
    actions: tuple[Mapping[str, Any], ...] = ()
    due: float | None = 0.0
    """When a Proactive window ends next (None: only events matter)."""

    @property
    def owner_key(self) -> str:
        if self.resource.kind is Kind.AUTOMATION:
            return f"automation:{self.resource.key}"
        return self.resource.key


Act = Callable[[Store, str, Mapping[str, Any], EventRecord | None], None]
"""Does an automation's action other than run-deployment, after its firing committed:
(store, automation name, action, triggering event)."""


@dataclass
class TickReport:
    created: list[FlowRun] = field(default_factory=list)
    evaluated: int = 0
    pruned_events: int = 0


def _hooks(store: Store) -> SqlStoreBase:
    assert isinstance(store, SqlStoreBase), "triggers need the SQL store"
    return store


def armed_triggers(store: Store) -> list[Armed]:
    """Every enabled trigger of every deployment, and every enabled automation. One that
    does not parse (a store written before the checks) is left out, with a log line."""
    found: list[Armed] = []
    for deployment in store.list_resources(Kind.DEPLOYMENT):
        spec = deployment.deployment_spec()
        if not spec.triggers:
            continue
        triggers, problems = parse_triggers(deployment.key, spec.triggers)
        for problem in problems:
            if problem.is_error:
                log.warning("deployment %s: a trigger is ignored: %s", deployment.key, problem)
        for trigger in triggers:
            if trigger.enabled:
                found.append(Armed(deployment, trigger, spec=spec))
    for automation in store.list_resources(Kind.AUTOMATION):
        raw = json.loads(automation.spec_json)
        armed = automation_trigger(automation.key, raw)
        if armed is None:
            log.warning("automation %s is ignored: its trigger does not parse", automation.key)
        elif armed.enabled:
            found.append(Armed(automation, armed, actions=tuple(raw.get("actions") or ())))
    return found


def _message(trigger: DeploymentTrigger, event: EventRecord | None) -> str:
    if event is None:
        return f"triggered by {trigger.name}: no expected event came in time"
    return (
        f"triggered by {trigger.name}: event {event.event} ({event.id}) about {event.resource_id}"
    )


def _new_run(
    key: str,
    spec: DeploymentSpec,
    parameters: Mapping[str, Any] | None,
    job_variables: Mapping[str, Any] | None,
    firing: Firing,
    idempotency_key: str,
    message: str,
    at: float,
) -> NewRun | None:
    if spec.paused or spec.work_pool_name is None:
        return None
    try:
        rendered = render_parameters(dict(parameters or {}), firing.event)
    except Exception as exc:  # a template that fails on this event: no run, a log line
        log.warning("%s: the parameters for %s failed: %s", message, key, exc)
        return None
    return NewRun(
        deployment=key,
        flow_name=spec.flow_name,
        pool=spec.work_pool_name,
        queue=spec.queue,
        scheduled_time=at,
        parameters={**spec.parameters, **rendered},
        job_variables=dict(job_variables or {}),
        idempotency_key=idempotency_key,
        state_message=message,
    )


def _runs_of(conn: Conn, armed: Armed, firing: Firing, now: float) -> list[NewRun]:
    """The runs a firing makes: the deployment's own, or the automation's run-deployment
    actions (read from the store in the firing's write)."""
    trigger = armed.trigger
    digest = hashlib.sha256(firing.key.encode()).hexdigest()[:24]
    message = _message(trigger, firing.event)
    if armed.spec is not None:
        made = _new_run(
            armed.resource.key,
            armed.spec,
            trigger.parameters,
            trigger.job_variables,
            firing,
            f"trigger {trigger.id} {digest}",
            message,
            now + trigger.schedule_after,
        )
        return [made] if made is not None else []
    runs: list[NewRun] = []
    for index, action in enumerate(armed.actions):
        if action.get("type") != "run-deployment":
            continue
        key = str(action.get("deployment"))
        row = conn.one("SELECT spec FROM deployments WHERE key = ?", (key,))
        if row is None:
            log.warning("automation %s: no deployment %s to run", armed.resource.key, key)
            continue
        made = _new_run(
            key,
            DeploymentSpec.from_spec(json.loads(row[0])),
            action.get("parameters"),
            action.get("job_variables"),
            firing,
            f"automation {trigger.id} {digest} {index}",
            message.replace("triggered by", "run by automation", 1),
            now,
        )
        if made is not None:
            runs.append(made)
    return runs


def _events(conn: Conn, sql: str, params: tuple[Any, ...]) -> list[tuple[EventRecord, str]]:
    return [(_record(row), row[6]) for row in conn.all(sql, params)]


def _record(row: Any) -> EventRecord:
    """An event from a row of _EVENT_COLUMNS."""
    return EventRecord(
        id=row[0],
        occurred=row[1],
        event=row[2],
        resource=json.loads(row[3]),
        related=json.loads(row[4]),
        payload=json.loads(row[5]),
    )


_EVENT_COLUMNS = "id, occurred, event, resource, related, payload, received_at"


def evaluate_trigger(
    store: Store, armed: Armed, now: float | None = None, act: Act | None = None
) -> list[FlowRun]:
    """One evaluation of one trigger, in one write (see the module docstring); then, for an
    automation, its other actions through `act`, from the row's outbox (at least once)."""
    hooks = _hooks(store)
    trigger = armed.trigger
    with hooks._write() as conn:
        wall = time.time() if now is None else now
        table, column = (
            ("automations", "name")
            if armed.resource.kind is Kind.AUTOMATION
            else ("deployments", "key")
        )
        conn.execute(
            "INSERT INTO trigger_states (trigger_id, deployment, since, state, updated_at) "
            f"SELECT ?, ?, COALESCE(MIN(updated_at), ?), '{{}}', ? FROM {table} "
            f"WHERE {column} = ? ON CONFLICT (trigger_id) DO NOTHING",
            (trigger.id, armed.owner_key, now_iso(), now_iso(), armed.resource.key),
        )
        row = conn.one(
            "SELECT since, state FROM trigger_states WHERE trigger_id = ? FOR UPDATE",
            (trigger.id,),
        )
        if row is None:  # the deployment went in the meantime
            return []
        since, state = str(row[0]), json.loads(row[1])
        cursor = str(state.get("cursor") or min(since, now_iso()))
        seen: dict[str, str] = dict(state.get("seen") or {})
        nodes: dict[str, Any] = state.get("nodes") or {}
        pending: list[dict[str, Any]] = list(state.get("pending") or [])
        again = _events(
            conn,
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE received_at >= ? AND received_at <= ? "
            "ORDER BY received_at, id",
            (_iso(_epoch(cursor) - OVERLAP_SECONDS), cursor),
        )
        fresh = _events(
            conn,
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE received_at > ? "
            "ORDER BY received_at, id LIMIT ?",
            (cursor, BATCH),
        )
        firings: list[Firing] = []
        for event, received in [*again, *fresh]:
            if event.id in seen or received < since:
                continue
            seen[event.id] = received
            cursor = max(cursor, received)
            firings.extend(feed(trigger.trigger, nodes, event))
        firings.extend(tick(trigger.trigger, nodes, wall))
        floor = _iso(_epoch(cursor) - OVERLAP_SECONDS)
        later = [a for a in armed.actions if a.get("type") != "run-deployment"]
        taken = _take_pending(pending, firings, wall, act is not None) if later else []
        state = {
            "cursor": cursor,
            "seen": {k: v for k, v in seen.items() if v >= floor},
            "nodes": nodes,
        }
        if pending:
            state["pending"] = pending
        runs = [run for firing in firings for run in _runs_of(conn, armed, firing, wall)]
        created = insert_runs(conn, runs, now_iso()) if runs else []
        if created:
            hooks._notify(conn, [run.pool for run in created])
        conn.execute(
            "UPDATE trigger_states SET state = ?, updated_at = ? WHERE trigger_id = ?",
            (json.dumps(state, sort_keys=True), now_iso(), trigger.id),
        )
    armed.due = next_due(trigger.trigger, nodes)
    if act is not None and pending:  # an entry left by a dead evaluator: taken again then
        retry = min(float(p["at"]) for p in pending) + ACTION_RETRY_SECONDS
        armed.due = retry if armed.due is None else min(armed.due, retry)
    if len(fresh) >= BATCH:
        armed.due = 0.0  # more to read
    for run in created:
        log.info("%s of %s: run %s created", trigger.name, armed.owner_key, run.id)
    if act is None:
        if later and firings:
            log.warning("automation %s: its actions wait for the daemon", armed.resource.key)
        return created
    events = {f.event.id: f.event for f in firings if f.event is not None}
    for entry in taken:
        event_id = entry["event"]
        cause = None if event_id is None else events.get(event_id) or _event_by_id(hooks, event_id)
        for action in later:
            act(store, armed.resource.key, action, cause)
    if taken:
        _done(hooks, trigger.id, {str(entry["key"]) for entry in taken})
    return created


def _take_pending(
    pending: list[dict[str, Any]], firings: list[Firing], wall: float, can_act: bool
) -> list[dict[str, Any]]:
    """The outbox entries this evaluation does after its write: the new firings', and those
    a dead evaluator took more than ACTION_RETRY_SECONDS ago (taken again now). An evaluator
    that cannot act (a worker) leaves new entries for the daemon, marked as never taken."""
    taken = []
    if can_act:
        for entry in pending:
            if float(entry["at"]) + ACTION_RETRY_SECONDS <= wall:
                entry["at"] = wall
                taken.append(entry)
    for firing in firings:
        entry = {
            "key": firing.key,
            "event": firing.event.id if firing.event is not None else None,
            "at": wall if can_act else 0.0,
        }
        pending.append(entry)
        if can_act:
            taken.append(entry)
    return taken


def _done(hooks: SqlStoreBase, trigger_id: str, keys: set[str]) -> None:
    """Remove the outbox entries whose actions were done."""
    with hooks._write() as conn:
        row = conn.one(
            "SELECT state FROM trigger_states WHERE trigger_id = ? FOR UPDATE", (trigger_id,)
        )
        if row is None:  # the trigger went in the meantime
            return
        state = json.loads(row[0])
        left = [p for p in state.get("pending") or [] if str(p["key"]) not in keys]
        if left:
            state["pending"] = left
        else:
            state.pop("pending", None)
        conn.execute(
            "UPDATE trigger_states SET state = ? WHERE trigger_id = ?",
            (json.dumps(state, sort_keys=True), trigger_id),
        )


def _event_by_id(hooks: SqlStoreBase, event_id: str) -> EventRecord | None:
    """A stored event (None: pruned since); for the actions of an outbox entry taken again."""
    rows = hooks._read(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,))
    return _record(rows[0]) if rows else None


class Evaluator:
    """Ticks every trigger of the store: cheap when nothing happened (one read of the
    newest event's time and of the store's revision)."""

    def __init__(
        self,
        store: Store,
        *,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        act: Act | None = None,
    ) -> None:
        self.store = store
        self.act = act
        self.retention_seconds = retention_seconds
        self._revision: int | None = None
        self._armed: list[Armed] = []
        self._latest: str | None = None
        self._known: set[str] = set()
        self._last_prune = 0.0

    def _refresh(self) -> None:
        revision = self.store.revision()
        if revision == self._revision:
            return
        self._revision = revision
        self._armed = armed_triggers(self.store)
        wanted = {armed.trigger.id for armed in self._armed}
        hooks = _hooks(self.store)
        gone = [
            row[0]
            for row in hooks._read("SELECT trigger_id FROM trigger_states")
            if row[0] not in wanted
        ]
        if gone:  # removed or disabled triggers: their state goes (a re-enabled one starts anew)
            with hooks._write() as conn:
                marks, params = conn.dialect.in_list("trigger_id", gone)
                conn.execute(f"DELETE FROM trigger_states WHERE {marks}", params)

    def _news(self) -> list[EventRecord]:
        """Events that arrived since the last look (those of the last OVERLAP_SECONDS are
        read again: a writer may commit an event received a moment earlier)."""
        if self._latest is None:  # the first look: every trigger is evaluated on it anyway
            self._latest = _iso(time.time() - OVERLAP_SECONDS)
        floor = self._latest
        rows = _hooks(self.store)._read(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE received_at >= ? "
            "ORDER BY received_at, id LIMIT ?",
            (floor, BATCH),
        )
        news = [_record(r) for r in rows if r[0] not in self._known]
        if rows:
            newest = _epoch(str(rows[-1][6]))
            # a full batch moves on without the overlap, or a burst would be read forever
            self._latest = _iso(newest - (0 if len(rows) >= BATCH else OVERLAP_SECONDS))
            self._known = {r[0] for r in rows if str(r[6]) >= self._latest}
        return news

    def tick(self, now: float | None = None) -> TickReport:
        report = TickReport()
        wall = time.time() if now is None else now
        self._refresh()
        news = self._news()
        for armed in self._armed:
            due = armed.due is not None and armed.due <= wall
            if due or any(interested(armed.trigger.trigger, event) for event in news):
                report.created.extend(evaluate_trigger(self.store, armed, now, self.act))
                report.evaluated += 1
        if wall - self._last_prune > 600:
            self._last_prune = wall
            report.pruned_events = prune_old_events(self.store, wall - self.retention_seconds)
        return report


def interested(node: TriggerNode, event: EventRecord) -> bool:
    if isinstance(node, EventTrigger):
        return node.covers(event)
    return any(interested(child, event) for child in node.triggers)


def daemon_leads(store: Store) -> bool:
    """An active daemon holds the leader lease now."""
    rows = _hooks(store)._read(
        "SELECT 1 FROM repo_leases WHERE name = ? AND expires_at > ?",
        (DAEMON_LEADER_LEASE, time.time()),
    )
    return bool(rows)


def prune_old_events(store: Store, before: float) -> int:
    with _hooks(store)._write() as conn:
        cursor = conn.execute("DELETE FROM events WHERE received_at < ?", (_iso(before),))
        return int(cursor.rowcount or 0)


def keep_evaluating(
    open_store: Callable[[], Store],
    should_run: Callable[[Store], bool],
    stopping: Any,
    *,
    interval: float = 0.1,
    retention_seconds: float = DEFAULT_RETENTION_SECONDS,
    act: Act | None = None,
) -> None:
    """The evaluator's loop, on a thread with a store of its own, until `stopping` is set;
    it evaluates only while `should_run(store)` (the daemon's leader, a worker without one)."""
    store = open_store()
    try:
        evaluator = Evaluator(store, retention_seconds=retention_seconds, act=act)
        while not stopping.wait(interval):
            try:
                if should_run(store):
                    evaluator.tick()
            except Exception:  # the next tick tries again
                log.exception("the trigger evaluator's tick failed")
    finally:
        store.close()
