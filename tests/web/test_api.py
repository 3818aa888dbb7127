"""The REST API under /api/v1 against a real reconciled SQLite store: every endpoint, the
tokens, pagination, and every user error answered as JSON with what to do, changing
nothing in the store."""

from __future__ import annotations

import time

import jsonschema
from starlette.testclient import TestClient

from reconciler.model.prefect_records import TaskRunRecord
from reconciler.model.resources import Kind
from reconciler.model.runs import NewRun, RunState
from reconciler.web.api.routes import ENDPOINTS
from tests.web.conftest import ADMIN, READ, WebProject, auth, resource


def _error(response, status: int, *words: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "hint", "status"} and body["status"] == status
    assert body["hint"], body
    for word in words:
        assert word in body["error"], body
    return body


# -- auth --------------------------------------------------------------------------------------


def test_reads_need_a_token_when_tokens_are_configured(client: TestClient) -> None:
    body = _error(client.get("/api/v1/deployments"), 401, "needs a token")
    assert "Bearer" in body["hint"]
    _error(client.get("/api/v1/deployments", headers=auth("wrong")), 401, "not valid")
    _error(client.get("/api/v1/deployments", headers={"Authorization": "Basic eDp5"}), 401)
    for token in (READ, ADMIN):
        assert client.get("/api/v1/deployments", headers=auth(token)).status_code == 200


def test_read_token_cannot_act_and_nothing_changes(
    client: TestClient, web_project: WebProject
) -> None:
    before = web_project.dump()
    _error(
        client.post("/api/v1/deployments/hello/hello/runs", json={}, headers=auth(READ)),
        403,
        "read-only",
    )
    _error(client.post("/api/v1/deployments/hello/hello/runs", json={}), 401, "token")
    _error(client.post("/api/v1/work-pools/manual/pause", headers=auth(READ)), 403)
    assert web_project.dump() == before
    assert web_project.audit() == [], "a refused token does not reach the action"


def test_no_tokens_reads_are_open_and_actions_are_off(
    open_client: TestClient, web_project: WebProject
) -> None:
    assert open_client.get("/api/v1/deployments").status_code == 200
    before = web_project.dump()
    body = _error(open_client.post("/api/v1/work-pools/manual/pause"), 403, "no admin token")
    assert "RECONCILER_API_ADMIN_TOKEN" in body["hint"]
    _error(open_client.get("/api/v1/deployments", headers=auth("guess")), 401, "not valid")
    assert web_project.dump() == before


# -- reads -------------------------------------------------------------------------------------


def test_repositories_and_applies(client: TestClient, web_project: WebProject) -> None:
    listed = client.get("/api/v1/repositories", headers=auth(READ)).json()["repositories"]
    assert [(r["name"], r["state"], r["sync_suspended"]) for r in listed] == [
        ("project", "Synced", False)
    ]
    one = client.get("/api/v1/repositories/project", headers=auth(READ)).json()
    assert one["applies"] and one["applies"][0]["summary"]["add"] >= 3
    plan_id = one["applies"][0]["id"]
    plan = client.get(f"/api/v1/applies/{plan_id}", headers=auth(READ)).json()
    keys = {c["key"] for c in plan["plan"]["changes"]}
    assert {"hello/hello", "typed/typed", "local"} <= keys
    assert client.get("/api/v1/applies", headers=auth(READ)).json()["applies"][0]["id"] == plan_id
    _error(client.get("/api/v1/repositories/projet", headers=auth(READ)), 404, "projet")
    _error(client.get("/api/v1/applies/999", headers=auth(READ)), 404, "999")
    _error(client.get("/api/v1/applies/x", headers=auth(READ)), 404)


