"""Benchmark of the pipeline (issue 2): dry-run, first apply and no-op re-run of generated
repositories with 1,000 and 10,000 deployments over 10 prefect.yaml files.

Prints a Markdown table. Each figure is the median wall time of `--repeat` runs of the real
CLI (a fresh process, as users run it, with every module's bytecode compiled first as an install
does, after one warm-up run), with CPU time beside it (the process and its children). The
baseline, measured in the same run on the same files, is the floor for any Python tool: a
process that only imports PyYAML and parses the files with its C loader.

    .venv/bin/python bench/bench_pipeline.py [--sizes 1000 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine
from generate import generate

RECONCILE = [sys.executable, "-m", "reconciler"]
BASELINE = (
    "import glob, sys, yaml\n"
    "for f in glob.glob(sys.argv[1] + '/*/prefect.yaml'):\n"
    "    yaml.load(open(f, 'rb'), Loader=yaml.CSafeLoader)\n"
)


# As installed software runs: with its bytecode cached (some sandboxes turn that off).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cache_bytecode() -> None:
    """Compile every module of the package, as `pip install` does (an editable install
    compiles nothing, and the first run of each path would pay for it)."""
    import reconciler

    compileall.compile_dir(Path(reconciler.__file__).parent, quiet=1)


def run(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        args, cwd=cwd, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median_of(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def measure(size: int, repeat: int, scratch: Path) -> dict[str, tuple[float, float]]:
    repo = scratch / f"repo-{size}"
    generate(repo, size, 10)
    figures: dict[str, tuple[float, float]] = {}
    run([*RECONCILE, "--dry-run", "-q", "--store", f"sqlite:///{scratch / 'warm.db'}"], repo)
    figures["baseline: parse YAML only"] = median_of(
        [run([sys.executable, "-c", BASELINE, str(repo)], repo) for _ in range(repeat)]
    )
    empty = f"sqlite:///{scratch / f'empty-{size}.db'}"
    figures["--dry-run (text)"] = median_of(
        [run([*RECONCILE, "--dry-run", "-q", "--store", empty], repo) for _ in range(repeat)]
    )
    figures["--dry-run -o json"] = median_of(
        [
            run([*RECONCILE, "--dry-run", "-q", "-o", "json", "--store", empty], repo)
            for _ in range(repeat)
        ]
    )
    applies = []
    for attempt in range(repeat):
        store = f"sqlite:///{scratch / f'state-{size}-{attempt}.db'}"
        applies.append(run([*RECONCILE, "-q", "--store", store], repo))
    figures["first apply"] = median_of(applies)
    store = f"sqlite:///{scratch / f'state-{size}-0.db'}"
    figures["no-op second run"] = median_of(
        [run([*RECONCILE, "-q", "--store", store], repo) for _ in range(repeat)]
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    cache_bytecode()
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        results = {size: measure(size, args.repeat, Path(tmp)) for size in args.sizes}
    sizes = args.sizes
    header = " | ".join(f"{s:,} deployments: wall / cpu (x baseline)" for s in sizes)
    print(f"| step | {header} |" + (" 10k / 1k |" if len(sizes) == 2 else ""))
    print("|---|" + "---|" * len(sizes) + ("---|" if len(sizes) == 2 else ""))
    for step in results[sizes[0]]:
        cells = " | ".join(
            f"{results[s][step][0]:.2f} s / {results[s][step][1]:.2f} s "
            f"({results[s][step][0] / results[s]['baseline: parse YAML only'][0]:.1f}x)"
            for s in sizes
        )
        ratio = ""
        if len(sizes) == 2:
            ratio = f" {results[sizes[1]][step][0] / results[sizes[0]][step][0]:.1f}x |"
        print(f"| {step} | {cells} |{ratio}")


if __name__ == "__main__":
    main()
