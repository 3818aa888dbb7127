"""The Prefect target's pure parts: its URL, the owner markers, the views a plan compares, the
pinned clone and Prefect's error bodies (the server-facing behaviour is tested against a real
`prefect server` in tests/prefect_target)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from reconciler.core.errors import StoreUrlError
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.prefect_target.client import describe_detail
from reconciler.prefect_target.mapping import (
    deployment_body,
    desired_view,
    observed_deployment,
    owner_of_description,
    owner_of_tags,
    pinned,
    pool_body,
)
from reconciler.prefect_target.url import parse_prefect_url
from reconciler.store.url import open_store

OWNER = Owner("https://git.example/org/flows", "team/prefect.yaml")


def test_url_key_and_auth_string_come_from_the_environment_only(tmp_path: Path) -> None:
    url = parse_prefect_url("prefect+https://api.example/api/accounts/a/workspaces/w/", {})
    assert url.api_url == "https://api.example/api/accounts/a/workspaces/w"
    assert url.api_key is None
    key_file = tmp_path / "key"
    key_file.write_text("pnu_secret\n")
    url = parse_prefect_url("prefect+http://h:4200/api", {"PREFECT_API_KEY_FILE": str(key_file)})
    assert url.api_key == "pnu_secret"
    assert "pnu_secret" not in repr(url)
    with pytest.raises(StoreUrlError, match="may not hold credentials"):
        parse_prefect_url("prefect+https://me:pw@h/api", {})
    with pytest.raises(StoreUrlError, match="cannot read the Prefect API key file"):
        parse_prefect_url("prefect+http://h/api", {"PREFECT_API_KEY_FILE": str(tmp_path / "no")})


def test_other_commands_refuse_a_prefect_url_with_a_message() -> None:
    with pytest.raises(StoreUrlError, match="is a Prefect server") as caught:
        open_store("prefect+http://127.0.0.1:4200/api")
    assert caught.value.hint is not None and "target:" in caught.value.hint


def test_owner_markers_round_trip_and_stay_out_of_the_view() -> None:
    body = deployment_body({"tags": ["etl"]}, OWNER)
    assert body["tags"] == ["etl", f"reconciler:owner={OWNER.repo}::{OWNER.file}"]
    assert owner_of_tags(body["tags"]) == (OWNER, ["etl"])
    assert owner_of_tags(["etl"]) == (None, ["etl"])
    described = pool_body({"description": "Team pool."}, OWNER)["description"]
    assert owner_of_description(described) == (OWNER, "Team pool.")
    assert owner_of_description(pool_body({}, OWNER)["description"]) == (OWNER, None)
    assert owner_of_description("made by hand") == (None, "made by hand")


def test_only_the_repositorys_own_clone_is_pinned() -> None:
    clone = {"prefect.deployments.steps.git_clone": {"id": "clone-repository", "repository": "r"}}
    branch = {"prefect.deployments.steps.git_clone": {"repository": "o", "branch": "dev"}}
    steps = pinned([clone, branch], "abc123")
    assert steps[0]["prefect.deployments.steps.git_clone"]["commit_sha"] == "abc123"
    assert steps[1] == branch


def test_a_deployment_read_back_from_prefect_equals_its_desired_view() -> None:
    spec = {
        "name": "nightly",
        "flow_name": "ingest",
        "entrypoint": "flows/etl.py:ingest",
        "flow_path": "flows/etl.py",
        "path": "",
        "tags": ["b", "a"],
        "parameters": {"days": 1},
        "schedules": [
            {"type": "interval", "interval_seconds": 60, "anchor_date": "2020-01-01T00:00:00Z"}
        ],
        "work_pool_name": "etl",
        "triggers": None,
        "pull_steps": [],
    }
    desired = desired_view(Resource.of(Kind.DEPLOYMENT, "ingest/nightly", spec, OWNER), None)
    view = desired.view()
    raw = {
        **deployment_body(view, OWNER),
        "name": "nightly",
        "id": "x",
        "work_queue_name": "default",
        "schedules": [
            {
                "id": "s",
                "schedule": {
                    "interval": 60.0,
                    "anchor_date": "2020-01-01T00:00:00Z",
                    "timezone": "UTC",
                },
                "active": True,
                "parameters": {},
                "slug": None,
            }
        ],
    }
    observed = observed_deployment(raw, "ingest")
    assert observed.owner == OWNER
    assert observed.hash == desired.hash
    assert "flow_path" not in view and view["tags"] == ["a", "b"]


def test_prefects_422_shows_fields_never_the_echoed_request() -> None:
    answer = httpx.Response(
        422,
        json={
            "exception_message": "Invalid request received.",
            "exception_detail": [
                {
                    "loc": ["body", "parameters"],
                    "msg": "Value error, too big",
                    "input": {"password": "hunter2"},
                }
            ],
            "request_body": {"parameters": {"password": "hunter2"}},
        },
    )
    assert describe_detail(answer) == "parameters: too big"
    assert describe_detail(httpx.Response(409, json={"detail": "exists"})) == "exists"
