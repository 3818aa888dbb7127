"""The dashboard's pages and form actions (dashboard: HTTP -> service.py -> Jinja2 HTML).

    GET  /                          overview: repositories, pools and workers, runs by hour
    GET  /repositories/{name}       its applies with their plans as coloured diffs, drift
    POST /repositories/{name}/sync|suspend|resume
    GET  /deployments               paginated, with a search
    GET  /deployments/{key}         spec, owner, schema, schedules, runs timeline, run form
    POST /deployments/{key}/run     the run form
    GET  /flow-runs                 paginated, filtered by state
    GET  /flow-runs/{id}            state history, task runs timeline, live logs, cancel
    GET  /flow-runs/{id}/logs/stream   server-sent events for the live logs
    POST /flow-runs/{id}/cancel
    GET  /work-pools                pools, queues, workers; pause/resume hand-made ones
    POST /work-pools/{name}/pause|resume, /work-pools/{pool}/queues/{name}/pause|resume
    GET  /audit-log                 every action, who and when
    GET|POST /login, POST /logout   the token kept in a cookie
    GET  /static/...                CSS and JavaScript (package data; nothing from the network)

Access as auth.py says. A page that needs a token the browser has not given sends it to
/login. Every form carries the CSRF token; an action without the admin token or with a bad
CSRF token is refused with a page saying why, and nothing is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from reconciler import __version__
from reconciler.store.web_types import RunQuery
from reconciler.web.api.routes import Api
from reconciler.web.auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    TOKEN_COOKIE,
    Csrf,
    Role,
    Tokens,
    actor,
    bearer_token,
    require_admin,
)
from reconciler.web.dashboard import charts
from reconciler.web.dashboard.forms import fields_of, parameters_from_form
from reconciler.web.errors import WebError
from reconciler.web.run_requests import RunRequest
from reconciler.web.service import WebService, parse_cursor, run_json, states_of

PAGE_SIZE = 50
LOG_LINES_SHOWN = 2000
"""A run page shows its last 2,000 log lines (the API serves them all)."""
PAGE_HEADERS = {
    # Only this server's own files run or load: no inline script, nothing from elsewhere,
    # never inside another site's frame (no clickjacking of the forms).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
MAX_FORM_BYTES = 256 * 1024
STATE_CLASSES = {
    "Synced": "ok",
    "OutOfSync": "warn",
    "Progressing": "info",
    "Error": "bad",
    "Stalled": "bad",
}

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("reconciler.web.dashboard", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["q"] = lambda value: quote(str(value), safe="/")
_environment.filters["short"] = lambda value, n=12: (value or "-")[:n]
_environment.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True)
_environment.globals["STATE_CLASSES"] = STATE_CLASSES
_environment.globals["version"] = __version__


class _SignIn(Exception):
    """The page needs a token the browser has not given."""


class Dashboard:
    def __init__(self, service: WebService, tokens: Tokens, api: Api) -> None:
        self.service = service
        self.tokens = tokens
        self.api = api
        self.csrf = Csrf()

    # -- plumbing --------------------------------------------------------------------------

    def _role(self, request: Request) -> Role:
        """From the sign-in cookie, or for scripts (and benchmarks) reading pages, a bearer
        token; forms take only the cookie, with their CSRF token."""
        try:
            token = bearer_token(request) or request.cookies.get(TOKEN_COOKIE)
            return self.tokens.role_of(token)
        except WebError:
            raise _SignIn() from None

    def _render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        nonce = request.cookies.get(CSRF_COOKIE) or Csrf.new_nonce()
        role = context.pop("role", Role.ANONYMOUS)
        html = _environment.get_template(template).render(
            request=request,
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf.token_for(nonce),
            role=role.name.lower(),
            can_act=role is Role.ADMIN,
            tokens_configured=self.tokens.any,
            notice=request.query_params.get("done"),
            **context,
        )
        response = HTMLResponse(html, status, headers=PAGE_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != nonce:
            response.set_cookie(
                CSRF_COOKIE,
                nonce,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    def page(
        self, build: Callable[[Request, Role], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            try:
                role = self._role(request)
                return await build(request, role)
            except _SignIn:
                return RedirectResponse(
                    "/login?" + urlencode({"next": request.url.path}), status_code=303
                )
            except WebError as error:
                return self._render(request, "error.html", error.status, error=error)

        return route

    def action(
        self, act: Callable[[Request, Role, dict[str, str]], Awaitable[str]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A form's POST: admin token, CSRF token, then `act`, which returns where to go."""

        async def route(request: Request) -> Response:
            role = Role.ANONYMOUS
            try:
                token = request.cookies.get(TOKEN_COOKIE)
                try:
                    role = self.tokens.role_of(token)
                except WebError:
                    if token:
                        raise WebError(
                            401,
                            "the token this browser gave is not valid here",
                            "sign in again (/login) with the admin token",
                        ) from None
                    raise WebError(
                        401,
                        "actions need the admin token, and this browser has given none",
                        "sign in (/login) with the admin token",
                    ) from None
                form = await self._form(request)
                self.csrf.check(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD))
                require_admin(role, self.tokens)
                target = await act(request, role, form)
                return RedirectResponse(target, status_code=303)
            except WebError as error:
                return self._render(request, "error.html", error.status, error=error, role=role)

        return route

    async def _form(self, request: Request) -> dict[str, str]:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise WebError(413, "the form is too large", "send less")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise WebError(413, "the form is too large", "send less")
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if body and kind != "application/x-www-form-urlencoded":
            raise WebError(415, f"a form was expected, not {kind}", "use the page's forms")
        # The pages' forms are URL-encoded (no files): the standard library reads them.
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return dict(pairs[:1000])

    async def _db(self, call: Callable[[], Any]) -> Any:
        return await run_in_threadpool(call)

    def _who(self, request: Request, role: Role) -> str:
        return actor(role, request, "dashboard")

    # -- sign in ---------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        next_page = _safe_next(request.query_params.get("next"))
        return self._render(request, "login.html", next_page=next_page, problem=None)

    async def login_submit(self, request: Request) -> Response:
        form = await self._form(request)
        next_page = _safe_next(form.get("next"))
        try:
            self.csrf.check(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD))
            token = form.get("token", "").strip()
            if not token:
                raise WebError(400, "no token given", "paste the read or admin token")
            role = self.tokens.role_of(token)
        except WebError as error:
            return self._render(
                request, "login.html", error.status, next_page=next_page, problem=error
            )
        response = RedirectResponse(next_page, status_code=303)
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        del role
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE)
        return response

    # -- pages -----------------------------------------------------------------------------

    async def overview(self, request: Request, role: Role) -> Response:
        def read() -> dict[str, Any]:
            return {
                "repositories": self.service.repositories(),
                "pools": self.service.work_pools(),
                "hours": self.service.runs_by_hour()["hours"],
                "audit": self.service.audit(8, None),
            }

        data = await self._db(read)
        totals: dict[str, int] = {}
        for hour in data["hours"]:
            for state, count in hour["states"].items():
                totals[state] = totals.get(state, 0) + count
        return self._render(
            request,
            "overview.html",
            role=role,
            chart=charts.runs_by_hour(data["hours"]),
            totals=dict(sorted(totals.items())),
            **data,
        )

    async def repository(self, request: Request, role: Role) -> Response:
        name = request.path_params["name"]

        def read() -> dict[str, Any]:
            repo = self.service.repository(name, applies=10)
            plans = [self.service.applied_plan(a["id"]) for a in repo["applies"][:5]]
            return {"repo": repo, "plans": plans}

        data = await self._db(read)
        return self._render(request, "repository.html", role=role, **data)

    async def deployments(self, request: Request, role: Role) -> Response:
        after = request.query_params.get("cursor") or None
        search = request.query_params.get("search") or None
        page = await self._db(
            lambda: self.service.deployments(after=after, limit=PAGE_SIZE, search=search)
        )
        return self._render(request, "deployments.html", role=role, page=page, search=search)

    async def deployment(self, request: Request, role: Role) -> Response:
        key = request.path_params["key"]

        def read() -> dict[str, Any]:
            detail = self.service.deployment(key)
            runs = self.service.runs(RunQuery(deployment=key, limit=PAGE_SIZE))
            return {"deployment": detail, "runs": runs["flow_runs"]}

        data = await self._db(read)
        detail = data["deployment"]
        fields = fields_of(detail["parameter_schema"], detail["spec"].get("parameters") or {})
        return self._render(
            request,
            "deployment.html",
            role=role,
            fields=fields,
            timeline=charts.timeline(charts.run_marks(data["runs"]), rows=False),
            **data,
        )

    async def runs(self, request: Request, role: Role) -> Response:
        params = request.query_params
        states = states_of(params.getlist("state"))
        since, until = (params.get("since") or "", params.get("until") or "")
        query = RunQuery(
            deployment=params.get("deployment") or None,
            states=states,
            scheduled_after=_utc_seconds(since, "from"),
            scheduled_before=_utc_seconds(until, "until"),
            after=parse_cursor(params["cursor"]) if params.get("cursor") else None,
            limit=PAGE_SIZE,
        )
        page = await self._db(lambda: self.service.runs(query))
        base = {k: v for k, v in params.multi_items() if k != "cursor"}
        return self._render(
            request,
            "runs.html",
            role=role,
            page=page,
            chosen=[s.value for s in states],
            since=since,
            until=until,
            deployment=query.deployment,
            next_query=urlencode([*base.items(), ("cursor", page["next_cursor"] or "")]),
        )

    async def run(self, request: Request, role: Role) -> Response:
        run_id = request.path_params["id"]

        def read() -> dict[str, Any]:
            run = self.service.run(run_id)
            logs = self.service.logs(run.id, 0, None)
            return {
                "run": run_json(run),
                "final": run.state.is_final,
                "tasks": self.service.task_runs(run.id),
                "logs": logs[-LOG_LINES_SHOWN:],
                "earlier_lines": max(len(logs) - LOG_LINES_SHOWN, 0),
            }

        data = await self._db(read)
        return self._render(
            request,
            "run.html",
            role=role,
            task_chart=charts.timeline(charts.task_marks(data["tasks"]), rows=True),
            **data,
        )

    async def run_logs_stream(self, request: Request, role: Role) -> Response:
        run_id = request.path_params["id"]
        after = request.query_params.get("after", "0")
        start = int(after) if after.isdigit() else 0
        run = await self._db(lambda: self.service.run(run_id))
        return StreamingResponse(
            self.api.follow_logs(request, run.id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    async def pools(self, request: Request, role: Role) -> Response:
        pools = await self._db(self.service.work_pools)
        return self._render(request, "pools.html", role=role, pools=pools, now=time.time())

    async def audit(self, request: Request, role: Role) -> Response:
        before_text = request.query_params.get("before", "")
        before = int(before_text) if before_text.isdigit() else None
        entries = await self._db(lambda: self.service.audit(PAGE_SIZE, before))
        return self._render(request, "audit.html", role=role, entries=entries)

    async def events(self, request: Request, role: Role) -> Response:
        event = request.query_params.get("event") or None
        resource = request.query_params.get("resource") or None
        found = await self._db(lambda: self.service.events(event, resource, PAGE_SIZE * 2))
        return self._render(
            request, "events.html", role=role, events=found, event=event, resource=resource
        )

    # -- actions ---------------------------------------------------------------------------

    async def sync(self, request: Request, role: Role, form: dict[str, str]) -> str:
        name, who = request.path_params["name"], self._who(request, role)
        await self._db(lambda: self.service.sync(name, who))
        return f"/repositories/{quote(name)}?done=sync+started"

    async def suspend(self, request: Request, role: Role, form: dict[str, str]) -> str:
        return await self._suspend(request, role, True)

    async def resume(self, request: Request, role: Role, form: dict[str, str]) -> str:
        return await self._suspend(request, role, False)

    async def _suspend(self, request: Request, role: Role, suspended: bool) -> str:
        name, who = request.path_params["name"], self._who(request, role)
        await self._db(lambda: self.service.set_suspended(name, suspended, who))
        word = "suspended" if suspended else "resumed"
        return f"/repositories/{quote(name)}?done=automatic+sync+{word}"

    async def create_run(self, request: Request, role: Role, form: dict[str, str]) -> str:
        key, who = request.path_params["key"], self._who(request, role)

        def create() -> dict[str, Any]:
            detail = self.service.deployment(key)
            fields = fields_of(detail["parameter_schema"], detail["spec"].get("parameters") or {})
            parameters = parameters_from_form(fields, form)
            return self.service.create_runs([RunRequest(key, parameters)], who)

        made = await self._db(create)
        return f"/flow-runs/{made['runs'][0]['id']}?done=run+created"

    async def cancel(self, request: Request, role: Role, form: dict[str, str]) -> str:
        run_id, who = request.path_params["id"], self._who(request, role)
        done = await self._db(lambda: self.service.cancel(run_id, who))
        return f"/flow-runs/{quote(run_id)}?done=cancel:+{done['state']}"

    async def pool_action(self, request: Request, role: Role, form: dict[str, str]) -> str:
        name, verb = request.path_params["name"], request.path_params["verb"]
        if verb not in ("pause", "resume"):
            raise WebError(404, f"no action {verb!r}", "use pause or resume")
        who = self._who(request, role)
        await self._db(lambda: self.service.pause_pool(name, verb == "pause", who))
        return f"/work-pools?done={quote(name)}+{verb}d"

    async def queue_action(self, request: Request, role: Role, form: dict[str, str]) -> str:
        pool, name = request.path_params["pool"], request.path_params["name"]
        verb = request.path_params["verb"]
        if verb not in ("pause", "resume"):
            raise WebError(404, f"no action {verb!r}", "use pause or resume")
        who = self._who(request, role)
        await self._db(lambda: self.service.pause_queue(pool, name, verb == "pause", who))
        return f"/work-pools?done={quote(pool)}/{quote(name)}+{verb}d"


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no //host, no scheme): where to go after signing in."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def dashboard_routes(service: WebService, tokens: Tokens, api: Api) -> list[BaseRoute]:
    board = Dashboard(service, tokens, api)
    page, action = board.page, board.action
    return [
        Route("/", page(board.overview), methods=["GET"]),
        Route("/login", board.login, methods=["GET"]),
        Route("/login", board.login_submit, methods=["POST"]),
        Route("/logout", board.logout, methods=["POST"]),
        Route("/repositories/{name}", page(board.repository), methods=["GET"]),
        Route("/repositories/{name}/sync", action(board.sync), methods=["POST"]),
        Route("/repositories/{name}/suspend", action(board.suspend), methods=["POST"]),
        Route("/repositories/{name}/resume", action(board.resume), methods=["POST"]),
        Route("/deployments", page(board.deployments), methods=["GET"]),
        Route("/deployments/{key:path}/run", action(board.create_run), methods=["POST"]),
        Route("/deployments/{key:path}", page(board.deployment), methods=["GET"]),
        Route("/flow-runs", page(board.runs), methods=["GET"]),
        Route("/flow-runs/{id}/logs/stream", page(board.run_logs_stream), methods=["GET"]),
        Route("/flow-runs/{id}/cancel", action(board.cancel), methods=["POST"]),
        Route("/flow-runs/{id}", page(board.run), methods=["GET"]),
        Route("/work-pools", page(board.pools), methods=["GET"]),
        Route("/work-pools/{name}/{verb}", action(board.pool_action), methods=["POST"]),
        Route(
            "/work-pools/{pool}/queues/{name}/{verb}",
            action(board.queue_action),
            methods=["POST"],
        ),
        Route("/audit-log", page(board.audit), methods=["GET"]),
        Route("/events", page(board.events), methods=["GET"]),
        Mount(
            "/static",
            app=StaticFiles(packages=[("reconciler.web.dashboard", "static")]),
            name="static",
        ),
    ]


def _utc_seconds(text: str, field: str) -> float | None:
    """A time of the run list's filter (`2026-12-07T14:30`, as a datetime-local input sends
    it; read as UTC unless it names its zone) in seconds since the epoch; '' is no bound."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise WebError(
            400, f"{field}: not a date and time: {text!r}", "write it as 2026-12-07T14:30 (UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