def test_deployment_detail(client: TestClient) -> None:
    body = client.get("/api/v1/deployments/hello/hello", headers=auth(READ)).json()
    assert body["key"] == "hello/hello"
    assert body["owner_file"].endswith(":prefect.yaml")
    assert body["owner_line"] == 2, "the line of `- {name: hello, ...}` in prefect.yaml"
    typed = client.get("/api/v1/deployments/typed/typed", headers=auth(READ)).json()
    assert typed["owner_line"] == 4
    assert body["parameter_schema"]["properties"]["name"]["default"] == "world"
    (schedule,) = body["schedules"]
    assert schedule["problem"] is None and len(schedule["next_fire_times"]) == 5, schedule
    assert schedule["next_fire_times"][0].endswith(":00:00+00:00")
    missing = _error(client.get("/api/v1/deployments/hello/helo", headers=auth(READ)), 404)
    assert "hello/hello" in missing["hint"], "a near miss is suggested"


def test_deployments_page_through(client: TestClient) -> None:
    first = client.get("/api/v1/deployments?limit=1", headers=auth(READ)).json()
    assert [d["key"] for d in first["deployments"]] == ["hello/hello"]
    second = client.get(
        f"/api/v1/deployments?limit=1&cursor={first['next_cursor']}", headers=auth(READ)
    ).json()
    assert [d["key"] for d in second["deployments"]] == ["typed/typed"]
    assert second["next_cursor"] is None
    found = client.get("/api/v1/deployments?search=TYP", headers=auth(READ)).json()
    assert [d["key"] for d in found["deployments"]] == ["typed/typed"]
    for literal in ("%", "_", "!"):
        none = client.get(f"/api/v1/deployments?search={literal}", headers=auth(READ)).json()
        assert none["deployments"] == [], f"{literal!r} is matched as itself"
    _error(client.get("/api/v1/deployments?limit=0", headers=auth(READ)), 400, "limit")
    _error(client.get("/api/v1/deployments?limit=ten", headers=auth(READ)), 400, "limit")
    _error(client.get("/api/v1/deployments?limit=501", headers=auth(READ)), 400, "limit")


def test_pools_workers_variables_secrets(client: TestClient, web_project: WebProject) -> None:
    store = web_project.store()
    try:
        store.heartbeat("local", "worker-a", 10.0)
        with store.transaction() as tx:
            tx.set_variable("greeting", "hi")
            tx.set_block("secret", "db-password", "hunter2-very-secret")
    finally:
        store.close()
    pools = client.get("/api/v1/work-pools", headers=auth(READ)).json()["work_pools"]
    by_name = {p["key"]: p for p in pools}
    assert set(by_name) == {"local", "manual"}
    assert [w["name"] for w in by_name["local"]["workers"]] == ["worker-a"]
    assert by_name["local"]["workers"][0]["online"] is True
    assert [q["key"] for q in by_name["manual"]["queues"]] == ["manual/default"]
    assert client.get("/api/v1/work-pools/local", headers=auth(READ)).json()["key"] == "local"
    _error(client.get("/api/v1/work-pools/nope", headers=auth(READ)), 404, "nope")
    workers = client.get("/api/v1/workers", headers=auth(READ)).json()["workers"]
    assert workers[0]["pool"] == "local"
    variables = client.get("/api/v1/variables", headers=auth(READ)).json()["variables"]
    assert variables == [{"name": "greeting", "value": "hi"}]
    secrets = client.get("/api/v1/secrets", headers=auth(ADMIN))
    assert secrets.json()["secrets"] == [{"type": "secret", "name": "db-password"}]
    assert "hunter2" not in secrets.text


# -- runs --------------------------------------------------------------------------------------


