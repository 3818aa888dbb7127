"""Work done in forked children (reconciler/core/parallel.py) gives what doing it here gives.

For reading and building prefect.yaml files: the same resources, diagnostics in the same order,
the same build plans and secrets. Who does which piece depends on timing, so the tests that need
a child to do the work make this process wait for it (`child_does_the_rest`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.core import parallel
from reconciler.desired import build as build_module
from reconciler.desired.build import BuildOptions, BuildResult, RepoInput, build_desired
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.plan import render_json as json_module
from reconciler.plan import render_text as text_module
from reconciler.plan.model import Action, Change, Plan, diff_values
from reconciler.plan.render_json import render_json
from reconciler.plan.render_text import render_text
from reconciler.sources.base import MemorySnapshot

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
    # Earlier tests of the session may leave server threads running (the git HTTP server);
    # map_forked would then not fork at all. These tests' children touch no lock a thread
    # could hold, so they may fork anyway.
    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)


def child_does_the_rest(
    work: Callable[..., Any],
    pieces: int,
    markers: Path,
    name: Callable[..., str] = lambda *args: "piece",
) -> Callable[..., Any]:
    """`work`, except that this process, once it has taken a piece, waits until children have
    done all the others; each leaves a file in `markers`, its name starting with `name(*args)`.
    (Which piece this process takes first is a race; that it does at most one is not.)"""
    parent = os.getpid()

    def wrapped(*args: Any) -> Any:
        if os.getpid() == parent:
            deadline = time.monotonic() + 20
            while len(os.listdir(markers)) < pieces - 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            return work(*args)
        result = work(*args)
        tempfile.mkstemp(dir=markers, prefix=name(*args) + ".")
        return result

    return wrapped


def test_map_forked_returns_results_in_order_whoever_did_the_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forking(monkeypatch, 2)
    work = child_does_the_rest(lambda n: (n * n, os.getpid()), 20, tmp_path)
    results = parallel.map_forked(
        list(range(20)), work, size=lambda n: n, for_transfer=lambda r: (r[0], -r[1])
    )
    assert [square for square, _ in results] == [n * n for n in range(20)]
    # at most one piece was done here; the others came back from the child, through
    # `for_transfer`
    assert sum(pid == os.getpid() for _, pid in results) <= 1
    assert sum(pid < 0 and -pid != os.getpid() for _, pid in results) >= 19


def test_a_child_that_gets_no_time_leaves_the_work_to_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forking(monkeypatch, 2)
    parent = os.getpid()

    def work(n: int) -> int:
        if os.getpid() != parent:
            time.sleep(1)  # as if other programs kept the other core busy
        return os.getpid()

    started = time.monotonic()
    done_by = parallel.map_forked(list(range(40)), work, size=lambda n: 1)
    assert done_by.count(parent) >= 39
    assert time.monotonic() - started < 3


def test_a_failing_child_has_its_pieces_done_here(monkeypatch: pytest.MonkeyPatch) -> None:
    forking(monkeypatch, 2)
    parent = os.getpid()

    def work(n: int) -> int:
        if os.getpid() != parent:
            raise RuntimeError("the child breaks")
        return n + 1

    assert parallel.map_forked(list(range(30)), work, size=lambda n: 1) == list(range(1, 31))


def test_a_failing_piece_fails_as_the_plain_loop_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which process meets which failure first is a race; the error is always the first one
    in order, and no child is left behind."""
    forking(monkeypatch, 2)
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)

    def work(n: int) -> int:
        if n in (3, 17):
            raise ValueError(f"piece {n} is broken")
        return n

    for _ in range(5):
        with pytest.raises(ValueError, match="piece 3 is broken"):
            parallel.map_forked(list(range(20)), work, size=lambda n: n)
    assert len(forked) == 5
    for pid in forked:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already waited for


def test_forked_work_equals_work_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    here, here_resources = build(), resources()
    forking(monkeypatch, 3)
    monkeypatch.setattr(
        build_module._Builder,
        "_read_and_build",
        child_does_the_rest(
            build_module._Builder._read_and_build,
            10,  # files
            tmp_path,
            name=lambda builder, job: job.path.replace("/", "_"),
        ),
    )
    forked = build()
    children_did = {marker.name.split(".")[0] for marker in tmp_path.iterdir()}
    assert len(children_did) >= 9  # of 10 files
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
    # a plan built in a child came back with its document's values left behind
    assert [p.document.data is None for p in here.build_plans if p.document] == [False]
    from_child = "steps_prefect" in children_did
    assert [p.document.data is None for p in forked.build_plans if p.document] == [from_child]


def test_a_refused_fork_leaves_the_work_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    here = summary(build())
    forking(monkeypatch, 2)

    def no_fork() -> int:
        raise OSError("fork refused")

    monkeypatch.setattr(os, "fork", no_fork)
    assert summary(build()) == here


def test_a_large_plan_rendered_in_children_is_the_same_text_and_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "hunter2-s3cr3t"
    owner = Owner("github.com/acme/flows", "prefect.yaml")

    def deployment(n: int, tags: list[str]) -> Resource:
        spec = {"parameters": {"n": n, "token": secret}, "tags": tags}
        return Resource.of(Kind.DEPLOYMENT, f"f/d{n:03d}", spec, owner)

    changes = []
    for n in range(250):
        new, old = deployment(n, [f"t{n % 7}"]), deployment(n, [])
        if n % 3:
            changes.append(Change(Action.CREATE, new.kind, new.key, new, None))
        else:
            diffs = tuple(diff_values(old.spec, new.spec))
            changes.append(Change(Action.UPDATE, new.kind, new.key, new, old, diffs))
    plan = Plan(changes=tuple(changes), sources=(), diagnostics=(), observed_revision=3)

    def hide(text: str) -> str:
        return text.replace(secret, "REDACTED")

    here = [render_text(plan, color=color, mask=hide) for color in (False, True)]
    here_json = render_json(plan, mask=hide)
    forking(monkeypatch, 3)
    monkeypatch.setattr(
        text_module, "change_lines", child_does_the_rest(text_module.change_lines, 10, tmp_path)
    )
    forked = render_text(plan, color=False, mask=hide)  # 10 pieces of 25: 9 in children
    assert len(os.listdir(tmp_path)) >= 9
    assert [forked, render_text(plan, color=True, mask=hide)] == here
    json_markers = tmp_path / "json"
    json_markers.mkdir()
    monkeypatch.setattr(
        json_module,
        "_changes_text",
        child_does_the_rest(json_module._changes_text, 10, json_markers),
    )
    assert render_json(plan, mask=hide) == here_json
    assert len(os.listdir(json_markers)) >= 9
    assert json.loads(here_json)["changes"][0]["key"] == "f/d000"
    assert here[0].count("\n\n  # deployment") == 249  # blocks apart, also where pieces meet
    assert secret not in here[0] and "REDACTED" in here[0]
