"""`POST /api/v1/events` (admin token) stores events in Prefect's shape, all or none, audited;
`GET /api/v1/events` lists them with wildcards; refusals store nothing."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.web.conftest import ADMIN, READ, WebProject, auth

EVENT = {
    "event": "acme.file.arrived",
    "resource": {"prefect.resource.id": "acme.bucket.raw", "prefect.resource.name": "raw"},
    "payload": {"key": "2026/orders.csv"},
}


def test_admin_posts_events_and_reads_them_back(
    client: TestClient, web_project: WebProject
) -> None:
    answer = client.post("/api/v1/events", json={"events": [EVENT]}, headers=auth(ADMIN))
    assert answer.status_code == 201, answer.text
    (event_id,) = answer.json()["ids"]
    listed = client.get("/api/v1/events?event=acme.*", headers=auth(READ)).json()["events"]
    assert [(e["id"], e["payload"]) for e in listed] == [(event_id, {"key": "2026/orders.csv"})]
    assert client.get("/api/v1/events?resource=other*", headers=auth(READ)).json() == {"events": []}
    assert [a.action for a in web_project.audit()] == ["events.post"]


def test_refusals_store_nothing(client: TestClient, web_project: WebProject) -> None:
    before = web_project.dump()
    assert client.post("/api/v1/events", json={"events": [EVENT]}).status_code == 401
    read = client.post("/api/v1/events", json={"events": [EVENT]}, headers=auth(READ))
    assert read.status_code == 403
    no_resource = {"events": [EVENT, {"event": "acme.x", "resource": {}}]}
    bad = client.post("/api/v1/events", json=no_resource, headers=auth(ADMIN))
    assert bad.status_code == 422 and "prefect.resource.id" in bad.json()["error"], bad.text
    late = {"events": [{**EVENT, "occurred": "yesterday"}]}
    bad = client.post("/api/v1/events", json=late, headers=auth(ADMIN))
    assert bad.status_code == 422 and "ISO 8601" in bad.json()["error"], bad.text
    assert web_project.dump() == before
