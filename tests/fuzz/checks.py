"""The properties the fuzz tests check, one function per entry point, shared by the Hypothesis
tests (generated inputs) and by the regression corpus (tests/fuzz/regressions/: every input
that ever failed, replayed by test_regressions.py).

The property is always the same: the entry point gives a result, or a user error that says
what is wrong (with a file position where one applies), and never raises anything else (which
the CLI would print as a traceback). Planning is pure, so it cannot change a store; the CLI and
webhook checks compare the store before and after.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import Mapping
from typing import Any

from reconciler.core.diagnostics import Diagnostic
from reconciler.core.errors import UserError
from reconciler.core.terminal_text import printable
from reconciler.desired.build import BuildOptions, RepoInput, build_desired
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.plan.planner import PlanOptions, make_plan
from reconciler.plan.render_json import render_json
from reconciler.plan.render_text import render_text
from reconciler.prefect_rules import templating as tpl
from reconciler.prefect_rules.schedules import ScheduleError, normalize_schedule
from reconciler.prefect_rules.yamlload import YamlLoadError, load_yaml
from reconciler.scheduling.scheduler import LookAhead, runs_to_create
from reconciler.sources.base import MemorySnapshot
from reconciler.worker.create_run import parse_assignments, parse_json_object
from tests.e2e.helpers import project

# A fixed "now" keeps schedules reproducible; the budget is the scheduler's per-deployment one,
# smaller so that many examples fit in the fuzz tier's time.
NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.UTC).timestamp()
SCHEDULE_BUDGET_SECONDS = 0.5
# A budget overrun is reported when the search next checks the clock: what we allow past it.
SCHEDULE_SLACK_SECONDS = 3.0

ENVIRON = {"REGION": "eu", "MY_SECRET": "s3cr3t-value", "EMPTY": ""}


def strict_json(text: str) -> Any:
    """`json.loads` that refuses NaN and Infinity, as every other JSON reader does."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not JSON: {constant} in output")

    return json.loads(text, parse_constant=refuse)


def assert_user_facing(diagnostic: Diagnostic) -> None:
    """An error a user can act on: it names a file, and prints nothing raw to a terminal."""
    assert diagnostic.location is not None and diagnostic.location.file, diagnostic
    rendered = diagnostic.render()
    assert "Traceback" not in rendered, rendered
    assert printable(rendered, keep_newlines=True) == rendered, rendered


def check_config(
    files: Mapping[str, str | bytes],
    symlinks: Mapping[str, str] | None = None,
    environ: Mapping[str, str] = ENVIRON,
) -> None:
    """Plan a repository holding the valid project overlaid with `files`: errors with a
    position, or a plan that every renderer prints (the JSON one as strict JSON)."""
    overlay = {**project(), **files}
    for link in symlinks or {}:
        overlay.pop(link, None)
    snapshot = MemorySnapshot(overlay, symlinks=symlinks)
    built = build_desired(
        [RepoInput(snapshot)], ObservedState(0), BuildOptions(environ=dict(environ))
    )
    for diagnostic in built.diagnostics:
        assert_user_facing(diagnostic)
    if built.desired is None or built.errors:
        assert built.errors, "no desired state and no error saying why"
        return
    plan = make_plan(built.desired, ObservedState(0), PlanOptions())
    strict_json(render_json(plan))
    render_text(plan, color=False)


def check_yaml(content: bytes) -> None:
    """The loader alone: a document, or one positioned error."""
    try:
        document = load_yaml(content, "prefect.yaml")
    except YamlLoadError as exc:
        assert_user_facing(exc.diagnostic)
        return
    for diagnostic in document.diagnostics:
        assert_user_facing(diagnostic)


