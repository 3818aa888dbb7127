"""Generate a realistic repository with N deployments spread over F prefect.yaml files.

Used by the benchmarks; also handy for trying reconciler at scale:
    python bench/generate.py /tmp/big 1000 --files 10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import textwrap
from pathlib import Path

FLOW_FILE = textwrap.dedent(
    '''
    from prefect import flow


    @flow(name="pipeline-{index}")
    def pipeline_{index}(source: str, days: int = 1, full_refresh: bool = False) -> None:
        """Load `days` of data from `source`."""
    '''
)

POOLS = textwrap.dedent(
    """
    work_pools:
      - name: etl
        type: process
        concurrency_limit: 20
        queues:
          - {name: critical, priority: 1}
          - {name: bulk, priority: 5, concurrency_limit: 4}
      - name: docker-etl
        type: docker
        job_variables: {image: "registry.local/etl:1"}
    """
)


def deployment_yaml(file_index: int, index: int) -> str:
    pool = "etl" if index % 3 else "docker-etl"
    queue = "critical" if index % 7 == 0 and pool == "etl" else "default"
    return textwrap.dedent(
        f"""
          - name: dep-{index:05d}
            entrypoint: flows/pipeline_{file_index}.py:pipeline_{file_index}
            description: Deployment number {index}
            tags: [bench, group-{index % 10}]
            parameters:
              source: s3://bucket/table-{index}
              days: {1 + index % 30}
            schedules:
              - cron: "{index % 60} {index % 24} * * *"
                timezone: Europe/Berlin
            work_pool:
              name: {pool}
              work_queue_name: {queue}
              job_variables:
                env:
                  TABLE: table_{index}
        """
    )


def generate(root: Path, deployments: int, files: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "work-pools.yaml").write_text(POOLS)
    per_file = deployments // files
    for f in range(files):
        directory = root / f"project-{f:02d}"
        (directory / "flows").mkdir(parents=True, exist_ok=True)
        (directory / "flows" / f"pipeline_{f}.py").write_text(FLOW_FILE.format(index=f))
        body = "".join(deployment_yaml(f, f * per_file + i) for i in range(per_file))
        (directory / "prefect.yaml").write_text(
            "name: bench\npull:\n  - prefect.deployments.steps.set_working_directory:\n"
            "      directory: /opt/flows\ndeployments:" + body
        )
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@reconciler.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@reconciler.invalid",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "generated"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("deployments", type=int)
    parser.add_argument("--files", type=int, default=10)
    args = parser.parse_args()
    generate(args.root, args.deployments, args.files)


if __name__ == "__main__":
    main()