def test_create_a_run_then_read_it_and_cancel_it(
    client: TestClient, web_project: WebProject
) -> None:
    made = client.post(
        "/api/v1/deployments/hello/hello/runs",
        json={"parameters": {"name": "api", "times": 2}},
        headers=auth(ADMIN),
    )
    assert made.status_code == 201, made.text
    run = made.json()
    assert run["state"] == "SCHEDULED" and run["parameters"] == {"name": "api", "times": 2}
    got = client.get(f"/api/v1/flow-runs/{run['id']}", headers=auth(READ)).json()
    assert got["deployment"] == "hello/hello"
    assert client.get(f"/api/v1/flow-runs/{run['id']}/logs", headers=auth(READ)).json() == {
        "logs": []
    }
    assert client.get(f"/api/v1/flow-runs/{run['id']}/task-runs", headers=auth(READ)).json() == {
        "task_runs": []
    }
    store = web_project.store()
    try:
        store.create_task_run(
            TaskRunRecord(
                id="task-1",
                flow_run_id=run["id"],
                name="extract-0",
                task_key="extract",
                dynamic_key="0",
                state_type="COMPLETED",
                state_name="Completed",
                state_message=None,
                state_timestamp="2026-01-01T00:00:02+00:00",
                start_time="2026-01-01T00:00:01+00:00",
                end_time="2026-01-01T00:00:02+00:00",
                run_count=1,
                cache_hit=False,
                details={},
            )
        )
    finally:
        store.close()
    tasks = client.get(f"/api/v1/flow-runs/{run['id'][:8]}/task-runs", headers=auth(READ))
    assert [(t["name"], t["state_type"]) for t in tasks.json()["task_runs"]] == [
        ("extract-0", "COMPLETED")
    ], "by a unique prefix of the id too"
    cancelled = client.post(f"/api/v1/flow-runs/{run['id']}/cancel", headers=auth(ADMIN))
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "CANCELLED"
    before = web_project.dump()
    _error(
        client.post(f"/api/v1/flow-runs/{run['id']}/cancel", headers=auth(ADMIN)),
        409,
        "already ended CANCELLED",
    )
    assert web_project.dump() == before
    actions = [(e.action, e.detail["outcome"]) for e in web_project.audit()]
    assert actions == [
        ("run.cancel", "refused: CANCELLED"),
        ("run.cancel", "CANCELLED"),
        ("run.create", "created"),
    ]
    assert web_project.audit()[-1].actor.startswith("admin token from")


