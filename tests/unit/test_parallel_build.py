"""Reading and building prefect.yaml files in forked children gives exactly what doing it here
gives: the same resources, diagnostics in the same order, the same build plans and secrets."""

from __future__ import annotations

import os
from typing import Any

import pytest

from reconciler import parallel
from reconciler.model import Kind
from reconciler.sources.base import MemorySnapshot
from reconciler.spec.build import BuildOptions, BuildResult, RepoInput, build_desired
from reconciler.store.base import ObservedState

FLOWS = """\
from prefect import flow


@flow
def f(x: int = 0):
    pass
"""
POOLS = "work_pools:\n  - {name: p, type: process}\n"
GOOD = """\
deployments:
  - name: d{n}
    entrypoint: flows.py:f
    tags: [a, b]
    parameters: {{x: {n}}}
    work_pool: {{name: p, job_variables: {{env: {{TOKEN: "{{{{ $API_TOKEN }}}}"}}}}}}
"""
WARNED = "deployments:\n  - name: w\n    entrypiont: flows.py:f\n    work_pool: {name: p}\n"
BROKEN = "deployments: [\n"
# d1 again, from another file: refused, pointing at both places
DUPLICATE = "deployments:\n  - {name: d1, entrypoint: ../p1/flows.py:f, work_pool: {name: p}}\n"
WITH_BUILD = """\
build:
  - prefect_docker.deployments.steps.build_docker_image:
      id: image
      image_name: registry.local/f
deployments:
  - name: built
    entrypoint: flows.py:f
    work_pool: {name: p, job_variables: {image: "{{ image.image }}"}}
"""


def repository(extra: dict[str, str]) -> MemorySnapshot:
    files = {"work-pools.yaml": POOLS, **extra}
    for n in range(6):
        files[f"p{n}/prefect.yaml"] = GOOD.format(n=n)
        files[f"p{n}/flows.py"] = FLOWS
    files["p0/prefect.yaml"] += "# the largest file, so this process takes it\n" + "#" * 400
    for name in ("w", "b", "dup", "steps"):
        files[f"{name}/flows.py"] = FLOWS
    return MemorySnapshot(files)


def build() -> BuildResult:
    first = repository(
        {
            "w/prefect.yaml": WARNED,
            "b/prefect.yaml": BROKEN,
            "steps/prefect.yaml": WITH_BUILD,
        }
    )
    second = MemorySnapshot(
        {"dup/prefect.yaml": DUPLICATE, "dup/flows.py": FLOWS, "p1/flows.py": FLOWS},
        repo_id="other",
    )
    options = BuildOptions(environ={"API_TOKEN": "s3cr3t-value"})
    return build_desired([RepoInput(first), RepoInput(second)], ObservedState(0), options)


def summary(result: BuildResult) -> dict[str, Any]:
    return {
        "diagnostics": [d.render() for d in result.diagnostics],
        "secrets": result.secrets,
        "plans": [
            (plan.deployment, plan.owner, plan.draft, plan.steps, plan.base_dir)
            for plan in result.build_plans
        ],
        "plan locations": [
            str(plan.document.location(plan.steps[0].path))
            for plan in result.build_plans
            if plan.document is not None
        ],
    }


def resources() -> list[Any]:
    """The resources of a repository without errors (one with errors has none)."""
    snapshot = repository({"steps/prefect.yaml": WITH_BUILD})
    options = BuildOptions(environ={"API_TOKEN": "s3cr3t-value"})
    result = build_desired([RepoInput(snapshot)], ObservedState(0), options)
    assert result.desired is not None
    return [(r.kind, r.key, r.spec_json, r.owner, r.hash) for r in result.desired.resources]


def forking(monkeypatch: pytest.MonkeyPatch, cores: int) -> None:
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)


def test_forked_work_equals_work_here(monkeypatch: pytest.MonkeyPatch) -> None:
    here, here_resources = build(), resources()
    forking(monkeypatch, 3)
    forked = build()
    assert summary(forked) == summary(here)
    assert resources() == here_resources
    assert sum(r[0] is Kind.DEPLOYMENT for r in here_resources) == 7
    rendered = summary(forked)["diagnostics"]
    assert any("entrypiont" in line for line in rendered)
    assert any("not valid YAML" in line for line in rendered)
    duplicate = next(line for line in rendered if "declared twice" in line)
    assert duplicate.startswith("other/dup/prefect.yaml:2:12:")  # found again from its text
    assert "at memory/p1/prefect.yaml:2:11" in duplicate
    assert forked.secrets == ["s3cr3t-value"] * 6
    assert summary(forked)["plan locations"] == ["memory/steps/prefect.yaml:2:5"]
    # that plan was built in a child: its document came back without its values
    assert [p.document.data is None for p in here.build_plans if p.document] == [False]
    assert [p.document.data is None for p in forked.build_plans if p.document] == [True]


def test_a_failed_fork_falls_back_to_working_here(monkeypatch: pytest.MonkeyPatch) -> None:
    here = summary(build())
    forking(monkeypatch, 2)

    def no_fork() -> int:
        raise OSError("fork refused")

    monkeypatch.setattr(os, "fork", no_fork)
    assert summary(build()) == here
