"""Build and push steps with a Prefect server as the target (`--store prefect+http://...`):
the same steps stage as with our own store (their outputs templated into the deployments
applied to Prefect), the step cache kept in a store of ours (`--step-cache`, else the
default `.reconciler/state.db`, or the daemon's `store:`), a dry-run that runs none, and a
repository whose steps fail applying nothing. A real `prefect server` (tests/infra), real git,
and for the Docker test a real Docker engine and registry on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, GitRepo
from tests.infra.docker_env import Registry
from tests.infra.prefect_server import PrefectServer
from tests.prefect_target.test_prefect_target import Names, deployments, snapshot

pytestmark = pytest.mark.prefect

COUNTER = """\
import os, pathlib
log = pathlib.Path(os.environ["COUNT_FILE"])
with log.open("a") as out:
    out.write("ran\\n")
print("v" + str(len(log.read_text().splitlines())))
"""

FLOW = "from prefect import flow\n\n\n@flow\ndef {flow}() -> None:\n    pass\n"


def files(
    names: Names, build: str, job_variables: str, pool_type: str = "process"
) -> dict[str, str]:
    """A repository: one pool, one flow, a deployment `nightly` whose job variables take the
    outputs of the `build:` steps."""
    prefect_yaml = f"""\
name: test-project
prefect-version: 3.9.1
{build}
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: /opt/flows
deployments:
  - name: nightly
    entrypoint: flows/{names.flow}.py:{names.flow}
    work_pool:
      name: {names.pool}
      job_variables: {job_variables}
"""
    return {
        "prefect.yaml": prefect_yaml,
        "work-pools.yaml": f"work_pools:\n  - name: {names.pool}\n    type: {pool_type}\n",
        f"flows/{names.flow}.py": FLOW.format(flow=names.flow),
        "count.py": COUNTER,
    }


SHELL_BUILD = """\
build:
  - prefect.deployments.steps.run_shell_script:
      id: version
      script: python3 count.py"""


def apply(
    run_cli: Callable[..., CliResult], repo: GitRepo, target: str, *args: str, **kw: Any
) -> CliResult:
    return run_cli("apply", str(repo.path), "--store", target, "--no-color", *args, **kw)


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def target(prefect_server: PrefectServer) -> str:
    return f"prefect+{prefect_server.api_url}"


def test_a_shell_steps_output_is_templated_into_prefect_and_not_run_again(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.log"
    env = {"COUNT_FILE": str(runs)}
    repo = make_repo(files(names, SHELL_BUILD, '{env: {VERSION: "{{ version.stdout }}"}}'))
    cache = repo.path / ".reconciler" / "state.db"  # the default: in the repository's root
    before = snapshot(prefect_server)

    planned = apply(run_cli, repo, target, "--dry-run", env=env, cwd=repo.path)
    assert planned.code == 0, planned.output
    assert "(known after build)" in planned.stdout
    assert (
        "  would run          version (run_shell_script) in prefect.yaml for "
        f"{names.flow_name}/nightly" in planned.stdout
    )
    assert not runs.exists(), "a dry-run runs no step"
    assert not cache.exists(), "a dry-run creates no step cache"
    assert snapshot(prefect_server) == before, "a dry-run writes nothing to Prefect"

    first = apply(run_cli, repo, target, env=env, cwd=repo.path)
    assert first.code == 0, first.output
    assert "[version] v1" in first.stderr
    assert "step version (prefect.yaml): ran" in first.stderr
    assert '"v1"' in first.stdout, "the plan shows the step's output"
    assert runs.read_text().splitlines() == ["ran"]
    held = deployments(prefect_server, names.flow_name)["nightly"]
    assert held["job_variables"]["env"] == {"VERSION": "v1"}
    assert cache.exists(), "the step cache is kept in the default store"

    again = apply(run_cli, repo, target, env=env, cwd=repo.path)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout
    assert "step version (prefect.yaml): unchanged" in again.stderr
    assert runs.read_text().splitlines() == ["ran"], "unchanged inputs: not run again"

    # A dry-run now plans with the recorded outputs: the step unchanged, nothing to do.
    previewed = apply(run_cli, repo, target, "--dry-run", "-o", "json", env=env, cwd=repo.path)
    assert previewed.code == 0, previewed.output
    document = json.loads(previewed.stdout)
    assert document["summary"] == {"add": 0, "change": 0, "destroy": 0, "adopt": 0}
    assert [(s["id"], s["status"]) for s in document["steps"]] == [("version", "unchanged")]
    assert runs.read_text().splitlines() == ["ran"]

    # A new commit: a shell step runs again, and its new output reaches Prefect.
    repo.commit({"README.md": "docs\n"}, "a new commit")
    moved = apply(run_cli, repo, target, env=env, cwd=repo.path)
    assert moved.code == 0, moved.output
    assert '~ job_variables.env.VERSION = "v1" -> "v2"' in moved.stdout
    held = deployments(prefect_server, names.flow_name)["nightly"]
    assert held["job_variables"]["env"] == {"VERSION": "v2"}


def test_step_cache_option_names_the_store_and_skip_build_runs_no_step(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.log"
    env = {"COUNT_FILE": str(runs)}
    repo = make_repo(files(names, SHELL_BUILD, '{env: {VERSION: "{{ version.stdout }}"}}'))

    skipped = apply(run_cli, repo, target, "--skip-build", env=env)
    assert skipped.code == 0, skipped.output
    assert not runs.exists(), "--skip-build runs no step"
    # its placeholder removed, with a warning at its place
    assert f"{repo.path}/prefect.yaml:15:38: warning: placeholder" in skipped.stderr
    assert "VERSION" not in deployments(prefect_server, names.flow_name)["nightly"].get(
        "job_variables", {}
    ).get("env", {})

    cache = tmp_path / "steps.db"
    built = apply(run_cli, repo, target, "--step-cache", f"sqlite:///{cache}", env=env)
    assert built.code == 0, built.output
    assert runs.read_text().splitlines() == ["ran"]
    with sqlite3.connect(cache) as conn:
        recorded = conn.execute("SELECT step_name FROM step_results").fetchall()
    assert recorded == [("prefect.deployments.steps.run_shell_script",)]
    assert deployments(prefect_server, names.flow_name)["nightly"]["job_variables"]["env"] == {
        "VERSION": "v1"
    }

    same = apply(run_cli, repo, target, env={**env, "RECONCILER_STEP_CACHE": f"sqlite:///{cache}"})
    assert same.code == 0, same.output
    assert "No changes." in same.stdout
    assert runs.read_text().splitlines() == ["ran"]

    refused = apply(run_cli, repo, target, "--step-cache", target, env=env)
    assert refused.code == 1, refused.output
    assert "the step cache prefect+http" in refused.stderr
    assert "is a Prefect server" in refused.stderr
    assert "Traceback" not in refused.output
    assert runs.read_text().splitlines() == ["ran"]


def test_a_repository_whose_steps_fail_applies_nothing_to_prefect(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    tmp_path: Path,
) -> None:
    failing = """\
