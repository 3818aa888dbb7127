"""What the run supervisor (reconciler/worker/run_supervisor.py) adds to a run's start and end:
`/bin/true` started plain and below the supervisor, N times each, medians printed.

    .venv/bin/python bench/bench_run_supervisor.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reconciler.worker.process_backend import start_process


def plain(cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(["/bin/true"], cwd=cwd, check=True, start_new_session=True)
    return time.perf_counter() - began


def supervised(cwd: Path) -> float:
    began = time.perf_counter()
    handle = start_process(["/bin/true"], cwd=cwd, env=dict(os.environ), on_line=lambda s, t: None)
    assert handle.wait() == 0
    return time.perf_counter() - began


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        bare = statistics.median(plain(cwd) for _ in range(rounds))
        wrapped = statistics.median(supervised(cwd) for _ in range(rounds))
    print(f"/bin/true plain:      {bare * 1000:7.1f} ms (median of {rounds})")
    print(f"/bin/true supervised: {wrapped * 1000:7.1f} ms (median of {rounds})")
    print(f"added by the supervisor: {(wrapped - bare) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
