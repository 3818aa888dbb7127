"""The cyclic garbage collector held off while a reconcile pass runs (used by the engine).

A long-lived process (the daemon, with its per-file build cache, or a server) holds many
objects; each full pass of the cyclic collector walks all of them, and one that falls inside
a plan costs it up to a second on 10,000 deployments (measured: bench/bench_blob_cache.py).
A pass allocates much and makes almost no cycles (reference counting frees what it drops),
so the collector is paused while any pass runs, on any thread, and resumes afterwards as it
was. The CLI turns the collector off for its whole short life (cli/main.py); this is the same
idea for processes that live on.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_passes = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block; nested and concurrent blocks share one pause,
    and the last one out restores the collector as the first one in found it."""
    global _passes, _was_enabled
    with _lock:
        if _passes == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _passes += 1
    try:
        yield
    finally:
        with _lock:
            _passes -= 1
            if _passes == 0 and _was_enabled:
                gc.enable()
