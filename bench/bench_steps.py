"""Benchmark of build and push steps (issue 3): 50 deployments sharing one Docker build and
push give one build and one push; a second reconcile with no change gives none.

Uses the real Docker engine, the base image the tests build (debootstrap + docker import), and
Debian's docker-registry on 127.0.0.1 (tests/infra/docker_env.py). Prints a Markdown table:
wall time of each reconcile and how many times each step ran, counted from reconcile's own
step report. The baseline, in the same run, is one `docker build` of the same context done by
hand, then the same with its cache warm.

    .venv/bin/python bench/bench_steps.py [--deployments 50]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import GIT_ENV  # noqa: E402
from tests.infra.docker_env import ensure_base_image, running_registry  # noqa: E402

FLOW = '''\
from prefect import flow


@flow
def pipeline(table: str) -> None:
    """Load one table."""
'''


def make_repo(root: Path, deployments: int, base_image: str, registry: str) -> None:
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "pipeline.py").write_text(FLOW)
    (root / "Dockerfile").write_text(f"FROM {base_image}\nCOPY flows /opt/flows\n")
    (root / "work-pools.yaml").write_text("work_pools:\n  - {name: docker-etl, type: docker}\n")
    header = textwrap.dedent(
        f"""\
        build:
          - prefect_docker.deployments.steps.build_docker_image:
              id: build-image
              image_name: {registry}/bench/flows
        push:
          - prefect_docker.deployments.steps.push_docker_image:
              id: push-image
              image_name: "{{{{ build-image.image_name }}}}"
              tag: "{{{{ build-image.tag }}}}"
        deployments:
        """
    )
    body = "".join(
        textwrap.indent(
            textwrap.dedent(
                f"""\
                - name: table-{i:03d}
                  entrypoint: flows/pipeline.py:pipeline
                  parameters: {{table: t{i}}}
                  work_pool:
                    name: docker-etl
                    job_variables: {{image: "{{{{ build-image.image }}}}"}}
                """
            ),
            "  ",
        )
        for i in range(deployments)
    )
    (root / "prefect.yaml").write_text(header + body)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)


def reconcile(repo: Path, store: str) -> tuple[float, dict[str, int], str]:
    """Wall time, how many times each step ran, and the plan's summary line."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "--store", store, str(repo)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"reconcile failed:\n{done.stdout}\n{done.stderr}")
    ran = {"build-image": 0, "push-image": 0}
    for match in re.finditer(r"^step (\S+) \(prefect\.yaml\): ran$", done.stderr, re.MULTILINE):
        ran[match.group(1)] = ran.get(match.group(1), 0) + 1
    summary = next(
        (line for line in done.stdout.splitlines() if line.startswith(("Apply", "No changes"))),
        "",
    )
    return wall, ran, summary


def docker_build(context: Path, tag: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deployments", type=int, default=50)
    args = parser.parse_args()
    base = ensure_base_image()
    with running_registry() as registry, tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.deployments, base, registry.address)
        cold = docker_build(repo, "reconciler-bench-baseline:1")
        warm = docker_build(repo, "reconciler-bench-baseline:1")
        store = f"sqlite:///{Path(tmp) / 'state.db'}"
        rows = [
            ("first reconcile", *reconcile(repo, store)),
            ("second reconcile, no change", *reconcile(repo, store)),
        ]
        subprocess.run(
            ["docker", "rmi", "-f", "reconciler-bench-baseline:1"],
            stdout=subprocess.DEVNULL,
            check=False,
        )
    print(f"{args.deployments} deployments sharing one build and one push step\n")
    print("| run | wall | builds | pushes | result |")
    print("|---|---|---|---|---|")
    print(f"| baseline: `docker build` by hand, first | {cold:.2f} s | 1 | - | |")
    print(f"| baseline: `docker build` by hand, cache warm | {warm:.2f} s | 1 | - | |")
    for name, wall, ran, summary in rows:
        print(f"| {name} | {wall:.2f} s | {ran['build-image']} | {ran['push-image']} | {summary} |")


if __name__ == "__main__":
    main()
