"""The plan of a pull request as one sticky comment (CI: daemon's plan -> PR comment).

Run by the GitHub Action of this repository (`action.yml`) and by the GitLab CI job of
docs/pull-requests.md. It asks the daemon for the plan of the pull request's ref
(`GET /api/v1/repositories/NAME/plan?ref=REF`, the daemon's read token) and keeps one comment
on the pull request up to date: the comment carrying `<!-- reconciler-plan:NAME -->` is
edited, or created when there is none. A refusal (an unknown ref, invalid files) is posted
too, and the exit code is 1; with changes it is 0 (or 2 with RECONCILER_DETAILED_EXITCODE=1).

Standard library only, and no import of the `reconciler` package: CI runs this file with
any Python 3.11+, without installing anything.

    python3 pr_comment.py github   # GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_EVENT_PATH
    python3 pr_comment.py gitlab   # GITLAB_TOKEN, CI_API_V4_URL, CI_PROJECT_ID,
                                   # CI_MERGE_REQUEST_IID

Both read RECONCILER_SERVER, RECONCILER_REPOSITORY, RECONCILER_REF and RECONCILER_TOKEN.
Tokens are sent as headers only, never printed.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

TIMEOUT_SECONDS = 120.0
MAX_COMMENT = 60_000
"""GitHub takes 65,536 characters in a comment; the rest of a huge plan is cut."""
PAGE = 100


class Failure(Exception):
    """A problem to report in one line (and in the comment, when there is a pull request)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


def call(method: str, url: str, headers: Mapping[str, str], body: Any = None) -> Answer:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in headers.items():
        request.add_header(name, value)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            raw = answer.read()
            return Answer(answer.status, json.loads(raw) if raw else None)
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Answer(error.code, parsed)
    except (urllib.error.URLError, OSError) as error:
        host = url.split("/")[2] if "://" in url else url
        raise Failure(f"cannot reach {host}: {getattr(error, 'reason', error)}") from None