build:
  - prefect.deployments.steps.run_shell_script:
      id: broken
      script: python3 -c "raise SystemExit(4)\""""
    repo = make_repo(files(names, failing, "{}"))
    before = snapshot(prefect_server)
    result = apply(run_cli, repo, target, "--step-cache", f"sqlite:///{tmp_path / 's.db'}")
    assert result.code == 1, result.output
    assert f'{repo.path}/prefect.yaml:4:5: step "broken"' in result.stderr
    assert "exit code 4" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(prefect_server) == before, "nothing of the repository reached Prefect"
    assert deployments(prefect_server, names.flow_name) == {}


def test_the_daemon_runs_the_steps_for_a_prefect_target(
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    start_daemon: Any,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.log"
    repo = make_repo(files(names, SHELL_BUILD, '{env: {VERSION: "{{ version.stdout }}"}}'))
    commit = repo.git("rev-parse", "HEAD")
    daemon = start_daemon(
        {
            "target": target,
            "drift_interval": "1s",
            "repositories": [{"name": "flows", "path": str(repo.path)}],
        },
        env={"COUNT_FILE": str(runs)},
    )
    daemon.wait_for(
        lambda s: (
            s.get("flows", {}).get("applied_commit") == commit and s["flows"]["state"] == "Synced"
        ),
        timeout=90,
    )
    held = deployments(prefect_server, names.flow_name)["nightly"]
    assert held["job_variables"]["env"] == {"VERSION": "v1"}
    # Drift checks plan again every second: the recorded output is used, the step not rerun.
    daemon.wait_for(lambda s: "in sync" in (s["flows"]["message"] or ""), timeout=90)
    assert runs.read_text().splitlines() == ["ran"]
    with sqlite3.connect(daemon.store_url.removeprefix("sqlite:///")) as conn:
        recorded = conn.execute("SELECT step_name FROM step_results").fetchall()
    assert recorded == [("prefect.deployments.steps.run_shell_script",)], "in the daemon's store"


def registry_tags(registry: Registry, name: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry.address}/v2/{name}/tags/list", timeout=30) as r:
        return list(json.load(r).get("tags") or [])


DOCKER_BUILD = """\
build:
  - prefect_docker.deployments.steps.build_docker_image:
      id: build-image
      image_name: {image_name}
push:
  - prefect_docker.deployments.steps.push_docker_image:
      image_name: "{{{{ build-image.image_name }}}}"
      tag: "{{{{ build-image.tag }}}}\""""


@pytest.mark.docker
def test_a_docker_build_and_push_reach_prefect_and_the_registry_once(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    base_image: str,
    registry: Registry,
    tmp_path: Path,
) -> None:
    repository = f"steps/{names.flow.replace('_', '-')}"
    image_name = f"{registry.address}/{repository}"
    repo = make_repo(
        {
            **files(
                names,
                DOCKER_BUILD.format(image_name=image_name),
                '{image: "{{ build-image.image }}"}',
                pool_type="docker",
            ),
            "Dockerfile": f"FROM {base_image}\nCOPY flows /opt/flows\n",
        }
    )
    cache = ("--step-cache", f"sqlite:///{tmp_path / 'steps.db'}")
    before = snapshot(prefect_server)

    planned = apply(run_cli, repo, target, "--dry-run", *cache)
    assert planned.code == 0, planned.output
    assert "would run          build-image (build_docker_image) in prefect.yaml" in planned.stdout
    push = "prefect_docker.deployments.steps.push_docker_image"
    assert f"would run          {push} in prefect.yaml" in planned.stdout
    assert "[build-image]" not in planned.stderr, "a dry-run builds nothing"
    assert snapshot(prefect_server) == before

    first = apply(run_cli, repo, target, *cache)
    assert first.code == 0, first.output
    assert "step build-image (prefect.yaml): ran" in first.stderr
    image = deployments(prefect_server, names.flow_name)["nightly"]["job_variables"]["image"]
    assert image.startswith(f"{image_name}:"), image
    assert registry_tags(registry, repository) == [image.rsplit(":", 1)[1]]

    again = apply(run_cli, repo, target, *cache)
    assert again.code == 0, again.output
    assert "No changes." in again.stdout
    assert "step build-image (prefect.yaml): unchanged" in again.stderr
    assert "push_docker_image (prefect.yaml): unchanged" in again.stderr
    built_lines = [line for line in again.stderr.splitlines() if line.startswith("[build-image]")]
    assert built_lines == [
        "[build-image] = prefect_docker.deployments.steps.build_docker_image: inputs unchanged, "
        "not run again"
    ], "no build ran"
    assert registry_tags(registry, repository) == [image.rsplit(":", 1)[1]]

    previewed = apply(run_cli, repo, target, "--dry-run", "-o", "json", *cache)
    assert previewed.code == 0, previewed.output
    document = json.loads(previewed.stdout)
    assert document["summary"] == {"add": 0, "change": 0, "destroy": 0, "adopt": 0}
    assert [s["status"] for s in document["steps"]] == ["unchanged", "unchanged"]


@pytest.mark.docker
def test_a_failing_docker_build_applies_nothing_to_prefect(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    base_image: str,
    registry: Registry,
    tmp_path: Path,
) -> None:
    image_name = f"{registry.address}/steps/broken-{names.pool}"
    repo = make_repo(
        {
            **files(
                names,
                DOCKER_BUILD.format(image_name=image_name),
                '{image: "{{ build-image.image }}"}',
                pool_type="docker",
            ),
            "Dockerfile": f'FROM {base_image}\nRUN python3 -c "raise SystemExit(3)"\n',
        }
    )
    before = snapshot(prefect_server)
    result = apply(run_cli, repo, target, "--step-cache", f"sqlite:///{tmp_path / 's.db'}")
    assert result.code == 1, result.output
    assert f'{repo.path}/prefect.yaml:4:5: step "build-image"' in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(prefect_server) == before, "nothing of the repository reached Prefect"


def test_a_saved_plan_with_steps_applies_into_prefect_exactly_once(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
    target: str,
    names: Names,
    tmp_path: Path,
) -> None:
    """`reconcile plan -out FILE` then `reconcile apply FILE`: the steps run at apply, and the
    saved plan is checked against what Prefect holds (the same gate as with our store)."""
    runs = tmp_path / "runs.log"
    env = {"COUNT_FILE": str(runs)}
    cache = ("--step-cache", f"sqlite:///{tmp_path / 'steps.db'}")
    repo = make_repo(files(names, SHELL_BUILD, '{env: {VERSION: "{{ version.stdout }}"}}'))
    saved = tmp_path / "plan.json"
    made = run_cli("plan", str(repo.path), "--store", target, *cache, "-out", str(saved), env=env)
    assert made.code == 0, made.output
    assert not runs.exists()

    applied = run_cli("apply", str(saved), "--store", target, *cache, env=env)
    assert applied.code == 0, applied.output
    assert runs.read_text().splitlines() == ["ran"]
    held = deployments(prefect_server, names.flow_name)["nightly"]
    assert held["job_variables"]["env"] == {"VERSION": "v1"}

    before = snapshot(prefect_server)
    again = run_cli("apply", str(saved), "--store", target, *cache, env=env)
    assert again.code == 1, again.output
    assert "is stale: the store changed since it was planned" in again.stderr
    assert snapshot(prefect_server) == before
    assert runs.read_text().splitlines() == ["ran"]
