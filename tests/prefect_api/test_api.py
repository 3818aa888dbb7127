"""Our Prefect API through Starlette's TestClient: the shapes Prefect's client reads, access
(token, a worker's own runs), Prefect's 404 for what is not served, and the event stream."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from reconciler.model.runs import FlowRun, NewRun
from reconciler.prefect_api import create_prefect_api
from reconciler.prefect_api.schemas import deployment_id
from reconciler.store import Store, open_store
from tests.prefect_api.conftest import (
    POOL,
    WORKER,
    deployment_resource,
    pool_resource,
    put,
    queue_resource,
)

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(str(tmp_path / "state.db"))
    put(store, pool_resource(), queue_resource(), deployment_resource("etl", "flows/etl.py:main"))
    yield store
    store.close()


def client_for(store: Store, *, token: str | None = TOKEN, adhoc: bool = False) -> TestClient:
    app = create_prefect_api(
        lambda: open_store(store.url),
        may_access=lambda run: run.worker == WORKER,
        allow_adhoc_runs=adhoc,
        token=token,
    )
    return TestClient(app, headers=AUTH if token else {})


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with client_for(store) as client:
        yield client
    client.app.state.prefect_api.close()  # type: ignore[attr-defined]


def claimed(store: Store, worker: str = WORKER) -> FlowRun:
    made = store.create_run(
        NewRun("etl/default", "etl", POOL, "default", time.time() - 1, {"x": 1})
    )
    (run,) = store.claim_runs(POOL, worker, limit=1, scheduled_before=time.time())
    assert run.id == made.id
    return run


def test_version_and_health_are_open_and_everything_else_wants_the_token(store: Store) -> None:
    with client_for(store) as client:
        bare = {"Authorization": ""}
        assert client.get("/admin/version", headers=bare).json() == "3.9.1"
        assert client.get("/health", headers=bare).json() is True
        refused = client.get("/admin/storage", headers=bare)
        assert refused.status_code == 401 and "PREFECT_API_KEY" in refused.json()["detail"]
        wrong = client.get("/admin/storage", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get("/admin/storage").json() == {"default_result_storage_block_id": None}
        basic = base64.b64encode(f"reconciler:{TOKEN}".encode()).decode()
        assert client.get("/admin/storage", headers={"Authorization": f"Basic {basic}"}).is_success


def test_what_is_not_served_answers_as_prefects_server_does(
    client: TestClient, store: Store
) -> None:
    run = claimed(store)
    for path in ("/csrf-token?client=abc", "/no/such/route", f"/flow_runs/{run.id}/"):
        response = client.get(path)
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"}), path
    missing = client.get(f"/flow_runs/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["detail"] == "Flow run not found"


def test_a_flow_is_get_or_create_by_name(client: TestClient) -> None:
    first = client.post("/flows/", json={"name": "etl", "tags": [], "labels": {}})
    again = client.post("/flows/", json={"name": "etl"})

    assert first.status_code in (200, 201)
    assert first.json()["id"] == again.json()["id"]
    assert client.get(f"/flows/{first.json()['id']}").json()["name"] == "etl"


def test_a_claimed_run_reads_as_prefects_flow_run_with_its_deployment(
    client: TestClient, store: Store
) -> None:
    run = claimed(store)

    body = client.get(f"/flow_runs/{run.id}").json()

    assert (body["id"], body["name"], body["parameters"]) == (run.id, run.name, {"x": 1})
    assert body["deployment_id"] == deployment_id("etl/default")
    assert (body["state"]["type"], body["state"]["name"], body["state_type"]) == (
        "PENDING",
        "Pending",
        "PENDING",
    )
    assert body["state"]["id"] and body["work_pool_name"] == POOL
    assert body["tags"] == ["nightly"]
    assert client.get(f"/flows/{body['flow_id']}").json()["name"] == "etl"
    pool = client.get(f"/work_pools/{POOL}").json()
    assert pool["name"] == POOL and pool["id"]
    queue = client.get(f"/work_queues/{body['work_queue_id']}").json()
    assert (queue["id"], queue["name"]) == (body["work_queue_id"], "default")

    deployment = client.get(f"/deployments/{body['deployment_id']}").json()
    assert deployment["entrypoint"] == "flows/etl.py:main"
    assert deployment["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "."}}
    ]
    assert (deployment["name"], deployment["flow_id"]) == ("default", body["flow_id"])
    assert deployment["work_pool_name"] == POOL


def test_set_state_answers_an_orchestration_result(client: TestClient, store: Store) -> None:
    run = claimed(store)
    proposed = {"type": "RUNNING", "name": "Running", "state_details": {"transition_id": "t"}}

    response = client.post(
        f"/flow_runs/{run.id}/set_state", json={"state": proposed, "force": False}
    )

    assert response.status_code == 201
    result = response.json()
    assert result["status"] == "ACCEPT" and result["details"] == {"type": "accept_details"}
    assert result["state"]["state_details"] == {"transition_id": "t", "flow_run_id": run.id}
    assert client.get(f"/flow_runs/{run.id}").json()["run_count"] == 1
    assert (
        client.patch(
            f"/flow_runs/{run.id}", json={"flow_version": "v2", "empirical_policy": {"retries": 3}}
        ).status_code
        == 204
    )
    found = store.get_run(run.id)
    assert found is not None and found.empirical_policy == {"retries": 3}


def test_another_workers_run_is_refused(client: TestClient, store: Store) -> None:
    theirs = claimed(store, worker="someone-else")

    for response in (
        client.get(f"/flow_runs/{theirs.id}"),
        client.post(f"/flow_runs/{theirs.id}/set_state", json={"state": {"type": "RUNNING"}}),
        client.post("/logs/", json=[log_line(theirs.id)]),
    ):
        assert response.status_code == 403
        assert "only the runs of its own worker" in response.json()["detail"]
    assert (
        client.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": [theirs.id]}}}).json()
        == []
    )


def log_line(run_id: str, message: str = "hello", level: int = 20) -> dict[str, Any]:
    return {
        "name": "prefect.flow_runs",
        "level": level,
        "message": message,
        "timestamp": "2026-05-01T12:00:00Z",
        "flow_run_id": run_id,
        "task_run_id": None,
    }


def test_a_subflow_is_created_under_its_parents_task_run(client: TestClient, store: Store) -> None:
    parent = claimed(store)
    flow_id = client.post("/flows/", json={"name": "child"}).json()["id"]
    task = client.post(
        "/task_runs/",
        json={
            "name": "child-0",
            "flow_run_id": parent.id,
            "task_key": "child-abc",
            "dynamic_key": "0",
            "state": {"type": "PENDING", "name": "Pending"},
        },
    )
    assert task.status_code == 201 and task.json()["task_key"] == "child-abc"
    task_id = task.json()["id"]

    made = client.post(
        "/flow_runs/",
        json={
            "flow_id": flow_id,
            "parameters": {"n": 5},
            "state": {"type": "PENDING", "name": "Pending"},
            "parent_task_run_id": task_id,
            "empirical_policy": {"retries": 0, "retry_delay": 0},
        },
    )

    assert made.status_code == 201
    child = made.json()
    assert child["id"] and child["parent_task_run_id"] == task_id
    assert (child["flow_id"], child["parameters"], child["deployment_id"]) == (
        flow_id,
        {"n": 5},
        None,
    )
    found = client.post(
        "/flow_runs/filter",
        json={
            "flow_runs": {"parent_task_run_id": {"any_": [task_id]}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 1,
        },
    ).json()
    assert [run["id"] for run in found] == [child["id"]]
    stored = store.get_run(child["id"])
    assert stored is not None and stored.worker == WORKER and stored.pool == ""


def test_ad_hoc_runs_only_when_allowed(store: Store) -> None:
    with client_for(store) as client:
        flow_id = client.post("/flows/", json={"name": "by-hand"}).json()["id"]
        refused = client.post(
            "/flow_runs/", json={"flow_id": flow_id, "state": {"type": "PENDING"}}
        )
        assert refused.status_code == 403 and "ad hoc" in refused.json()["detail"]
    with client_for(store, adhoc=True) as client:
        made = client.post("/flow_runs/", json={"flow_id": flow_id, "state": {"type": "PENDING"}})
        assert made.status_code == 201 and made.json()["id"]


def test_variables_and_blocks_are_served_from_the_store(client: TestClient, store: Store) -> None:
    with store.transaction() as tx:
        tx.set_variable("greeting", {"text": "hi"})
        tx.set_block("secret", "api-key", {"value": "s3cr3t"})
        tx.set_block("json", "settings", {"a": 1})

    assert client.get("/variables/name/greeting").json()["value"] == {"text": "hi"}
    assert client.get("/variables/name/missing").status_code == 404

    secret = client.get(
        "/block_types/slug/secret/block_documents/name/api-key", params={"include_secrets": "true"}
    ).json()
    assert secret["data"] == {"value": "s3cr3t"} and secret["id"]
    assert secret["block_schema"]["block_type_id"] == secret["block_type_id"]
    assert secret["block_schema"]["checksum"].startswith("sha256:")
    hidden = client.get("/block_types/slug/secret/block_documents/name/api-key").json()
    assert hidden["data"]["value"] != "s3cr3t"
    settings = client.get("/block_types/slug/json/block_documents/name/settings").json()
    assert settings["data"] == {"value": {"a": 1}}
    assert client.get("/block_types/slug/secret/block_documents/name/nope").status_code == 404


def test_logs_and_artifacts_are_recorded(client: TestClient, store: Store) -> None:
    run = claimed(store)

    assert (
        client.post(
            "/logs/", json=[log_line(run.id, "one"), log_line(run.id, "two", 40)]
        ).status_code
        == 201
    )
    made = client.post(
        "/artifacts/",
        json={
            "key": "report",
            "type": "markdown",
            "description": "d",
            "data": "# x",
            "flow_run_id": run.id,
        },
    )

    assert [(line.line, line.level) for line in store.run_logs(run.id)] == [
        ("one", 20),
        ("two", 40),
    ]
    assert made.status_code == 201 and made.json()["id"] == store.artifacts(run.id)[0].id


def task_state_event(task_run_id: str, run_id: str, name: str, second: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "occurred": f"2026-05-01T12:00:{second:02d}Z",
        "event": f"prefect.task-run.{name}",
        "resource": {"prefect.resource.id": f"prefect.task-run.{task_run_id}"},
        "related": [
            {
                "prefect.resource.id": f"prefect.flow-run.{run_id}",
                "prefect.resource.role": "flow-run",
            }
        ],
        "payload": {
            "validated_state": {"type": name.upper(), "name": name},
            "task_run": {
                "name": f"t-{task_run_id[:4]}",
                "task_key": "t",
                "dynamic_key": "0",
                "run_count": 1,
            },
        },
        "follows": None,
    }


def test_the_event_stream_authenticates_and_stores_every_event_once(
    client: TestClient, store: Store
) -> None:
    run = claimed(store)
    tasks = [str(uuid.uuid4()) for _ in range(500)]
    events = [
        task_state_event(task, run.id, name, second)
        for second, name in enumerate(("Pending", "Running", "Completed"))
        for task in tasks
    ]

    with client.websocket_connect("/events/in", subprotocols=["prefect"]) as socket:
        assert socket.accepted_subprotocol == "prefect"
        socket.send_text(json.dumps({"type": "auth", "token": TOKEN}))
        assert json.loads(socket.receive_text()) == {"type": "auth_success"}
        for event in events + events[:100]:  # a reconnect resends unconfirmed events
            socket.send_text(json.dumps(event))
    assert client.app.state.prefect_api.events.wait_idle(30)  # type: ignore[attr-defined]

    recorded = store.task_runs(run.id)
    assert len(recorded) == 500
    assert {task.state_name for task in recorded} == {"Completed"}
    assert [s.name for s in store.task_run_states(tasks[0])] == ["Pending", "Running", "Completed"]


def test_a_wrong_token_on_the_event_stream_is_an_auth_failure(client: TestClient) -> None:
    with client.websocket_connect("/events/in", subprotocols=["prefect"]) as socket:
        socket.send_text(json.dumps({"type": "auth", "token": "wrong"}))
        answer = json.loads(socket.receive_text())
        assert answer["type"] == "auth_failure" and answer["reason"]
        with pytest.raises(WebSocketDisconnect):
            socket.receive_text()


def test_events_out_accepts_and_stays_silent(client: TestClient) -> None:
    with client.websocket_connect("/events/out", subprotocols=["prefect"]) as socket:
        socket.send_text(json.dumps({"type": "auth", "token": f"user:{TOKEN}"}))
        assert json.loads(socket.receive_text()) == {"type": "auth_success"}
        socket.send_text(json.dumps({"type": "filter", "filter": {}}))
