"""The events table (migrations 7 and 10), written and read once for both SQL backends through
SqlStoreBase's hooks (`_write`, `_read`) and, for the state changes of runs, inside the very
write that changes the state (`emit_run_states(conn, ...)`): an event exists exactly when its
state change was committed.

Reads: `list_events` (newest first, filtered by event name and resource id, `*` wildcards),
`events_after` (in the order they arrived, for the trigger evaluator), `prune_events`
(retention).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.model.prefect_records import EventRecord, utc_iso, utc_now_iso
from reconciler.model.resources import canonical_json
from reconciler.model.run_events import flow_run_state_event
from reconciler.model.runs import FlowRun, RunState
from reconciler.store.run_rows import now_iso
from reconciler.store.sql import Conn
from reconciler.store.sql_store import SqlStoreBase

_INSERT = (
    "INSERT INTO events (id, occurred, event, resource_id, resource, related, payload, "
    "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_COLUMNS = "id, occurred, event, resource, related, payload, received_at"


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored, with the time the store received it."""

    event: EventRecord
    received: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.event.id,
            "occurred": self.event.occurred,
            "event": self.event.event,
            "resource": self.event.resource,
            "related": self.event.related,
            "payload": self.event.payload,
            "received": self.received,
        }


def insert_events(conn: Conn, events: Iterable[EventRecord], received: str) -> None:
    """Inside a write: store these events (an id already stored is skipped)."""
    conn.many(
        _INSERT,
        [
            (
                event.id,
                utc_iso(event.occurred),
                event.event,
                event.resource_id,
                canonical_json(event.resource),
                canonical_json(event.related),
                canonical_json(event.payload),
                received,
            )
            for event in events
        ],
    )


def emit_run_states(
    conn: Conn, runs: Sequence[FlowRun], previous: Mapping[str, RunState | None], now: str
) -> None:
    """Inside the write that moved `runs` into their current states: one event each.
    `previous[run.id]` is the state each left (None: just created)."""
    if not runs:
        return
    tags: dict[str, list[str]] = {}
    keys = sorted({run.deployment for run in runs if run.deployment})
    if keys:
        wanted, params = conn.dialect.in_list("key", keys)
        for key, spec in conn.all(f"SELECT key, spec FROM deployments WHERE {wanted}", params):
            found = json.loads(spec).get("tags") or []
            tags[key] = [str(tag) for tag in found] if isinstance(found, list) else []
    pool_types: dict[str, str] = {}
    pools = sorted({run.pool for run in runs if run.pool})
    if pools:
        wanted, params = conn.dialect.in_list("name", pools)
        for name, spec in conn.all(f"SELECT name, spec FROM work_pools WHERE {wanted}", params):
            pool_types[name] = str(json.loads(spec).get("type") or "")
    occurred = utc_now_iso()  # microseconds: a run's state changes sort in their order
    insert_events(
        conn,
        [
            flow_run_state_event(
                run,
                previous.get(run.id),
                occurred,
                tags=tags.get(run.deployment, ()),
                pool_type=pool_types.get(run.pool),
            )
            for run in runs
        ],
        now_iso(),  # inside the write: the order in which triggers read events
    )


def _hooks(store: object) -> SqlStoreBase:
    assert isinstance(store, SqlStoreBase), "this store keeps no events"
    return store


def _stored(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(
        EventRecord(
            id=row[0],
            occurred=row[1],
            event=row[2],
            resource=json.loads(row[3]),
            related=json.loads(row[4]),
            payload=json.loads(row[5]),
        ),
        received=row[6],
    )


def _like(pattern: str) -> str:
    """A `*` wildcard pattern as LIKE's (with `\\` escaping LIKE's own wildcards)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def record_event(store: object, event: EventRecord) -> None:
    """Store one event (an id already stored is skipped)."""
    record_events(store, [event])


def record_events(store: object, events: Sequence[EventRecord]) -> None:
    """Store events in one write (an id already stored is skipped)."""
    with _hooks(store)._write() as conn:
        insert_events(conn, events, now_iso())


def list_events(
    store: object,
    *,
    event: str | None = None,
    resource: str | None = None,
    limit: int = 100,
) -> list[StoredEvent]:
    """Events newest first; `event` and `resource` (the resource's id) may hold `*`."""
    where: list[str] = []
    params: list[Any] = []
    for column, pattern in (("event", event), ("resource_id", resource)):
        if pattern is not None:
            where.append(f"{column} LIKE ? ESCAPE '\\'")
            params.append(_like(pattern))
    sql = f"SELECT {_COLUMNS} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY occurred DESC, received_at DESC, id DESC LIMIT ?"
    return [_stored(row) for row in _hooks(store)._read(sql, (*params, limit))]


def events_after(store: object, received: str, limit: int = 1000) -> list[StoredEvent]:
    """Events received at or after `received`, in the order they arrived (then by id)."""
    rows = _hooks(store)._read(
        f"SELECT {_COLUMNS} FROM events WHERE received_at >= ? ORDER BY received_at, id LIMIT ?",
        (received, limit),
    )
    return [_stored(row) for row in rows]


def latest_received(store: object) -> str | None:
    """When the newest event arrived (None: no event stored)."""
    rows = _hooks(store)._read("SELECT MAX(received_at) FROM events")
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def prune_events(store: object, older_than: str) -> int:
    """Delete the events received before `older_than` (retention); returns how many went."""
    with _hooks(store)._write() as conn:
        cursor = conn.execute("DELETE FROM events WHERE received_at < ?", (older_than,))
        return int(cursor.rowcount or 0)
