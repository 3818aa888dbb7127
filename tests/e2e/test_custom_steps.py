"""Build and push steps from the user's own installed package, even one named `prefect_*`:
only the exact names Prefect ships are Prefect's (issue 17). The package is a real wheel,
installed with pip into a directory that only the `reconcile` subprocess has on its
PYTHONPATH."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.model.resources import Kind
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import project
from tests.infra.wheels import pip_install, write_wheel

pytestmark = pytest.mark.e2e

STEPS_MODULE = """\
def make_tag(base: str) -> dict:
    print(f"tagging {base}")
    return {"tag": f"{base}-built"}


def publish(tag: str) -> dict:
    return {"where": f"registry.invalid/app:{tag}"}


def push_docker_image(image_name: str) -> dict:
    return {"image": f"{image_name}:pushed"}
"""

PREFECT_FILE = """\
build:
  - prefect_acme.steps.make_tag:
      id: make-tag
      base: {base}
push:
  - prefect_acme.steps.publish:
      id: publish
      tag: "{{{{ make-tag.tag }}}}"
deployments:
  - name: nightly
    version: "{{{{ make-tag.tag }}}}"
    description: "{{{{ publish.where }}}}"
    entrypoint: flows/etl.py:ingest
    work_pool: {{name: etl}}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding the installed package `prefect_acme` (not on this process's path)."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    write_wheel(
        wheels,
        "prefect-acme",
        {"prefect_acme/__init__.py": "", "prefect_acme/steps.py": STEPS_MODULE},
    )
    pip_install(wheels, target, "prefect-acme")
    assert (target / "prefect_acme" / "steps.py").is_file()
    return target


def _deployment(store_url: str) -> dict[str, object]:
    store = open_store(store_url, readonly=True)
    try:
        resource = store.get(Kind.DEPLOYMENT, "ingest/nightly")
    finally:
        store.close()
    assert resource is not None
    return dict(resource.spec)


def test_a_prefect_named_package_of_the_user_runs_as_build_and_push_steps(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    site: Path,
) -> None:
    repo = make_repo(project({"prefect.yaml": PREFECT_FILE.format(base="v1")}))
    installed = {"PYTHONPATH": str(site)}

    planned = run_cli("--dry-run", str(repo.path), "--store", store_url, env=installed)
    assert planned.code == 0, planned.output
    assert "would run          make-tag (make_tag) in prefect.yaml" in planned.stdout
    assert "would run          publish (publish) in prefect.yaml" in planned.stdout
    assert "(known after build)" in planned.stdout

    applied = run_cli(str(repo.path), "--store", store_url, env=installed)
    assert applied.code == 0, applied.output
    assert "[make-tag] tagging v1" in applied.stderr
    spec = _deployment(store_url)
    assert spec["version"] == "v1-built"
    assert spec["description"] == "registry.invalid/app:v1-built"


def test_a_build_step_whose_package_is_not_installed_here_is_a_plan_error(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    site: Path,
    dump_store: Callable[[str], dict[str, list[tuple[object, ...]]]],
) -> None:
    repo = make_repo(project({"prefect.yaml": PREFECT_FILE.format(base="v1")}))
    assert run_cli(str(repo.path), "--store", store_url, env={"PYTHONPATH": str(site)}).code == 0
    before = dump_store(store_url)

    repo.commit({"prefect.yaml": PREFECT_FILE.format(base="v2")})
    refused = run_cli(str(repo.path), "--store", store_url)  # without the package
    assert refused.code == 1
    assert (
        'prefect.yaml:2:5: error: build step "prefect_acme.steps.make_tag" cannot be imported: '
        'its package "prefect_acme" is not installed where reconcile runs' in refused.stderr
    )
    assert 'install "prefect_acme" into the Python running reconcile' in refused.stderr
    assert "Traceback" not in refused.output
    assert dump_store(store_url) == before
    assert _deployment(store_url)["version"] == "v1-built"


def test_a_misspelt_prefect_step_is_still_refused_even_with_prefect_installed(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    text = PREFECT_FILE.format(base="v1").replace(
        "prefect_acme.steps.make_tag", "prefect.deployments.steps.run_shel_script"
    )
    repo = make_repo(project({"prefect.yaml": text}))
    refused = run_cli("--dry-run", str(repo.path), "--store", store_url)
    assert refused.code == 1
    assert 'unknown step "prefect.deployments.steps.run_shel_script": Prefect has no such step' in (
        refused.stderr
    )
    assert 'did you mean "prefect.deployments.steps.run_shell_script"?' in refused.stderr


def test_a_users_step_named_like_a_docker_step_reruns_when_the_commit_moves(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    site: Path,
) -> None:
    """Only Prefect's own Docker steps skip the commit in their inputs; the user's
    `push_docker_image` may read anything in the repository, like a shell step."""
    text = """\
push:
  - prefect_acme.steps.push_docker_image:
      id: push
      image_name: app
deployments:
  - name: nightly
    description: "{{ push.image }}"
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
"""
    repo = make_repo(project({"prefect.yaml": text}))
    installed = {"PYTHONPATH": str(site)}
    assert run_cli(str(repo.path), "--store", store_url, env=installed).code == 0
    assert _deployment(store_url)["description"] == "app:pushed"
    again = run_cli("--dry-run", str(repo.path), "--store", store_url, env=installed)
    assert "unchanged, skipped push (push_docker_image)" in again.stdout
    repo.commit({"README.md": "a change of the repository only\n"})
    moved = run_cli("--dry-run", str(repo.path), "--store", store_url, env=installed)
    assert moved.code == 0, moved.output
    assert "would run          push (push_docker_image)" in moved.stdout