def test_invalid_run_requests_change_nothing(client: TestClient, web_project: WebProject) -> None:
    before = web_project.dump()
    post = client.post
    body = _error(
        post(
            "/api/v1/deployments/typed/typed/runs",
            json={"parameters": {"count": "many"}},
            headers=auth(ADMIN),
        ),
        422,
        "cannot run typed/typed",
    )
    assert "count" in body["error"]
    body = _error(
        post(
            "/api/v1/deployments/typed/typed/runs",
            json={"parameters": {"cuont": 1}},
            headers=auth(ADMIN),
        ),
        422,
        "'cuont' is not a parameter",
    )
    _error(
        post("/api/v1/deployments/typed/typo/runs", json={}, headers=auth(ADMIN)),
        422,
        "does not exist",
    )
    _error(
        post("/api/v1/deployments/typed/typed/runs", json={"params": {}}, headers=auth(ADMIN)),
        422,
        "does not fit its schema",
    )
    _error(
        post("/api/v1/deployments/typed/typed/runs", json={"parameters": []}, headers=auth(ADMIN)),
        422,
        "parameters",
    )
    _error(
        post(
            "/api/v1/deployments/typed/typed/runs",
            content=b"{not json",
            headers={**auth(ADMIN), "Content-Type": "application/json"},
        ),
        400,
        "not valid JSON",
    )
    _error(
        post(
            "/api/v1/deployments/typed/typed/runs",
            content=b"x" * (5 * 1024 * 1024),
            headers={**auth(ADMIN), "Content-Type": "application/json"},
        ),
        413,
        "over",
    )
    _error(
        post(
            "/api/v1/deployments/typed/typed/runs",
            content=b"a=b",
            headers={**auth(ADMIN), "Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
    )
    assert web_project.dump() == before
    assert all(e.detail["outcome"] == "refused" for e in web_project.audit())


def test_bulk_runs_all_or_none(client: TestClient, web_project: WebProject) -> None:
    runs = [{"deployment": "hello/hello", "parameters": {"times": i}} for i in range(200)]
    before = web_project.dump()
    bad = _error(
        client.post(
            "/api/v1/flow-runs",
            json={"runs": [*runs, {"deployment": "typed/typed", "parameters": {"count": "x"}}]},
            headers=auth(ADMIN),
        ),
        422,
        "1 of 201 runs are not valid; none was created",
    )
    assert bad["errors"][0]["index"] == 200
    assert web_project.dump() == before
    made = client.post("/api/v1/flow-runs", json={"runs": runs}, headers=auth(ADMIN))
    assert made.status_code == 201 and made.json() == {"created": 200, "requested": 200}
    _error(client.post("/api/v1/flow-runs", json={"runs": []}, headers=auth(ADMIN)), 422)
    again = client.post(
        "/api/v1/flow-runs",
        json={"runs": [{"deployment": "hello/hello", "idempotency_key": "k1"}] * 2},
        headers=auth(ADMIN),
    )
    assert again.json() == {"created": 1, "requested": 2}


def test_runs_filter_and_page_through(client: TestClient, web_project: WebProject) -> None:
    store = web_project.store()
    now = time.time()
    try:
        for i in range(7):
            store.create_run(
                NewRun("hello/hello", "hello", "local", "default", now - 3600 * i, name=f"r{i}")
            )
        store.create_run(NewRun("typed/typed", "typed", "local", "default", now, name="t"))
        victim = store.list_runs(deployment="typed/typed")[0]
        store.cancel_run(victim.id)
    finally:
        store.close()
    names, cursor = [], ""
    while True:
        page = client.get(
            f"/api/v1/flow-runs?deployment=hello/hello&limit=3&cursor={cursor}",
            headers=auth(READ),
        ).json()
        names += [r["name"] for r in page["flow_runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == [f"r{i}" for i in range(7)]
    cancelled = client.get("/api/v1/flow-runs?state=CANCELLED", headers=auth(READ)).json()
    assert [r["name"] for r in cancelled["flow_runs"]] == ["t"]
    recent = client.get(
        f"/api/v1/flow-runs?deployment=hello/hello&scheduled_after={now - 3600 * 2 - 1}",
        headers=auth(READ),
    ).json()
    assert [r["name"] for r in recent["flow_runs"]] == ["r0", "r1", "r2"]
    chart = client.get("/api/v1/flow-runs/by-hour", headers=auth(READ)).json()
    assert len(chart["hours"]) == 24
    assert sum(sum(h["states"].values()) for h in chart["hours"]) == 8
    _error(client.get("/api/v1/flow-runs?state=DONE", headers=auth(READ)), 400, "'DONE'")
    _error(client.get("/api/v1/flow-runs?cursor=abc", headers=auth(READ)), 400, "cursor")
    _error(client.get("/api/v1/flow-runs?scheduled_after=x", headers=auth(READ)), 400)
    _error(client.get("/api/v1/flow-runs/nope", headers=auth(READ)), 404, "nope")
    _error(client.get("/api/v1/flow-runs/nope/logs", headers=auth(READ)), 404, "nope")
    _error(client.post("/api/v1/flow-runs/nope/cancel", headers=auth(ADMIN)), 404, "nope")


def test_log_stream_sends_lines_then_the_end(client: TestClient, web_project: WebProject) -> None:
    store = web_project.store()
    try:
        run = store.create_run(NewRun("hello/hello", "hello", "local", "default", time.time()))
        store.append_run_logs(run.id, [("stdout", "first"), ("stdout", "second")])
        store.cancel_run(run.id)
    finally:
        store.close()
    with client.stream(
        "GET", f"/api/v1/flow-runs/{run.id}/logs/stream", headers=auth(READ)
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    assert text.index('"first"') < text.index('"second"') < text.index("event: end")
    assert '"CANCELLED"' in text


# -- repository and pool actions ---------------------------------------------------------------


def test_sync_suspend_resume(client: TestClient, web_project: WebProject) -> None:
    synced = client.post("/api/v1/repositories/project/sync", headers=auth(ADMIN))
    assert synced.status_code == 202 and web_project.synced == ["project"]
    client.post("/api/v1/repositories/project/suspend", headers=auth(ADMIN))
    listed = client.get("/api/v1/repositories", headers=auth(READ)).json()["repositories"]
    assert listed[0]["sync_suspended"] is True
    again = client.post("/api/v1/repositories/project/suspend", headers=auth(ADMIN)).json()
    assert again["changed"] is False
    client.post("/api/v1/repositories/project/resume", headers=auth(ADMIN))
    listed = client.get("/api/v1/repositories", headers=auth(READ)).json()["repositories"]
    assert listed[0]["sync_suspended"] is False
    assert web_project.synced == ["project", "project"], "resuming syncs at once"
    before = web_project.dump()
    _error(client.post("/api/v1/repositories/other/sync", headers=auth(ADMIN)), 404, "other")
    _error(client.post("/api/v1/repositories/other/suspend", headers=auth(ADMIN)), 404)
    assert web_project.dump() == before and web_project.synced == ["project", "project"]


def test_sync_without_a_daemon_is_refused(web_project: WebProject) -> None:
    from reconciler.web.auth import Tokens
    from tests.web.conftest import make_client

    for client in make_client(web_project, Tokens(admin=ADMIN), daemon=False):
        _error(
            client.post("/api/v1/repositories/project/sync", headers=auth(ADMIN)),
            409,
            "no reconcile loop",
        )


def test_plan_and_rollback_without_a_daemon_are_refused(web_project: WebProject) -> None:
    from reconciler.web.auth import Tokens
    from tests.web.conftest import make_client

    before = web_project.dump()
    for client in make_client(web_project, Tokens(admin=ADMIN), daemon=False):
        _error(
            client.get("/api/v1/repositories/project/plan?ref=main", headers=auth(ADMIN)),
            409,
            "cannot plan a ref",
        )
        _error(client.get("/api/v1/repositories/other/plan?ref=main", headers=auth(ADMIN)), 404)
        body = _error(
            client.post(
                "/api/v1/repositories/project/rollback", headers=auth(ADMIN), json={"too": "x"}
            ),
            422,
            "'to' is a required property",
        )
        assert body["status"] == 422
        _error(
            client.post(
                "/api/v1/repositories/project/rollback", headers=auth(ADMIN), json={"to": "zz"}
            ),
            400,
            "neither a commit id nor an applied plan id",
        )
    after = web_project.dump()
    assert {t: r for t, r in after.items() if t != "audit_log"} == {
        t: r for t, r in before.items() if t != "audit_log"
    }


def test_pause_and_resume_hand_made_pool_and_queue(
    client: TestClient, web_project: WebProject
) -> None:
    paused = client.post("/api/v1/work-pools/manual/pause", headers=auth(ADMIN))
    assert paused.status_code == 200, paused.text
    pool = resource(Kind.WORK_POOL, "manual", web_project.store_url)
    assert pool is not None and pool.spec["paused"] is True
    client.post("/api/v1/work-pools/manual/resume", headers=auth(ADMIN))
    pool = resource(Kind.WORK_POOL, "manual", web_project.store_url)
    assert pool is not None and pool.spec["paused"] is False
    client.post("/api/v1/work-pools/manual/queues/default/pause", headers=auth(ADMIN))
    queue = resource(Kind.WORK_QUEUE, "manual/default", web_project.store_url)
    assert queue is not None and queue.spec["paused"] is True
    client.post("/api/v1/work-pools/manual/queues/default/resume", headers=auth(ADMIN))
    queue = resource(Kind.WORK_QUEUE, "manual/default", web_project.store_url)
    assert queue is not None and queue.spec["paused"] is False
    before = web_project.dump()
    _error(client.post("/api/v1/work-pools/local/pause", headers=auth(ADMIN)), 409, "local")
    _error(client.post("/api/v1/work-pools/nope/pause", headers=auth(ADMIN)), 404, "nope")
    _error(
        client.post("/api/v1/work-pools/manual/queues/nope/pause", headers=auth(ADMIN)),
        404,
        "nope",
    )
    assert web_project.dump() == before


def test_audit_log_pages(client: TestClient) -> None:
    for _ in range(3):
        client.post("/api/v1/repositories/project/sync", headers=auth(ADMIN))
    entries = client.get("/api/v1/audit-log?limit=2", headers=auth(READ)).json()["entries"]
    assert [e["action"] for e in entries] == ["repository.sync"] * 2
    older = client.get(f"/api/v1/audit-log?before={entries[-1]['id']}", headers=auth(READ)).json()[
        "entries"
    ]
    assert len(older) == 1


# -- the document and unknown paths ------------------------------------------------------------


def test_openapi_lists_every_endpoint_and_is_valid(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json", headers=auth(READ)).json()
    assert doc["openapi"].startswith("3.1") and doc["info"]["version"] == "1.3.0"
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(e.method, e.path) for e in ENDPOINTS}
    for ops in doc["paths"].values():
        for op in ops.values():
            body = op.get("requestBody")
            if body:
                jsonschema.Draft202012Validator.check_schema(
                    body["content"]["application/json"]["schema"]
                )


def test_unknown_paths_and_methods_are_json(client: TestClient) -> None:
    _error(client.get("/api/v1/nothing", headers=auth(READ)), 404, "/api/v1/nothing")
    _error(client.delete("/api/v1/deployments", headers=auth(READ)), 405, "DELETE")
    assert RunState.SCHEDULED  # the states the API speaks are the store's


def test_answers_fit_the_published_response_schemas(
    client: TestClient, web_project: WebProject
) -> None:
    doc = client.get("/api/v1/openapi.json", headers=auth(READ)).json()
    made = client.post("/api/v1/deployments/hello/hello/runs", json={}, headers=auth(ADMIN))
    run_id = made.json()["id"]
    store = web_project.store()
    try:
        store.heartbeat("local", "worker-a", 10.0)
    finally:
        store.close()
    checked = {
        "/deployments": "DeploymentPage",
        "/deployments/hello/hello": "Deployment",
        "/flow-runs": "FlowRunPage",
        f"/flow-runs/{run_id}": "FlowRun",
        "/work-pools": "WorkPools",
        "/repositories": "Repositories",
        "/audit-log": "AuditLog",
    }
    for path, name in checked.items():
        answer = client.get("/api/v1" + path, headers=auth(READ)).json()
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(answer)
    error = client.get("/api/v1/flow-runs/nope", headers=auth(READ)).json()
    jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/Error", "components": doc["components"]}
    ).validate(error)
    schema = {"$ref": "#/components/schemas/FlowRun", "components": doc["components"]}
    assert not jsonschema.Draft202012Validator(schema).is_valid({"id": 1}), "the schema bites"


def test_rollback_by_plan_id_or_commit_prefix(web_project: WebProject) -> None:
    from reconciler.store import open_store
    from reconciler.web.service import WebService

    asked: list[tuple[str, str]] = []

    def rollback_to(name: str, commit: str) -> str | None:
        asked.append((name, commit))
        return None

    commit = web_project.repo.git("rev-parse", "HEAD")
    service = WebService(lambda: open_store(web_project.store_url), rollback_to=rollback_to)
    try:
        (applied,) = service.applies(10)
        by_id = service.rollback("project", str(applied["id"]), "tester")
        by_prefix = service.rollback("project", commit[:8].upper(), "tester")
    finally:
        service.close()
    assert by_id["commit"] == by_prefix["commit"] == commit and by_id["sync_suspended"] is True
    assert asked == [("project", commit), ("project", commit)]
    assert [(e.action, e.detail["outcome"]) for e in web_project.audit()][:2] == [
        ("repository.rollback", "started"),
        ("repository.rollback", "started"),
    ]
