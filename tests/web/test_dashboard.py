"""The dashboard's pages and forms through Starlette's TestClient (the browser tests are in
test_browser.py): each page shows what is in the store, signing in, and every refused
action (no token, read token, stale CSRF token, unreadable form value) changes nothing."""

from __future__ import annotations

import html
import re
import time

from starlette.testclient import TestClient

from reconciler.model.prefect_records import TaskRunRecord
from reconciler.model.runs import NewRun, RunState
from tests.web.conftest import ADMIN, READ, WebProject


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _sign_in(client: TestClient, token: str) -> str:
    csrf = _csrf(client.get("/login").text)
    answer = client.post(
        "/login", data={"csrf_token": csrf, "token": token, "next": "/"}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return csrf


def _refusal(answer, status: int, text: str) -> None:  # type: ignore[no-untyped-def]
    assert answer.status_code == status, answer.text
    assert text in answer.text and "What to do:" in answer.text, answer.text


def test_pages_need_sign_in_when_tokens_are_set(client: TestClient) -> None:
    answer = client.get("/deployments/hello/hello", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fdeployments%2Fhello%2Fhello"
    csrf = _csrf(client.get("/login").text)
    wrong = client.post("/login", data={"csrf_token": csrf, "token": "nope", "next": "/"})
    _refusal(wrong, 401, "the token is not valid here")
    elsewhere = client.post(
        "/login",
        data={"csrf_token": csrf, "token": READ, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert elsewhere.headers["location"] == "/", "never sent off the site after signing in"
    cookie = elsewhere.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text, "no inline script: the policy would block it"


def test_every_page_shows_the_store(client: TestClient, web_project: WebProject) -> None:
    store = web_project.store()
    try:
        run = store.create_run(NewRun("hello/hello", "hello", "local", "default", time.time()))
        store.append_run_logs(run.id, [("stdout", "hello from the log")])
        store.heartbeat("local", "worker-a", 10.0)
        store.create_task_run(
            TaskRunRecord(
                "task-1",
                run.id,
                "extract-0",
                "extract",
                "0",
                "COMPLETED",
                "Completed",
                None,
                "2026-01-01T00:00:02+00:00",
                "2026-01-01T00:00:01+00:00",
                "2026-01-01T00:00:02+00:00",
                1,
                False,
                {},
            )
        )
    finally:
        store.close()
    _sign_in(client, READ)
    overview = client.get("/").text
    assert 'data-repo="project"' in overview and 'data-state="Synced"' in overview
    assert "worker-a" in overview and "<svg" in overview
    repo = client.get("/repositories/project").text
    assert 'class="change a-create"' in repo and "hello/hello" in repo
    listing = client.get("/deployments").text
    assert "hello/hello" in listing and "typed/typed" in listing
    detail = client.get("/deployments/typed/typed").text
    assert 'name="param.count"' in detail and 'name="param.ratio"' in detail
    assert "prefect.yaml:4</code>" in detail, "owner file:line"
    hello = client.get("/deployments/hello/hello").text
    assert "0 * * * *" in hello and hello.count(":00:00+00:00</li>") == 5
    run_page = client.get(f"/flow-runs/{run.id}").text
    assert "hello from the log" in run_page and run.name in run_page
    assert 'data-stream="/flow-runs/' in run_page, "a run not ended follows its logs"
    assert '<rect class="s-COMPLETED"' in run_page and "extract-0" in run_page, "task timeline"
    assert 'id="earlier"' not in run_page
    assert run.name in client.get("/flow-runs").text
    pools = client.get("/work-pools").text
    assert "worker-a" in pools and "manual" in pools
    assert client.get("/audit-log").status_code == 200
    missing = client.get("/deployments/hello/helo")
    _refusal(missing, 404, "no deployment")


def test_actions_are_refused_without_admin_token_and_change_nothing(
    client: TestClient, web_project: WebProject
) -> None:
    before = web_project.dump()
    csrf = _csrf(client.get("/login").text)
    form = {"csrf_token": csrf, "param.count": "3"}
    _refusal(client.post("/deployments/typed/typed/run", data=form), 401, "admin token")
    _sign_in(client, READ)
    _refusal(client.post("/deployments/typed/typed/run", data=form), 403, "read-only")
    _refusal(client.post("/work-pools/manual/pause", data=form), 403, "read-only")
    _sign_in(client, ADMIN)
    stale = {**form, "csrf_token": "forged"}
    _refusal(client.post("/deployments/typed/typed/run", data=stale), 403, "CSRF")
    _refusal(client.post("/repositories/project/sync", data={}), 403, "CSRF")
    bad = {"csrf_token": csrf, "param.count": "three"}
    _refusal(client.post("/deployments/typed/typed/run", data=bad), 422, "not a valid integer")
    wrong_type = {"csrf_token": csrf, "param.ratio": "[1]"}
    _refusal(client.post("/deployments/typed/typed/run", data=wrong_type), 422, "ratio")
    assert web_project.dump() == before
    assert web_project.synced == []


def test_run_form_creates_a_run_and_actions_are_audited(
    client: TestClient, web_project: WebProject
) -> None:
    _sign_in(client, ADMIN)
    csrf = _csrf(client.get("/deployments/typed/typed").text)
    made = client.post(
        "/deployments/typed/typed/run",
        data={"csrf_token": csrf, "param.count": "7", "param.ratio": "0.5"},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    page = html.unescape(client.get(made.headers["location"]).text)
    assert "run created" in page and '"count": 7' in page
    client.post("/work-pools/manual/pause", data={"csrf_token": csrf})
    assert "Resume pool" in client.get("/work-pools").text
    client.post("/repositories/project/sync", data={"csrf_token": csrf})
    assert web_project.synced == ["project"]
    audit = client.get("/audit-log").text
    for action in ("run.create", "work-pool.pause", "repository.sync"):
        assert action in audit
    assert "via dashboard" in audit


def test_open_dashboard_reads_without_sign_in(open_client: TestClient) -> None:
    page = open_client.get("/")
    assert page.status_code == 200 and "read-only (no token)" in page.text
    csrf = _csrf(open_client.get("/deployments/typed/typed").text)
    refused = open_client.post(
        "/deployments/typed/typed/run", data={"csrf_token": csrf, "param.count": "1"}
    )
    _refusal(refused, 403, "no admin token")


def test_a_long_log_shows_its_last_lines(client: TestClient, web_project: WebProject) -> None:
    store = web_project.store()
    try:
        run = store.create_run(NewRun("hello/hello", "hello", "local", "default", time.time()))
        store.append_run_logs(run.id, [("stdout", f"line {i}") for i in range(2500)])
    finally:
        store.close()
    _sign_in(client, READ)
    page = client.get(f"/flow-runs/{run.id}").text
    assert "500 earlier lines are not shown" in page
    assert ">line 499\n" not in page and ">line 500\n" in page and ">line 2499\n" in page


def test_the_events_page_lists_run_state_events(
    client: TestClient, web_project: WebProject
) -> None:
    store = web_project.store()
    try:
        run = store.create_run(NewRun("hello/hello", "hello", "local", "default", time.time()))
        store.set_run_state(run.id, RunState.RUNNING)
    finally:
        store.close()
    _sign_in(client, READ)
    page = client.get("/events?event=prefect.flow-run.Run*").text
    assert f"prefect.flow-run.{run.id}" in page and "prefect.flow-run.Running" in page
    assert "prefect.flow-run.Scheduled" not in page
    assert "deployment:</span> hello" in page


def test_the_run_list_filters_by_scheduled_time(
    client: TestClient, web_project: WebProject
) -> None:
    store = web_project.store()
    try:
        day = 86400.0
        start = 1_780_000_000.0  # 2026-05-28T20:26:40Z
        early, late = (
            store.create_run(NewRun("hello/hello", "hello", "local", "default", at))
            for at in (start, start + 3 * day)
        )
    finally:
        store.close()
    _sign_in(client, READ)
    listed = client.get("/flow-runs", params={"since": "2026-05-30T00:00"}).text
    assert late.name in listed and early.name not in listed
    listed = client.get(
        "/flow-runs", params={"since": "2026-05-28T00:00", "until": "2026-05-29T00:00"}
    ).text
    assert early.name in listed and late.name not in listed
    assert 'value="2026-05-28T00:00"' in listed, "the form keeps what was asked"
    _refusal(client.get("/flow-runs", params={"until": "yesterday"}), 400, "not a date and time")
