"""Issue 15, one output convention: `-o json` on read commands (and `deployment run`,
`inspect`), ISO 8601 UTC times (no epoch seconds), runs found by id, id prefix or name, unique
run names, `flow-run ls` past runs first then the next few scheduled, LAST RUN and NEXT RUN in
`deployment ls`, logs on stdout with time and stream, `status` never cut in JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.store import open_store
from reconciler.worker.create_run import create_run
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import Dump, apply_in_process, assert_refused, project

pytestmark = pytest.mark.e2e

RunCli = Callable[..., CliResult]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


@pytest.fixture
def applied(make_repo: Callable[..., GitRepo], store_url: str) -> str:
    """A store with `ingest/nightly` applied."""
    apply_in_process(store_url, make_repo(project()))
    return store_url


def _runs(store_url: str, offsets: list[float]) -> list[str]:
    """Runs of ingest/nightly scheduled at now + each offset (seconds); their ids."""
    store = open_store(store_url)
    try:
        now = time.time()
        return [
            create_run(store, "ingest/nightly", scheduled_time=now + offset).id
            for offset in offsets
        ]
    finally:
        store.close()


def _no_epoch_floats(value: object) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith(("_time", "_at")) and item is not None:
                assert isinstance(item, str) and ISO.match(item), (key, item)
            _no_epoch_floats(item)
    elif isinstance(value, list):
        for item in value:
            _no_epoch_floats(item)


def test_deployment_run_prints_json_with_iso_times_and_unique_names(
    run_cli: RunCli, applied: str
) -> None:
    names = set()
    for _ in range(3):
        result = run_cli("deployment", "run", "ingest/nightly", "--store", applied, "-o", "json")
        assert result.code == 0, result.output
        made = json.loads(result.stdout)
        _no_epoch_floats(made)
        names.add(made["name"])
        assert re.match(r"^[a-z]+-[a-z]+-[0-9a-f]{6}$", made["name"]), made["name"]
    assert len(names) == 3


def test_flow_run_inspect_by_id_prefix_or_name_accepts_o_json(
    run_cli: RunCli, applied: str
) -> None:
    (run_id,) = _runs(applied, [0])
    listed = json.loads(run_cli("flow-run", "ls", "--store", applied, "-o", "json").stdout)
    name = listed[0]["name"]
    for given in (run_id, run_id[:8], name):
        result = run_cli("flow-run", "inspect", given, "--store", applied, "-o", "json")
        assert result.code == 0, result.output
        details = json.loads(result.stdout)
        assert details["id"] == run_id
        _no_epoch_floats(details)


def test_an_unknown_run_is_refused_and_the_store_does_not_change(
    run_cli: RunCli, applied: str, dump_store: Dump
) -> None:
    before = dump_store(applied)
    result = run_cli("flow-run", "inspect", "no-such-run", "--store", applied)
    assert_refused(result, "no flow run 'no-such-run' (by id, id prefix or name)")
    assert dump_store(applied) == before


def test_deployment_inspect_takes_o_json_and_a_bare_name(run_cli: RunCli, applied: str) -> None:
    for key in ("ingest/nightly", "nightly"):
        result = run_cli("deployment", "inspect", key, "--store", applied, "-o", "json")
        assert result.code == 0, result.output
        assert json.loads(result.stdout)["key"] == "ingest/nightly"
    pool = run_cli("work-pool", "inspect", "etl", "--store", applied, "-o", "json")
    assert pool.code == 0 and json.loads(pool.stdout)["key"] == "etl", pool.output


def test_flow_run_ls_shows_past_runs_first_then_the_next_five(
    run_cli: RunCli, applied: str
) -> None:
    past = _runs(applied, [-3600, -1800, -600])
    future = _runs(applied, [600 * i for i in range(1, 9)])
    result = run_cli("flow-run", "ls", "--store", applied, "-o", "json")
    assert result.code == 0, result.output
    ids = [run["id"] for run in json.loads(result.stdout)]
    assert ids == [*reversed(past), *future[:5]]
    assert "--scheduled N or --all" in result.stderr
    table = run_cli("flow-run", "ls", "--store", applied)
    rows = table.stdout.splitlines()[1:]
    assert rows[0].startswith(past[-1]) and len(rows) == 8
    two = json.loads(
        run_cli("flow-run", "ls", "--store", applied, "--scheduled", "2", "-o", "json").stdout
    )
    assert [run["id"] for run in two] == [*reversed(past), *future[:2]]
    every = run_cli("flow-run", "ls", "--store", applied, "--all", "-o", "json")
    assert [run["id"] for run in json.loads(every.stdout)] == [*reversed(past), *future]
    assert "--all" not in every.stderr


def test_deployment_ls_has_last_and_next_run(run_cli: RunCli, applied: str) -> None:
    last, upcoming = _runs(applied, [-60, 3600])
    table = run_cli("deployment", "ls", "--store", applied)
    header = table.stdout.splitlines()[0]
    assert "LAST RUN" in header and "NEXT RUN" in header
    assert "SCHEDULED 20" in table.stdout
    (row,) = json.loads(run_cli("deployment", "ls", "--store", applied, "-o", "json").stdout)
    assert row["last_run"]["id"] == last and row["next_run"]["id"] == upcoming
    _no_epoch_floats(row)


def test_flow_run_logs_go_to_stdout_with_time_and_stream(run_cli: RunCli, applied: str) -> None:
    (run_id,) = _runs(applied, [0])
    store = open_store(applied)
    try:
        store.append_run_logs(run_id, [("stdout", "hello"), ("stderr", "oops"), ("stdout", "bye")])
    finally:
        store.close()
    result = run_cli("flow-run", "logs", run_id, "--store", applied)
    assert result.code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert [line.split(maxsplit=2)[1:] for line in lines] == [
        ["stdout", "hello"],
        ["stderr", "oops"],
        ["stdout", "bye"],
    ]
    assert all(ISO.match(line.split()[0]) for line in lines), lines


def test_status_json_keeps_the_whole_error(run_cli: RunCli, applied: str) -> None:
    error = "git fetch failed: " + "x" * 300 + "\nsecond line"
    store = open_store(applied)
    try:
        store.put_repo_status("flows", {"name": "flows", "state": "Error", "last_error": error})
    finally:
        store.close()
    as_json = run_cli("status", "--store", applied, "-o", "json")
    assert json.loads(as_json.stdout)[0]["last_error"] == error
    text = run_cli("status", "--store", applied)
    assert "flows: last error: git fetch failed: " + "x" * 300 in text.stdout


def test_quiet_plan_prints_the_summary_line_only(
    run_cli: RunCli, make_repo: Callable[..., GitRepo], tmp_path: Path
) -> None:
    repo = make_repo(project())
    result = run_cli("plan", "-q", "--store", f"sqlite:///{tmp_path / 'x.db'}", cwd=repo.path)
    assert result.stdout.splitlines() == ["Plan: 5 to add, 0 to change, 0 to destroy."]
