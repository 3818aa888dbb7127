"""Prefect's event stream: the `/events/in` and `/events/out` websockets of our Prefect API,
and the writer that stores what comes in.

Protocol (Prefect 3's): the client asks for the `prefect` subprotocol, sends
`{"type":"auth","token":...}`, and gets `{"type":"auth_success"}` (or `auth_failure` with a
reason); then one JSON event per text frame, never acknowledged. Task runs exist only as these
events, so they are kept: an `EventWriter` thread takes them off a queue and writes them in
batches (every BATCH_SECONDS or BATCH_SIZE events, whichever comes first), so a burst of
task-state events costs one transaction per batch. Repeats (the client resends unconfirmed
events after a reconnect) are ignored by id in the store.

`/events/out` is only there so the suspension observer of a deployment run connects quietly:
reconciler never suspends runs, so it sends nothing after the handshake.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from reconciler.model.prefect_records import FLOW_RUN_PREFIX, EventRecord
from reconciler.store.base import Store

BATCH_SECONDS = 0.05
BATCH_SIZE = 500

log = logging.getLogger(__name__)


def event_from_json(item: Any) -> EventRecord | None:
    """An event as the client sent it, or None when it is not one (it is then skipped)."""
    if not isinstance(item, dict):
        return None
    try:
        return EventRecord(
            id=str(item["id"]),
            occurred=str(item["occurred"]),
            event=str(item["event"]),
            resource=dict(item.get("resource") or {}),
            related=[dict(r) for r in item.get("related") or []],
            payload=dict(item.get("payload") or {}),
        )
    except (KeyError, TypeError, ValueError):
        return None


class EventWriter:
    """Stores events in batches from a thread of its own, with a store of its own."""

    def __init__(self, open_store: Callable[[], Store]) -> None:
        self._open_store = open_store
        self._queue: queue.Queue[EventRecord | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self.written = 0

    def put(self, event: EventRecord) -> None:
        self._start()
        self._idle.clear()
        self._queue.put(event)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything put so far is written (for tests and shutdown)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="prefect-api-events", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        store = self._open_store()
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                deadline = time.monotonic() + BATCH_SECONDS
                while len(batch) < BATCH_SIZE:
                    remaining = deadline - time.monotonic()
                    try:
                        item = self._queue.get(timeout=max(remaining, 0))
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                try:
                    store.record_events(batch)
                    self.written += len(batch)
                except Exception:
                    log.exception("could not store %d Prefect events", len(batch))
                if self._queue.empty():
                    self._idle.set()
        finally:
            self._idle.set()
            store.close()


async def _handshake(websocket: WebSocket, token_ok: Callable[[Any], bool]) -> bool:
    """Accept with the `prefect` subprotocol and answer the auth frame."""
    wanted = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="prefect" if "prefect" in wanted else None)
    try:
        frame = json.loads(await websocket.receive_text())
    except (WebSocketDisconnect, ValueError):
        return False
    if not isinstance(frame, dict) or frame.get("type") != "auth":
        await websocket.send_text(
            json.dumps({"type": "auth_failure", "reason": "expected an auth frame first"})
        )
        await websocket.close(code=1008)
        return False
    if not token_ok(frame.get("token")):
        await websocket.send_text(
            json.dumps({"type": "auth_failure", "reason": "the token is not valid for this API"})
        )
        await websocket.close(code=1008)
        return False
    await websocket.send_text(json.dumps({"type": "auth_success"}))
    return True


async def events_in(
    websocket: WebSocket,
    writer: EventWriter,
    token_ok: Callable[[Any], bool],
    run_allowed: Callable[[str], Any],
) -> None:
    """Receive events until the client goes. `run_allowed(flow_run_id)` is awaited once per
    run per connection: events about runs the caller may not touch are dropped."""
    if not await _handshake(websocket, token_ok):
        return
    allowed: dict[str, bool] = {}
    try:
        while True:
            text = await websocket.receive_text()
            try:
                event = event_from_json(json.loads(text))
            except ValueError:
                continue
            if event is None:
                continue
            run_id = event.related_id("flow-run", FLOW_RUN_PREFIX)
            if run_id is None and event.resource_id.startswith(FLOW_RUN_PREFIX):
                run_id = event.resource_id[len(FLOW_RUN_PREFIX) :]
            if run_id is not None:
                if run_id not in allowed:
                    allowed[run_id] = bool(await run_allowed(run_id))
                if not allowed[run_id]:
                    continue
            writer.put(event)
    except WebSocketDisconnect:
        return


async def events_out(websocket: WebSocket, token_ok: Callable[[Any], bool]) -> None:
    """Accept, authenticate, and send nothing: reconciler never suspends a run."""
    if not await _handshake(websocket, token_ok):
        return
    try:
        while True:
            await websocket.receive_text()  # the filter frame; nothing will match it
    except WebSocketDisconnect:
        return