def check_schedule(raw: Any) -> None:
    """A schedule entry: refused with a message naming the key, or normalised; a normalised
    one then gets its fire times within the scheduler's per-deployment budget, or is reported
    as too slow for it: never as a schedule that "could not be computed"."""
    try:
        schedule = normalize_schedule(raw)
    except ScheduleError as exc:
        assert exc.message and "Traceback" not in exc.message
        return
    spec = {
        "name": "fuzz",
        "flow_name": "ingest",
        "entrypoint": "flows.py:ingest",
        "work_pool_name": "etl",
        "work_queue_name": "default",
        "schedules": [schedule],
    }
    deployment = Resource.of(Kind.DEPLOYMENT, "ingest/fuzz", spec, Owner("memory", "x"))
    started = time.monotonic()
    wanted = runs_to_create([deployment], {}, NOW, LookAhead(), SCHEDULE_BUDGET_SECONDS)
    took = time.monotonic() - started
    assert took < SCHEDULE_BUDGET_SECONDS + SCHEDULE_SLACK_SECONDS, (raw, took)
    for message in wanted.errors.values():
        assert "per scheduler tick" in message, (raw, message)
    for run in wanted.runs:
        assert run.scheduled_time > NOW - 1, (raw, run)


def check_template(template: Any, values: Mapping[str, Any]) -> None:
    """Placeholders substituted from values, environment, variables and blocks: a value, or a
    TemplateError that says which placeholder and where."""
    try:
        tpl.find_placeholders(template)
        tpl.references(template)
        tpl.apply_values(template, values, environ=ENVIRON)
        tpl.apply_values(template, values, environ=ENVIRON, remove_notset=False)
        tpl.resolve_variables(template, {"region": "eu", "nested": {"a": [1, 2]}})
        tpl.resolve_blocks(template, lambda slug, name: None)
    except tpl.TemplateError as exc:
        assert str(exc) and "Traceback" not in str(exc)


def check_run_parameters(params: list[str], params_json: str | None) -> None:
    """`deployment run --param ... --params ...` as the CLI parses them: values a store can
    hold as strict JSON, or a UserError with a message."""
    try:
        parsed = {
            **parse_json_object(params_json, "--params"),
            **parse_assignments(params, "--param"),
        }
    except UserError as exc:
        assert exc.message and "Traceback" not in exc.message
        return
    strict_json(json.dumps(parsed))


def webhook_status(
    app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]], method: str = "POST"
) -> int:
    """Send one request to an ASGI app in-process (raw header bytes, as a socket may carry
    them) and return its status; an exception in the app propagates."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    sent: list[dict[str, Any]] = []
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio.sleep(3600)  # as a client that sent everything and waits
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    status: int = start["status"]
    return status


WEBHOOK_SECRET = "hook-secret"


def check_webhook(
    path: str, body: bytes, headers: list[tuple[bytes, bytes]], signed: str, method: str = "POST"
) -> None:
    """One request to the daemon's endpoints: `signed` adds a right GitHub signature
    ("github"), the right GitLab token ("gitlab"), a wrong signature ("wrong"), or nothing.
    Repository `etl` has a webhook secret, `nohook` none."""
    from reconciler.daemon.http import DaemonEndpoints, daemon_app
    from reconciler.daemon.metrics import Metrics
    from reconciler.daemon.webhooks import github_signature

    triggered: list[str] = []
    endpoints = DaemonEndpoints(
        secrets={"etl": WEBHOOK_SECRET, "nohook": None},
        trigger=lambda name, why: triggered.append(name),
        statuses=list,
        healthy=lambda: None,
        metrics=Metrics(),
    )
    extra = {
        "github": [(b"x-hub-signature-256", github_signature(WEBHOOK_SECRET, body).encode())],
        "gitlab": [(b"x-gitlab-token", WEBHOOK_SECRET.encode())],
        "wrong": [(b"x-hub-signature-256", github_signature("other", body).encode())],
        "none": [],
    }[signed]
    status = webhook_status(daemon_app(endpoints), path, body, [*extra, *headers], method)
    assert 200 <= status < 500, (path, headers, status)
    if status == 202:
        assert method == "POST" and path == "/hooks/etl" and signed in ("github", "gitlab")
        assert triggered == ["etl"]
    else:
        assert triggered == [], (path, headers, status)