def need(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise Failure(f"{name} is not set")
    return value


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRequest:
    server: str
    repository: str
    ref: str
    token: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PlanRequest:
        return cls(
            need(environ, "RECONCILER_SERVER").rstrip("/"),
            need(environ, "RECONCILER_REPOSITORY"),
            need(environ, "RECONCILER_REF"),
            environ.get("RECONCILER_TOKEN", ""),
        )

    def marker(self) -> str:
        return f"<!-- reconciler-plan:{self.repository} -->"


def fetch_plan(request: PlanRequest) -> dict[str, Any]:
    """The daemon's answer; raises Failure with the daemon's error and hint."""
    url = (
        f"{request.server}/api/v1/repositories/{quote(request.repository, safe='')}/plan?"
        + urlencode({"ref": request.ref})
    )
    headers = {"Accept": "application/json"}
    if request.token:
        headers["Authorization"] = f"Bearer {request.token}"
    answer = call("GET", url, headers)
    if answer.status != 200 or not isinstance(answer.body, dict):
        body = answer.body if isinstance(answer.body, dict) else {}
        text = body.get("error") or f"the daemon answered {answer.status}"
        hint = body.get("hint")
        raise Failure(f"{text}" + (f" (hint: {hint})" if hint else ""))
    return answer.body


def comment_body(request: PlanRequest, plan: dict[str, Any] | None, failure: str | None) -> str:
    head = f"{request.marker()}\n### reconciler plan: `{request.repository}`"
    if failure is not None:
        return f"{head}\n\n:x: The plan of `{request.ref}` could not be made: {failure}\n"
    assert plan is not None
    markdown = str(plan.get("markdown", ""))
    if len(markdown) > MAX_COMMENT:
        markdown = markdown[:MAX_COMMENT] + "\n\n... (cut: run `reconcile plan` for the rest)"
    commit = str(plan.get("commit", ""))[:12]
    return (
        f"{head}\n\n{markdown}\n\n"
        f"<sub>Planned at `{commit}` ({request.ref}) against the live store; nothing was "
        "applied.</sub>\n"
    )


# -- the comment ---------------------------------------------------------------------------


class GitHub:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.api = environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
        self.repository = need(environ, "GITHUB_REPOSITORY")
        self.headers = {
            "Authorization": f"Bearer {need(environ, 'GITHUB_TOKEN')}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        self.number = environ.get("RECONCILER_PR_NUMBER") or self._number(environ)

    @staticmethod
    def _number(environ: Mapping[str, str]) -> str:
        path = need(environ, "GITHUB_EVENT_PATH")
        try:
            with open(path, encoding="utf-8") as file:
                event = json.load(file)
            return str(event["pull_request"]["number"])
        except (OSError, ValueError, KeyError, TypeError):
            raise Failure(
                "this is not a pull request's event: run the action on `pull_request`, or set "
                "RECONCILER_PR_NUMBER"
            ) from None

    def find(self, marker: str) -> str | None:
        page = 1
        while True:
            url = f"{self.api}/repos/{self.repository}/issues/{self.number}/comments?" + urlencode(
                {"per_page": PAGE, "page": page}
            )
            answer = self._ok(call("GET", url, self.headers), "list the comments")
            for comment in answer:
                if marker in str(comment.get("body", "")):
                    return str(comment["id"])
            if len(answer) < PAGE:
                return None
            page += 1

    def post(self, body: str, existing: str | None) -> str:
        if existing is not None:
            url = f"{self.api}/repos/{self.repository}/issues/comments/{existing}"
            self._ok(call("PATCH", url, self.headers, {"body": body}), "edit the comment")
            return f"updated comment {existing}"
        url = f"{self.api}/repos/{self.repository}/issues/{self.number}/comments"
        made = self._ok(call("POST", url, self.headers, {"body": body}), "comment")
        return f"created comment {made.get('id')}"

    @staticmethod
    def _ok(answer: Answer, what: str) -> Any:
        if answer.status >= 300:
            message = answer.body.get("message") if isinstance(answer.body, dict) else None
            raise Failure(f"GitHub refused to {what}: {answer.status} {message or ''}".rstrip())
        return answer.body


class GitLab:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.api = need(environ, "CI_API_V4_URL").rstrip("/")
        project = quote(need(environ, "CI_PROJECT_ID"), safe="")
        self.notes = (
            f"{self.api}/projects/{project}/merge_requests/"
            f"{need(environ, 'CI_MERGE_REQUEST_IID')}/notes"
        )
        self.headers = {"PRIVATE-TOKEN": need(environ, "GITLAB_TOKEN")}

    def find(self, marker: str) -> str | None:
        page = 1
        while True:
            url = f"{self.notes}?" + urlencode({"per_page": PAGE, "page": page})
            answer = self._ok(call("GET", url, self.headers), "list the notes")
            for note in answer:
                if marker in str(note.get("body", "")):
                    return str(note["id"])
            if len(answer) < PAGE:
                return None
            page += 1

    def post(self, body: str, existing: str | None) -> str:
        if existing is not None:
            self._ok(
                call("PUT", f"{self.notes}/{existing}", self.headers, {"body": body}),
                "edit the note",
            )
            return f"updated note {existing}"
        made = self._ok(call("POST", self.notes, self.headers, {"body": body}), "add a note")
        return f"created note {made.get('id')}"

    @staticmethod
    def _ok(answer: Answer, what: str) -> Any:
        if answer.status >= 300:
            message = answer.body.get("message") if isinstance(answer.body, dict) else None
            raise Failure(f"GitLab refused to {what}: {answer.status} {message or ''}".rstrip())
        return answer.body


def run(forge_name: str, environ: Mapping[str, str]) -> int:
    request = PlanRequest.from_environ(environ)
    forge = GitHub(environ) if forge_name == "github" else GitLab(environ)
    plan: dict[str, Any] | None = None
    failure: str | None = None
    try:
        plan = fetch_plan(request)
    except Failure as exc:
        failure = str(exc)
        print(f"error: {failure}", file=sys.stderr)  # before posting, which may fail too
    done = forge.post(comment_body(request, plan, failure), forge.find(request.marker()))
    print(f"reconciler: {done}")
    if failure is not None:
        return 1
    assert plan is not None
    _set_output(environ, plan)
    for line in plan.get("errors") or []:
        print(line, file=sys.stderr)
    if not plan.get("valid", False):
        print(f"error: {request.repository} at {request.ref} cannot be applied", file=sys.stderr)
        return 1
    summary = plan.get("summary") or {}
    print(
        f"reconciler: plan of {request.ref}: {summary.get('add', 0)} to add, "
        f"{summary.get('change', 0)} to change, {summary.get('destroy', 0)} to destroy"
    )
    detailed = environ.get("RECONCILER_DETAILED_EXITCODE", "") in ("1", "true")
    return 2 if detailed and plan.get("has_changes") else 0


def _set_output(environ: Mapping[str, str], plan: dict[str, Any]) -> None:
    """The Action's outputs (`has-changes`, `commit`), when run by GitHub Actions."""
    path = environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as file:
        file.write(f"has-changes={'true' if plan.get('has_changes') else 'false'}\n")
        file.write(f"commit={plan.get('commit', '')}\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ("github", "gitlab"):
        print("usage: pr_comment.py github|gitlab", file=sys.stderr)
        return 1
    try:
        return run(args[0], os.environ)
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
