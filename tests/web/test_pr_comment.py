"""The GitHub Action (`action.yml`) and the GitLab job run `reconciler/ci/pr_comment.py`
against a real daemon and a fake GitHub or GitLab API on 127.0.0.1 that records every request:
one sticky comment, created once and edited on every push, refusals posted too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.conftest import GitRepo, store_dump
from tests.daemon.conftest import DaemonProcess, StartDaemon
from tests.e2e.helpers import TWO_DEPLOYMENTS, project
from tests.web.conftest import ADMIN, READ

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"RECONCILER_API_READ_TOKEN": READ, "RECONCILER_API_ADMIN_TOKEN": ADMIN}
FORGE_TOKEN = "forge-token-for-tests"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeForge:
    """Comments of one pull request, behind GitHub's or GitLab's paths (pages of `per_page`)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1000

    def add(self, body: str) -> dict[str, Any]:
        self.next_id += 1
        comment = {"id": self.next_id, "body": body}
        self.comments.append(comment)
        return comment

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        if method == "GET":
            size = int(query.get("per_page", ["30"])[0])
            page = int(query.get("page", ["1"])[0])
            return 200, self.comments[(page - 1) * size : page * size]
        if method == "POST":
            return 201, self.add(body["body"])
        found = next(c for c in self.comments if str(c["id"]) == path.rsplit("/", 1)[-1])
        found["body"] = body["body"]
        return 200, found

    def mine(self) -> list[dict[str, Any]]:
        return [c for c in self.comments if "reconciler-plan:flows" in c["body"]]


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    fake = FakeForge()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            query = parse_qs(parts.query)
            fake.requests.append(
                Recorded(
                    self.command,
                    parts.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            token = self.headers.get("Authorization") or self.headers.get("PRIVATE-TOKEN")
            if FORGE_TOKEN not in (token or ""):
                status, answer = 401, {"message": "Bad credentials"}
            else:
                status, answer = fake.handle(self.command, parts.path, query, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _action_step() -> tuple[dict[str, str], str]:
    """The action's one step: its env (inputs substituted later) and its script."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    (step,) = action["runs"]["steps"]
    return step["env"], step["run"]


def run_action(
    inputs: dict[str, str], github_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run action.yml's step as the runner does: `${{ inputs.X }}` replaced by the input (or
    its default), GITHUB_ACTION_PATH the action's directory."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    event = json.loads(Path(github_env["GITHUB_EVENT_PATH"]).read_text() or "{}")
    context = {
        "github.event.pull_request.number": str(event.get("pull_request", {}).get("number", "")),
        "github.token": "the-runner's-token",
    }

    def expand(text: str) -> str:
        return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", lambda m: context[m.group(1)], text)

    values = {
        name: inputs.get(name, expand(str(spec.get("default", ""))))
        for name, spec in action["inputs"].items()
    }
    missing = [n for n, s in action["inputs"].items() if s.get("required") and n not in inputs]
    assert not missing, missing
    step_env, script = _action_step()
    env = {
        k: re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values[m.group(1)], v)
        for k, v in step_env.items()
    }
    full = {
        "PATH": os.environ["PATH"],
        "GITHUB_ACTION_PATH": str(ROOT),
        **github_env,
        **env,
    }
    return subprocess.run(
        ["bash", "-e", "-c", script], env=full, capture_output=True, text=True, timeout=120
    )


def _daemon(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> tuple[GitRepo, DaemonProcess]:
    repo = make_repo(project())
    daemon = start_daemon({"repositories": [{"name": "flows", "path": str(repo.path)}]}, env=TOKENS)
    first = repo.git("rev-parse", "HEAD")
    daemon.wait_for(lambda s: s.get("flows", {}).get("applied_commit") == first)
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"prefect.yaml": TWO_DEPLOYMENTS}, "add hourly")
    return repo, daemon


def test_the_action_keeps_one_sticky_comment(
    make_repo: Callable[..., GitRepo],
    start_daemon: StartDaemon,
    forge: FakeForge,
    tmp_path: Path,
) -> None:
    repo, daemon = _daemon(make_repo, start_daemon)
    for n in range(101):  # the pull request's own discussion: the comment goes to page 2
        forge.add(f"a reviewer's comment {n}")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    outputs = tmp_path / "outputs"
    github = {
        "GITHUB_API_URL": forge.url,
        "GITHUB_REPOSITORY": "acme/flows",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_OUTPUT": str(outputs),
    }
    inputs = {
        "server": daemon.url,
        "repository": "flows",
        "token": READ,
        "ref": "feature",
        "github-token": FORGE_TOKEN,
    }
    before = store_dump(daemon.store_url)["deployments"]

    first = run_action(inputs, github)
    assert first.returncode == 0, first.stderr
    assert "1 to add, 0 to change, 0 to destroy" in first.stdout
    (comment,) = forge.mine()
    assert comment["body"].startswith("<!-- reconciler-plan:flows -->")
    assert "ingest/hourly" in comment["body"] and "```diff" in comment["body"]
    assert "has-changes=true" in outputs.read_text()
    posts = [r for r in forge.requests if r.method != "GET"]
    assert [(r.method, r.path) for r in posts] == [("POST", "/repos/acme/flows/issues/7/comments")]
    assert all(r.headers["authorization"] == f"Bearer {FORGE_TOKEN}" for r in forge.requests)
    assert [r.query["page"] for r in forge.requests if r.method == "GET"] == [["1"], ["2"]]

    # A push to the branch: the same comment is edited, no second one.
    repo.commit({"prefect.yaml": TWO_DEPLOYMENTS.replace("hourly", "daily")}, "rename")
    forge.requests.clear()
    second = run_action(inputs, github)
    assert second.returncode == 0, second.stderr
    (comment,) = forge.mine()
    assert "ingest/daily" in comment["body"] and "ingest/hourly" not in comment["body"]
    assert [(r.method, r.path) for r in forge.requests if r.method != "GET"] == [
        ("PATCH", f"/repos/acme/flows/issues/comments/{comment['id']}")
    ]
    assert len(forge.comments) == 102

    # With detailed-exitcode, changes fail the step; the comment is still up to date.
    detailed = run_action({**inputs, "detailed-exitcode": "true"}, github)
    assert detailed.returncode == 2, detailed.stderr
    assert store_dump(daemon.store_url)["deployments"] == before  # nothing was applied


def test_the_action_posts_refusals_and_fails(
    make_repo: Callable[..., GitRepo],
    start_daemon: StartDaemon,
    forge: FakeForge,
    tmp_path: Path,
) -> None:
    repo, daemon = _daemon(make_repo, start_daemon)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 3}}))
    github = {
        "GITHUB_API_URL": forge.url,
        "GITHUB_REPOSITORY": "acme/flows",
        "GITHUB_EVENT_PATH": str(event),
    }
    inputs = {"server": daemon.url, "repository": "flows", "token": READ}

    # The default ref, refs/pull/3/head, is not in this (local) repository.
    missing = run_action({**inputs, "github-token": FORGE_TOKEN}, github)
    assert missing.returncode == 1
    assert "ref 'refs/pull/3/head' does not exist in repository 'flows'" in missing.stderr
    (comment,) = forge.mine()
    assert "could not be made" in comment["body"] and "does not exist" in comment["body"]

    repo.commit({"prefect.yaml": "deployments:\n  - name: x\n"}, "broken")
    broken = run_action({**inputs, "ref": "feature", "github-token": FORGE_TOKEN}, github)
    assert broken.returncode == 1
    assert "deployment has no entrypoint" in broken.stderr
    (comment,) = forge.mine()
    assert "nothing would be applied" in comment["body"] and "no entrypoint" in comment["body"]

    wrong = run_action({**inputs, "ref": "feature", "token": "wrong"}, github)
    assert wrong.returncode == 1 and "the token is not valid here" in wrong.stderr
    assert "wrong" not in wrong.stdout + wrong.stderr.replace("the token is not valid", "")
    assert FORGE_TOKEN not in wrong.stdout + wrong.stderr  # refused by the fake GitHub: 401
    assert "GitHub refused to list the comments: 401 Bad credentials" in wrong.stderr

    (tmp_path / "push.json").write_text("{}")
    no_pr = run_action(
        {**inputs, "ref": "feature", "github-token": FORGE_TOKEN},
        {**github, "GITHUB_EVENT_PATH": str(tmp_path / "push.json")},
    )
    assert no_pr.returncode == 1 and "not a pull request's event" in no_pr.stderr


def test_the_gitlab_job_keeps_one_note(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, forge: FakeForge
) -> None:
    _, daemon = _daemon(make_repo, start_daemon)
    env = {
        "PATH": os.environ["PATH"],
        "RECONCILER_SERVER": daemon.url,
        "RECONCILER_REPOSITORY": "flows",
        "RECONCILER_TOKEN": READ,
        "RECONCILER_REF": "feature",
        "GITLAB_TOKEN": FORGE_TOKEN,
        "CI_API_V4_URL": forge.url + "/api/v4",
        "CI_PROJECT_ID": "acme/flows",
        "CI_MERGE_REQUEST_IID": "5",
    }
    script = [sys.executable, str(ROOT / "reconciler/ci/pr_comment.py"), "gitlab"]
    for _ in range(2):
        done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    (note,) = forge.mine()
    assert "ingest/hourly" in note["body"]
    writes = [(r.method, r.path) for r in forge.requests if r.method != "GET"]
    assert writes == [
        ("POST", "/api/v4/projects/acme%2Fflows/merge_requests/5/notes"),
        ("PUT", f"/api/v4/projects/acme%2Fflows/merge_requests/5/notes/{note['id']}"),
    ]
    assert all(r.headers["private-token"] == FORGE_TOKEN for r in forge.requests)
