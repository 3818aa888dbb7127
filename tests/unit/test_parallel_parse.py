"""Parsing in forked children gives exactly what parsing here gives."""

from __future__ import annotations

import os

import pytest

from reconciler.spec import parallel
from reconciler.spec.parallel import ParseJob, parse_all

GOOD = """\
deployments:
  - name: d{n}
    entrypoint: flows.py:f
    tags: [a, b]
    parameters: {{x: {n}}}
    work_pool: {{name: p}}
"""
WARNED = "deployments:\n  - name: w\n    entrypiont: flows.py:f\n"
BROKEN = "deployments: [\n"


def jobs() -> list[ParseJob]:
    made = [
        ParseJob(GOOD.format(n=n).encode(), f"p{n}/prefect.yaml", f"p{n}/prefect.yaml")
        for n in range(6)
    ]
    made.insert(2, ParseJob(WARNED.encode(), "w/prefect.yaml", "w/prefect.yaml"))
    made.insert(4, ParseJob(BROKEN.encode(), "b/prefect.yaml", "b/prefect.yaml"))
    return made


def summary(results: list[parallel.Parsed]) -> list[object]:
    found: list[object] = []
    for prefect_file, diagnostics in results:
        rendered = [d.render() for d in diagnostics]
        if prefect_file is None:
            found.append((None, rendered))
            continue
        configs = [d.config for d in prefect_file.deployments]
        location = str(prefect_file.document.location(("deployments", 0, "name")))
        found.append((prefect_file.path, configs, location, rendered))
    return found


def test_parallel_parse_equals_sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    sequential = summary(parse_all(jobs(), strict=False))
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    forked = parse_all(jobs(), strict=False)
    assert summary(forked) == sequential
    # a document that came back from a child has no node graph, yet positions still resolve
    assert forked[1][0] is not None
    assert str(forked[1][0].document.location(("deployments", 0, "tags", 1))).endswith(":4:15")
    messages = [d.message for _, diagnostics in forked for d in diagnostics]
    assert any("entrypiont" in m for m in messages)
    assert any("not valid YAML" in m for m in messages)


def test_a_failed_fork_falls_back_to_parsing_here(monkeypatch: pytest.MonkeyPatch) -> None:
    sequential = summary(parse_all(jobs(), strict=False))
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)

    def no_fork() -> int:
        raise OSError("fork refused")

    monkeypatch.setattr(os, "fork", no_fork)
    assert summary(parse_all(jobs(), strict=False)) == sequential
