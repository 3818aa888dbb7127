"""`--server URL` on the CLI: the read commands, `deployment run` and `flow-run cancel`
through the web API (a real server on 127.0.0.1, the CLI as a subprocess), with the token
from RECONCILER_TOKEN, and their refusals as the usual error and hint."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from reconciler.model.runs import NewRun
from reconciler.web.auth import Tokens
from tests.conftest import CliResult
from tests.web.conftest import ADMIN, READ, WebProject
from tests.web.serving import serve_web

pytestmark = pytest.mark.e2e
Cli = Callable[..., CliResult]


def _refused(result: CliResult, *words: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output and "hint:" in result.stderr, result.output
    for word in words:
        assert word in result.stderr, result.stderr


def test_read_commands_and_actions_through_the_api(web_project: WebProject, run_cli: Cli) -> None:
    store = web_project.store()
    try:
        run = store.create_run(NewRun("hello/hello", "hello", "local", "default", time.time()))
        store.append_run_logs(run.id, [("stdout", "a line from the run")])
        store.heartbeat("local", "worker-a", 10.0)
    finally:
        store.close()
    with serve_web(web_project.store_url, Tokens(read=READ, admin=ADMIN)) as server:
        url = server.url
        read = {"RECONCILER_TOKEN": READ}
        listed = run_cli("deployment", "ls", "--server", url, "-o", "json", env=read)
        deployments = json.loads(listed.stdout)
        assert [d["key"] for d in deployments] == ["hello/hello", "typed/typed"]
        assert deployments[0]["last_run"]["id"] == run.id, "the run just made is the last one"
        assert deployments[1]["last_run"] is None
        table = run_cli("deployment", "ls", "--server", url, env=read)
        assert "hello/hello" in table.stdout and "local/default" in table.stdout
        assert "LAST RUN" in table.stdout.upper() and "SCHEDULED " in table.stdout
        inspected = json.loads(
            run_cli("deployment", "inspect", "typed/typed", "--server", url, env=read).stdout
        )
        assert inspected["spec"]["parameters"] == {"count": 1}
        assert "Synced" in run_cli("status", "--server", url, env=read).stdout
        assert "1 " in run_cli("history", "--server", url, env=read).stdout
        runs = json.loads(run_cli("flow-run", "ls", "--server", url, "-o", "json", env=read).stdout)
        assert [r["id"] for r in runs] == [run.id]
        deployment_runs = run_cli("deployment", "runs", "hello/hello", "--server", url, env=read)
        assert run.id in deployment_runs.stdout
        shown = run_cli("flow-run", "inspect", run.id[:8], "--server", url, "-o", "table", env=read)
        assert run.name in shown.stdout
        by_name = run_cli("flow-run", "inspect", run.name, "--server", url, "-o", "json", env=read)
        assert json.loads(by_name.stdout)["id"] == run.id, "a run is found by its name too"
        logs = run_cli("flow-run", "logs", run.id, "--server", url, env=read)
        assert logs.stdout.rstrip("\n").split(maxsplit=2)[1:] == ["stdout", "a line from the run"]
        assert "worker-a" in run_cli("worker", "ls", "--server", url, env=read).stdout
        store_path = web_project.store_url
        for command in (
            ("work-pool", "ls", "-o", "json"),
            ("work-pool", "ls"),
            ("work-queue", "ls"),
            ("work-queue", "ls", "--pool", "manual", "-o", "json"),
            ("variable", "ls", "-o", "json"),
            ("flow-run", "ls"),
            ("worker", "ls", "-o", "json"),
            ("task-run", "ls", "--flow-run", run.id),
            ("event", "ls"),
            ("event", "ls", "-o", "json", "--event", "prefect.flow-run.*", "--limit", "1"),
            ("event", "ls", "--resource", f"prefect.flow-run.{run.id}"),
        ):
            direct = run_cli(*command, "--store", store_path)
            through = run_cli(*command, "--server", url, env=read)
            assert direct.code == through.code == 0, through.output
            assert through.stdout == direct.stdout, command
        events = json.loads(run_cli("event", "ls", "-o", "json", "--server", url, env=read).stdout)
        assert f"prefect.flow-run.{run.id}" in [
            e["resource"]["prefect.resource.id"] for e in events
        ]

        before = web_project.dump()
        _refused(
            run_cli("deployment", "run", "hello/hello", "--server", url, env=read),
            "read-only token cannot act",
        )
        _refused(run_cli("deployment", "ls", "--server", url), "needs a token", "RECONCILER_TOKEN")
        admin = {"RECONCILER_TOKEN": ADMIN}
        _refused(
            run_cli(
                "deployment", "run", "typed/typed", "--param", "count=x", "--server", url, env=admin
            ),
            "cannot run typed/typed",
        )
        assert web_project.dump() == before
        made = run_cli(
            "deployment", "run", "hello/hello", "--param", "name=cli", "--server", url, env=admin
        )
        assert made.code == 0 and "Created flow run" in made.stdout, made.output
        new_id = made.stdout.split("(", 1)[1].split(")", 1)[0]
        cancelled = run_cli("flow-run", "cancel", new_id, "--server", url, env=admin)
        assert cancelled.stdout.strip() == f"Flow run {new_id} is CANCELLED."
        _refused(run_cli("flow-run", "cancel", new_id, "--server", url, env=admin), "already ended")


def test_server_option_refusals(web_project: WebProject, run_cli: Cli) -> None:
    _refused(
        run_cli(
            "deployment", "ls", "--server", "http://127.0.0.1:9", "--store", web_project.store_url
        ),
        "exclude each other",
    )
    _refused(run_cli("deployment", "ls", "--server", "127.0.0.1:8420"), "not an http(s) URL")
    _refused(run_cli("status", "--server", "http://127.0.0.1:9"), "cannot reach")
