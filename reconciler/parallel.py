"""Run independent pieces of work on every core, in forked children.

Used by the two largest costs of a plan. Reading a prefect.yaml (YAML, schema, Prefect's loading
rules) and building its deployments is pure and independent per file (reconciler.spec.build);
rendering the plan's text is independent per change (reconciler.plan.render_text). Each child
inherits everything the work reads (the observed state, the pools, the options, the plan) and
sends back only its results, pickled through a pipe. Small inputs, one core, or a process with
threads (where fork is unsafe) do the work here.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

PARALLEL_MIN_BYTES = 256 * 1024
"""Below this much YAML (or rendered text), forking costs more than it saves."""

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_forked(
    items: Sequence[Item],
    work: Callable[[Item], Result],
    *,
    size: Callable[[Item], int],
    for_transfer: Callable[[Result], Result] = lambda result: result,
) -> list[Result]:
    """`[work(item) for item in items]`, shared out by `size` (bytes it reads or writes)
    between this process and forked children. A child's results pass through `for_transfer`
    (which makes them cheap to pickle) before they are sent; a child that fails has its share
    done here."""
    workers = min(os.cpu_count() or 1, len(items))
    total = sum(size(item) for item in items)
    if workers < 2 or total < PARALLEL_MIN_BYTES or threading.active_count() > 1:
        return [work(item) for item in items]
    order = sorted(range(len(items)), key=lambda i: -size(items[i]))
    shares = [order[w::workers] for w in range(workers)]  # balanced by size
    children = [_fork([items[i] for i in share], work, for_transfer) for share in shares[1:]]
    results: dict[int, Result] = {i: work(items[i]) for i in shares[0]}
    for child, share in zip(children, shares[1:], strict=True):
        received: list[Result] | None = _collect(child)
        if received is None or len(received) != len(share):  # the child failed: do it here
            received = [work(items[i]) for i in share]
        for i, result in zip(share, received, strict=True):
            results[i] = result
    return [results[i] for i in range(len(items))]


def _fork(
    items: list[Item],
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
            results = [for_transfer(work(item)) for item in items]
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    return pid, read_end


def _collect(child: tuple[int, int] | None) -> list[Any] | None:
    if child is None:
        return None
    pid, read_end = child
    with os.fdopen(read_end, "rb") as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return None
    received: list[Any] = pickle.loads(data)
    return received
