"""A custom pull step from a package only the worker's Python has (issue 17): the plan accepts
it with a warning and shows the arguments that take its outputs as known at run time; the worker
imports it, and its outputs feed the `git_clone` after it; without the package the run crashes
naming the module and the Python; with `requires:` the worker installs the package first, here
from a directory of wheels, offline, into a directory of the test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from reconciler.model.runs import FlowRun, RunState
from reconciler.store import open_store
from tests.conftest import GIT_ENV, CliResult, GitRepo
from tests.e2e.helpers import apply_in_process
from tests.infra.wheels import offline_pip_env, pip_install, write_wheel

STEPS_MODULE = """\
def get_source(repository: str, team: str) -> dict:
    print(f"choosing the source of {team}")
    return {"url": repository, "branch": f"{team}-release"}
"""

FLOWS = 'def hello() -> None:\n    print("code of {branch}")\n'

POOLS = "work_pools:\n  - {name: local, type: process}\n"

PULL = """\
    pull:
      - acme_source.steps.get_source:
          id: get-source
          repository: {repository}
          team: etl{requires}
      - prefect.deployments.steps.git_clone:
          repository: "{{{{ get-source.url }}}}"
          branch: "{{{{ get-source.branch }}}}"
"""


def prefect_file(repository: Path) -> str:
    deployments = []
    for name, requires in (("from-worker", ""), ("installs", "\n          requires: acme-source")):
        deployments.append(
            f"  - name: {name}\n    entrypoint: flows/flows.py:hello\n"
            f"    work_pool: {{name: local}}\n"
            + PULL.format(repository=repository, requires=requires)
        )
    return "deployments:\n" + "".join(deployments)


@pytest.fixture
def repo(make_repo: Callable[..., GitRepo]) -> GitRepo:
    """The flows on `main`, other code on `etl-release` (the branch the custom step picks)."""
    made = make_repo({"work-pools.yaml": POOLS, "flows/flows.py": FLOWS.format(branch="main")})
    made.commit({"prefect.yaml": prefect_file(made.path)})
    made.git("checkout", "-q", "-b", "etl-release")
    made.commit({"flows/flows.py": FLOWS.format(branch="etl-release")})
    made.git("checkout", "-q", "main")
    return made


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    files = {"acme_source/__init__.py": "", "acme_source/steps.py": STEPS_MODULE}
    write_wheel(directory, "acme-source", files)
    return directory


class Worker:
    def __init__(self, store_url: str, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
        self.store_url, self.tmp_path, self.cli = store_url, tmp_path, cli

    def run(self, deployment: str, env: Mapping[str, str]) -> FlowRun:
        """A run of `deployment`, executed by a worker started with `env` added to ours."""
        made = self.cli("deployment", "run", deployment, "--store", self.store_url)
        assert made.code == 0, made.output
        run_id = made.stdout.split("(", 1)[1].split(")", 1)[0]
        log = self.tmp_path / f"worker-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "reconciler", "worker", "start", "--pool", "local"]
        with log.open("w") as out:
            done = subprocess.run(
                [*command, "--store", self.store_url, "--run-once"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **GIT_ENV, **env},
                cwd=self.tmp_path,
                timeout=180,
            )
        assert done.returncode == 0, log.read_text()
        store = open_store(self.store_url, readonly=True)
        try:
            run = store.get_run(run_id)
            self.logs = [line.line for line in store.run_logs(run_id)]
        finally:
            store.close()
        assert run is not None
        return run


@pytest.fixture
def worker(
    repo: GitRepo, store_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> Worker:
    apply_in_process(store_url, repo)
    return Worker(store_url, tmp_path, run_cli)


def test_the_plan_accepts_a_pull_step_it_cannot_import_and_shows_its_outputs_as_run_time(
    repo: GitRepo, store_url: str, run_cli: Callable[..., CliResult]
) -> None:
    with pytest.raises(ImportError):
        __import__("acme_source")  # the planning process does not have the package
    planned = run_cli("--dry-run", str(repo.path), "--store", store_url)
    assert planned.code == 0, planned.output
    assert (
        'prefect.yaml:6:9: warning: pull step "acme_source.steps.get_source" is imported on the '
        'worker: its package "acme_source" is not installed where this plan runs (the worker '
        "must have it)" in planned.stderr
    )
    assert "(the worker installs acme-source first)" in planned.stderr
    assert '"repository": (known at run time: {{ get-source.url }})\n' in planned.stdout
    assert '"branch": (known at run time: {{ get-source.branch }}),' in planned.stdout
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in planned.stdout
    assert "has no value" not in planned.stderr  # the placeholders are kept for the worker


def test_the_worker_imports_the_step_and_its_outputs_feed_the_clone(
    worker: Worker, wheels: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    pip_install(wheels, site, "acme-source")
    run = worker.run("hello/from-worker", {"PYTHONPATH": str(site)})
    assert run.state is RunState.COMPLETED, run.state_message
    assert "code of etl-release" in worker.logs  # the branch the custom step chose
    assert "[get-source] choosing the source of etl" in worker.logs


def test_without_the_package_the_run_crashes_naming_the_module_and_the_python(
    worker: Worker, wheels: Path, tmp_path: Path
) -> None:
    env = offline_pip_env(wheels, tmp_path / "unused")
    run = worker.run("hello/from-worker", env)
    assert run.state is RunState.CRASHED
    message = run.state_message or ""
    # named where the step was written (stored with the deployment, not parsed again)
    assert message.startswith("pull steps failed: ")
    assert "/prefect.yaml:" in message.split('step "', 1)[0]
    assert (
        'cannot import the step "acme_source.steps.get_source": module "acme_source.steps" '
        f"cannot be imported by {sys.executable} (Python {sys.version.split()[0]}): "
        "No module named 'acme_source'" in message
    )
    assert "code of" not in "\n".join(worker.logs)  # nothing was cloned, nothing ran
    assert not (tmp_path / "unused").exists()  # and nothing was installed


def test_requires_are_installed_by_the_worker_before_the_step_runs(
    worker: Worker, wheels: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    env = {**offline_pip_env(wheels, site), "PYTHONPATH": str(site)}
    run = worker.run("hello/installs", env)
    assert run.state is RunState.COMPLETED, run.state_message
    assert (site / "acme_source" / "steps.py").is_file()
    shown = "\n".join(worker.logs)
    assert "installing acme-source" in shown
    assert "Successfully installed acme-source-0.1" in shown
    assert "code of etl-release" in worker.logs
