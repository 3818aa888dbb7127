"""Run independent pieces of work on every core, in forked children.

Used by the two largest costs of a plan. Reading a prefect.yaml (YAML, schema, Prefect's loading
rules) and building its deployments is pure and independent per file (reconciler.desired.build);
rendering the plan's text is independent per change (reconciler.plan.render_text). Each child
inherits everything the work reads (the observed state, the pools, the options, the plan) and
sends back only its results, pickled through a pipe.

The pieces are not shared out in advance: this process and the children take the next piece
from a common queue (a pipe holding their numbers) until none is left. So when other programs
keep a core busy and a child gets little time, this process simply does more of the work,
instead of waiting for a share that was promised to the child. Small inputs, one core, or a
process with threads (where fork is unsafe) do all the work here.
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

PARALLEL_MIN_BYTES = 256 * 1024
"""Below this much YAML (or rendered text), forking costs more than it saves."""

MAX_PIECES = 8192
"""More pieces than the queue pipe holds numbers for are done here, in one process."""

Item = TypeVar("Item")
Result = TypeVar("Result")

_NUMBER = struct.Struct("=I")  # a piece's number in the queue: 4 bytes, read whole (< PIPE_BUF)


def map_forked(
    items: Sequence[Item],
    work: Callable[[Item], Result],
    *,
    size: Callable[[Item], int],
    for_transfer: Callable[[Result], Result] = lambda result: result,
) -> list[Result]:
    """`[work(item) for item in items]`, done by this process and forked children, each taking
    the next item (largest first) until none is left; `size` is the bytes an item reads or
    writes. A child's results pass through `for_transfer` (which makes them cheap to pickle)
    before they are sent. When a piece fails (here or in a child), or a child dies, all the
    work is done again here, in order: it then fails exactly as the plain loop would."""
    workers = min(os.cpu_count() or 1, len(items))
    total = sum(size(item) for item in items)
    if (
        workers < 2
        or total < PARALLEL_MIN_BYTES
        or len(items) > MAX_PIECES
        or threading.active_count() > 1
    ):
        return [work(item) for item in items]
    order = sorted(range(len(items)), key=lambda i: -size(items[i]))
    queue = _queue(order)
    if queue is None:
        return [work(item) for item in items]
    children = [_fork(queue, items, work, for_transfer) for _ in range(workers - 1)]
    results: dict[int, Result] = {}
    failed = False
    try:
        for index in _taken(queue):
            results[index] = work(items[index])
    except Exception:
        failed = True
    finally:
        os.close(queue)
        for child in children:  # always waited for, even when this process fails
            done = _collect(child)
            failed = failed or done is None
            results.update(done or {})
    if failed:
        return [work(item) for item in items]
    return [results[i] for i in range(len(items))]


def _queue(order: list[int]) -> int | None:
    """The read end of a pipe holding every number, written whole before anyone reads (None
    when the pipe cannot hold them all)."""
    data = b"".join(_NUMBER.pack(i) for i in order)
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return None
    try:
        os.set_blocking(write_end, False)
        written = os.write(write_end, data)
    except OSError:
        written = 0
    finally:
        os.close(write_end)
    if written < len(data):
        os.close(read_end)
        return None
    return read_end


def _taken(queue: int) -> Iterator[int]:
    """The numbers this process takes from the queue, one at a time, until it is empty."""
    while True:
        data = os.read(queue, _NUMBER.size)
        if len(data) < _NUMBER.size:
            return
        yield _NUMBER.unpack(data)[0]


def _fork(
    queue: int,
    items: Sequence[Item],
    work: Callable[[Item], Result],
    for_transfer: Callable[[Result], Result],
) -> tuple[int, int] | None:
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child: work, send, and leave without running any cleanup of the parent
        os.close(read_end)
        code = 0
        try:
            done = {i: for_transfer(work(items[i])) for i in _taken(queue)}
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL))
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    return pid, read_end


def _collect(child: tuple[int, int] | None) -> dict[int, Any] | None:
    """What a child did (nothing when it could not be forked); None when it failed."""
    if child is None:
        return {}
    pid, read_end = child
    with os.fdopen(read_end, "rb") as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return None
    received: dict[int, Any] = pickle.loads(data)
    return received
