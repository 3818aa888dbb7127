"""Build and push steps during apply: each distinct sequence runs once, its outputs feed the
deployments, and a step whose inputs did not change is not run again. A dry-run runs nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.resources import Kind
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import PREFECT, project
from tests.infra.docker_env import Registry

pytestmark = pytest.mark.e2e

COUNTER = """\
import os, pathlib
log = pathlib.Path(os.environ["COUNT_FILE"])
with log.open("a") as out:
    out.write("ran\\n")
print("v" + str(len(log.read_text().splitlines())))
"""

SHARED_BUILD = """\
build:
  - prefect.deployments.steps.run_shell_script:
      id: version
      script: python3 count.py
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool:
      name: etl
      job_variables:
        env: {VERSION: "{{ version.stdout }}"}
  - name: hourly
    entrypoint: flows/etl.py:ingest
    work_pool:
      name: etl
      job_variables:
        env: {VERSION: "{{ version.stdout }}"}
"""


def spec(store_url: str, key: str) -> dict[str, Any]:
    store = open_store(store_url, readonly=True)
    try:
        found = store.get(Kind.DEPLOYMENT, key)
    finally:
        store.close()
    assert found is not None, key
    return found.spec


def test_a_shared_build_step_runs_once_and_not_again_until_the_commit_moves(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.log"
    env = {"COUNT_FILE": str(runs)}
    repo = make_repo(project({"prefect.yaml": SHARED_BUILD, "count.py": COUNTER}))

    planned = run_cli("--dry-run", "--store", store_url, str(repo.path), env=env)
    assert planned.code == 0, planned.output
    assert "(known after build)" in planned.stdout
    assert (
        "  would run          version (run_shell_script) in prefect.yaml for ingest/hourly, "
        "ingest/nightly" in planned.stdout
    )
    assert not runs.exists(), "a dry-run runs no step"

    first = run_cli("--store", store_url, str(repo.path), env=env)
    assert first.code == 0, first.output
    assert runs.read_text().splitlines() == ["ran"], "one run for the two deployments"
    assert "[version] v1" in first.stderr
    assert "step version (prefect.yaml): ran" in first.stderr
    assert spec(store_url, "ingest/nightly")["job_variables"]["env"] == {"VERSION": "v1"}
    assert spec(store_url, "ingest/hourly")["job_variables"]["env"] == {"VERSION": "v1"}

    again = run_cli("--store", store_url, str(repo.path), env=env)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout
    assert "step version (prefect.yaml): unchanged" in again.stderr
    assert len(runs.read_text().splitlines()) == 1, "unchanged inputs: not run again"

    # A dry-run now plans with the recorded outputs: no "(known after build)", no change.
    previewed = run_cli("--dry-run", "-o", "json", "--store", store_url, str(repo.path), env=env)
    assert previewed.code == 0, previewed.output
    document = json.loads(previewed.stdout)
    assert document["summary"] == {"add": 0, "change": 0, "destroy": 0, "adopt": 0}
    assert [(s["id"], s["status"]) for s in document["steps"]] == [("version", "unchanged")]
    assert len(runs.read_text().splitlines()) == 1

    repo.commit({"README.md": "docs\n"}, "a new commit")
    moved = run_cli("--store", store_url, str(repo.path), env=env)
    assert moved.code == 0, moved.output
    assert len(runs.read_text().splitlines()) == 2, "a shell step reruns for a new commit"
    assert '~ job_variables.env.VERSION = "v1" -> "v2"' in moved.stdout


def test_quiet_silences_step_output(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    tmp_path: Path,
) -> None:
    env = {"COUNT_FILE": str(tmp_path / "runs.log")}
    repo = make_repo(project({"prefect.yaml": SHARED_BUILD, "count.py": COUNTER}))
    quiet = run_cli("--quiet", "--store", store_url, str(repo.path), env=env)
    assert quiet.code == 0, quiet.output
    assert "[version]" not in quiet.stderr and "step version" not in quiet.stderr


@pytest.mark.docker
def test_a_docker_build_and_push_feed_the_image_and_are_skipped_when_unchanged(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    base_image: str,
    registry: Registry,
) -> None:
    image_name = f"{registry.address}/e2e/flows"
    prefect_yaml = f"""\
build:
  - prefect_docker.deployments.steps.build_docker_image:
      id: build-image
      image_name: {image_name}
push:
  - prefect_docker.deployments.steps.push_docker_image:
      image_name: "{{{{ build-image.image_name }}}}"
      tag: "{{{{ build-image.tag }}}}"
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool:
      name: gpu
      job_variables:
        image: "{{{{ build-image.image }}}}"
"""
    dockerfile = f"FROM {base_image}\nCOPY flows /opt/flows\n"
    repo = make_repo(project({"prefect.yaml": prefect_yaml, "Dockerfile": dockerfile}))

    first = run_cli("--store", store_url, str(repo.path))
    assert first.code == 0, first.output
    assert "step build-image (prefect.yaml): ran" in first.stderr
    image = spec(store_url, "ingest/nightly")["job_variables"]["image"]
    assert image.startswith(f"{image_name}:") and len(image.rsplit(":", 1)[1]) == 12

    again = run_cli("--store", store_url, str(repo.path))
    assert again.code == 0, again.output
    assert "No changes." in again.stdout
    assert "step build-image (prefect.yaml): unchanged" in again.stderr
    assert "push_docker_image (prefect.yaml): unchanged" in again.stderr

    repo.commit({"flows/extra.py": "X = 1\n"}, "more code in the image")
    rebuilt = run_cli("--store", store_url, str(repo.path))
    assert rebuilt.code == 0, rebuilt.output
    assert "step build-image (prefect.yaml): ran" in rebuilt.stderr
    new_image = spec(store_url, "ingest/nightly")["job_variables"]["image"]
    assert new_image != image and new_image.startswith(f"{image_name}:")


def test_a_repository_whose_steps_fail_is_left_out_and_the_others_apply(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    failing_build = """\
build:
  - prefect.deployments.steps.run_shell_script:
      id: broken
      script: python3 -c "raise SystemExit(4)"
deployments:
  - name: built
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
"""
    broken = make_repo(project({"prefect.yaml": failing_build}), name="broken")
    plain = make_repo(
        project(
            {
                "work-pools.yaml": "work_pools:\n  - {name: other, type: process}\n",
                "prefect.yaml": PREFECT.replace("{name: etl}", "{name: other}"),
            }
        ),
        name="plain",
    )

    result = run_cli("--store", store_url, str(broken.path), str(plain.path))
    assert result.code == 1, result.output
    assert f'{broken.path}/prefect.yaml:2:5: step "broken"' in result.stderr
    assert "exit code 4" in result.stderr
    assert "the others were" in result.stderr
    store = open_store(store_url, readonly=True)
    try:
        deployments = [r.key for r in store.list_resources(Kind.DEPLOYMENT)]
        pools = [r.key for r in store.list_resources(Kind.WORK_POOL)]
    finally:
        store.close()
    assert deployments == ["ingest/nightly"], "the plain repository was applied"
    assert pools == ["other"], "nothing of the broken repository was written"

    alone = run_cli("--store", store_url, str(broken.path))
    assert alone.code == 1 and "Traceback" not in alone.output
    assert 'step "broken"' in alone.stderr
