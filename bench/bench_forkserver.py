"""Benchmark: from the request to start a Prefect flow run to the flow's first printed line,
warm (forked by reconciler/worker/prefect_forkserver.py) against cold (`python -u -m
prefect.engine`, what a process worker starts), both against the same real `prefect server`.

    .venv/bin/python bench/bench_forkserver.py [--runs 10]

Each run is a deployment run (one `set_working_directory` pull step) of a flow with three tasks
that prints a line first; runs are created beforehand and started one after another. Prints
p50/p95 of request -> first line and of request -> exit, for each way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from reconciler.worker.forkserver_client import start_forkserver
from reconciler.worker.process_backend import start_process
from tests.infra.prefect_runs import create_flow_run
from tests.infra.prefect_server import running_prefect_server

FLOW = """\
from prefect import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow
def first() -> int:
    print("first line")
    return sum(double(i) for i in range(3))
"""


def timed_run(start: object, run_id: str, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds from the request to the first line, and to the exit."""
    seen = threading.Event()

    def on_line(stream: str, line: str) -> None:
        if stream == "stdout" and line == "first line":
            seen.set()

    began = time.monotonic()
    handle = start(cwd=cwd, env={**env, "PREFECT__FLOW_RUN_ID": run_id}, on_line=on_line)  # type: ignore[operator]
    seen.wait(300)
    first = time.monotonic() - began
    code = handle.wait()
    if code != 0 or not seen.is_set():
        raise RuntimeError(f"run {run_id} ended with {code} without its first line")
    return first, time.monotonic() - began


def summary(label: str, values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return (
        f"{label:<34} p50 {statistics.median(values):6.2f} s   p95 {cuts[18]:6.2f} s   "
        f"min {min(values):5.2f}   max {max(values):5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-forkserver-") as scratch:
        root = Path(scratch)
        flow_dir = root / "flows"
        flow_dir.mkdir()
        (flow_dir / "flows.py").write_text(FLOW)
        work = root / "work"
        work.mkdir()
        with running_prefect_server() as server:
            api_url = server.api_url
            base = {"PREFECT_API_URL": api_url, "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"}
            env = {**os.environ, "PREFECT_HOME": str(root / "client-home"), **base}
            os.environ["PREFECT_HOME"] = env["PREFECT_HOME"]
            run_ids = [
                create_flow_run(api_url, flow_dir, "flows.py:first") for _ in range(2 * args.runs)
            ]
            began = time.monotonic()
            forkserver = start_forkserver(sys.executable, base, environ=env)
            print(f"forkserver ready in {time.monotonic() - began:.2f} s ({forkserver.info})")
            try:
                warm = [timed_run(forkserver.start, rid, work, env) for rid in run_ids[: args.runs]]
            finally:
                forkserver.close()
            command = [sys.executable, "-u", "-m", "prefect.engine"]

            def cold_start(**kwargs: object) -> object:
                return start_process(command, **kwargs)  # type: ignore[arg-type]

            cold = [timed_run(cold_start, rid, work, env) for rid in run_ids[args.runs :]]
    print(f"{args.runs} runs each, one after another, against a real prefect server")
    print(summary("warm (forkserver): first line", [w[0] for w in warm]))
    print(summary("cold (python -m prefect.engine)", [c[0] for c in cold]))
    print(summary("warm (forkserver): exit", [w[1] for w in warm]))
    print(summary("cold: exit", [c[1] for c in cold]))


if __name__ == "__main__":
    main()
