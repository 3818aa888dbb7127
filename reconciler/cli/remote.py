"""`--server URL`: the read commands, `deployment run` and `flow-run cancel` through the web API
(reconciler/web) instead of the store, so an operator's laptop needs no store credentials
(CLI: HTTP client). The token comes from RECONCILER_TOKEN (never a flag: it would be in the
shell's history and the process list).

The API's JSON errors become the usual `error:` and `hint:` lines and exit 1.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import click

from reconciler.cli.output import DEPLOYMENT_COLUMNS, echo_json, echo_table, with_iso_times
from reconciler.core.errors import UserError
from reconciler.core.terminal_text import printable

TOKEN_VARIABLE = "RECONCILER_TOKEN"
TIMEOUT_SECONDS = 30.0
FOLLOW_POLL_SECONDS = 0.5

server_option = click.option(
    "--server",
    "server_url",
    metavar="URL",
    help="Use the web API at URL (a daemon's or `reconcile server`'s address; token from "
    "$RECONCILER_TOKEN) instead of the store.",
)


def refuse_both(store_url: str | None, server_url: str | None) -> None:
    if store_url and server_url:
        raise UserError(
            "--store and --server exclude each other",
            "read the store directly (--store) or through the API (--server), not both",
        )


class ApiClient:
    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UserError(
                f"--server {server_url!r} is not an http(s) URL",
                "for example --server http://127.0.0.1:8420",
            )
        self.base = server_url.rstrip("/") + "/api/v1"
        self.shown = f"{parts.scheme}://{parts.netloc}"
        self.token = os.environ.get(TOKEN_VARIABLE) or None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            raise self._refusal(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UserError(
                f"cannot reach {self.shown}: {reason}",
                "check --server (the daemon's or `reconcile server`'s address) and that it runs",
            ) from None

    def _refusal(self, error: urllib.error.HTTPError) -> UserError:
        try:
            body = json.loads(error.read())
        except ValueError:
            body = {}
        if not isinstance(body, dict) or "error" not in body:
            return UserError(
                f"{self.shown} answered {error.code} without an API error",
                "is --server the address of a reconciler daemon or `reconcile server`?",
            )
        hint = body.get("hint")
        if error.code == 401 and not self.token:
            hint = f"export {TOKEN_VARIABLE} with the server's read or admin token"
        return UserError(f"{self.shown}: {body['error']}", hint)

    def get(self, path: str, **params: Any) -> Any:
        query = urlencode(
            [(k, v) for k, v in params.items() if v is not None and not isinstance(v, list)]
            + [(k, item) for k, v in params.items() if isinstance(v, list) for item in v]
        )
        return self.call("GET", path + (f"?{query}" if query else ""))

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body)


def _when(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def deployment_ls(server_url: str, output: str) -> None:
    client = ApiClient(server_url)
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/deployments", limit=500, cursor=cursor)
        rows += page["deployments"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if output == "json":
        echo_json(rows)
        return

    def when(run: dict[str, Any] | None, with_state: bool) -> str:
        if not run:
            return "-"
        return f"{run['state']} {run['scheduled_at']}" if with_state else run["scheduled_at"]

    echo_table(
        DEPLOYMENT_COLUMNS,
        [
            [
                r["key"],
                f"{r['work_pool']}/{r['work_queue']}",
                "yes" if r["paused"] else "no",
                r["schedules"],
                when(r.get("last_run"), True),
                when(r.get("next_run"), False),
                f"{r['owner']['repo']}:{r['owner']['file']}" if r["owner"] else "(made by hand)",
                (r["source_commit"] or "")[:8],
            ]
            for r in rows
        ],
    )


def deployment_inspect(server_url: str, key: str) -> None:
    echo_json(ApiClient(server_url).get(f"/deployments/{quote(key)}"))


def status(server_url: str, output: str) -> None:
    records = ApiClient(server_url).get("/repositories")["repositories"]
    if output == "json":
        echo_json(records)
        return
    if not records:
        click.echo("No repositories: no daemon has run against this store.")
        return
    echo_table(
        ["repository", "state", "fetched", "applied", "last error", "next attempt", "auto sync"],
        [
            [
                r["name"],
                r.get("state"),
                (r.get("fetched_commit") or "-")[:12],
                (r.get("applied_commit") or "-")[:12],
                ((r.get("last_error") or "-").splitlines() or ["-"])[0][:60],
                r.get("next_attempt_at") or "-",
                "suspended" if r.get("sync_suspended") else "on",
            ]
            for r in records
        ],
    )


def history(server_url: str, plan_id: int | None, limit: int, output: str) -> None:
    client = ApiClient(server_url)
    if plan_id is not None:
        echo_json(client.get(f"/applies/{plan_id}")["plan"])
        return
    records = client.get("/applies", limit=limit)["applies"]
    if output == "json":
        echo_json(records)
        return
    echo_table(
        ["id", "applied at", "repositories", "add", "change", "destroy"],
        [
            [
                r["id"],
                r["applied_at"],
                ", ".join(
                    f"{s['repo']}@{(s.get('commit') or 'worktree')[:8]}" for s in r["sources"]
                ),
                r["summary"].get("add", 0),
                r["summary"].get("change", 0),
                r["summary"].get("destroy", 0),
            ]
            for r in records
        ],
    )


def list_runs(
    server_url: str,
    output: str,
    *,
    deployment: str | None,
    states: tuple[str, ...],
    limit: int,
    upcoming: int | None = 5,
) -> None:
    """As the store's listing (cli/runs.py `_list_runs`): past runs, most recent first, then
    the next `upcoming` scheduled ones, soonest first (None: all)."""
    client = ApiClient(server_url)
    now = time.time()

    def fetch(bound: str, most: int | None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while most is None or len(found) < most:
            page = client.get(
                "/flow-runs",
                deployment=deployment,
                state=list(states),
                limit=500 if most is None else min(500, most - len(found)),
                cursor=cursor,
                **{bound: now},
            )
            found += page["flow_runs"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return found

    past = fetch("scheduled_before", limit)
    later = list(reversed(fetch("scheduled_after", None)))  # the API lists newest first
    more = upcoming is not None and len(later) > upcoming
    runs = [*past, *(later if upcoming is None else later[:upcoming])]
    if output == "json":
        echo_json([with_iso_times(run) for run in runs])
    else:
        echo_table(
            ["id", "name", "deployment", "state", "scheduled", "by", "worker"],
            [
                [
                    r["id"],
                    r["name"],
                    r["deployment"],
                    r["state"],
                    _when(r["scheduled_time"]),
                    "schedule" if r["auto_scheduled"] else "hand",
                    r["worker"] or "-",
                ]
                for r in runs
            ],
        )
    if more:
        click.echo(
            f"(more runs are scheduled after these {upcoming}: --scheduled N or --all lists them)",
            err=True,
        )


def flow_run_inspect(server_url: str, run_id: str, output: str) -> None:
    client = ApiClient(server_url)
    run = client.get(f"/flow-runs/{quote(run_id)}")
    tasks = client.get(f"/flow-runs/{quote(run_id)}/task-runs")["task_runs"]
    if output == "json":
        echo_json({**with_iso_times(run), "task_runs": tasks})
        return
    click.echo(printable(f"{run['name']} ({run['id']})"))
    click.echo(f"  flow:       {run['flow_name']}")
    click.echo(f"  deployment: {run['deployment'] or '-'}")
    click.echo(f"  state:      {run['state']}")
    if run["state_message"]:
        click.echo(printable(f"  message:    {run['state_message'].splitlines()[0]}"))
    if tasks:
        click.echo("")
        from reconciler.cli.run_records import TASK_HEADERS

        echo_table(TASK_HEADERS, _task_rows(tasks))


def flow_run_logs(server_url: str, run_id: str, follow: bool, level: str | None) -> int:
    client = ApiClient(server_url)
    min_level = logging.getLevelName(level.upper()) if level else None
    seen = 0
    while True:
        run = client.get(f"/flow-runs/{quote(run_id)}")
        lines = client.get(f"/flow-runs/{quote(run_id)}/logs", after=seen, min_level=min_level)[
            "logs"
        ]
        for line in lines:
            seen = line["seq"]
            from reconciler.cli.run_records import log_line_text

            click.echo(log_line_text(line["at"], line["stream"], line["level"], line["line"]))
        if not follow or (
            run["state"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and not lines
        ):
            break
        time.sleep(FOLLOW_POLL_SECONDS)
    if not follow:
        return 0
    click.echo(printable(f"Flow run {run['name']!r} ended {run['state']}"))
    return 0 if run["state"] == "COMPLETED" else 1


def worker_ls(server_url: str, pool: str | None, output: str) -> None:
    workers = ApiClient(server_url).get("/workers")["workers"]
    rows = [
        {
            "pool": w["pool"],
            "name": w["name"],
            "status": "ONLINE" if w["online"] else "OFFLINE",
            "last_heartbeat": w["last_heartbeat"],
            "heartbeat_seconds": w["heartbeat_seconds"],
        }
        for w in workers
        if pool is None or w["pool"] == pool
    ]
    if output == "json":
        echo_json(rows)
        return
    echo_table(
        ["pool", "name", "status", "last heartbeat"],
        [[r["pool"], r["name"], r["status"], r["last_heartbeat"]] for r in rows],
    )


def deployment_run(
    server_url: str, key: str, parameters: dict[str, Any], job_variables: dict[str, Any]
) -> dict[str, Any]:
    run: dict[str, Any] = ApiClient(server_url).post(
        f"/deployments/{quote(key)}/runs",
        {"parameters": parameters, "job_variables": job_variables},
    )
    return run


def flow_run_cancel(server_url: str, run_id: str) -> None:
    done = ApiClient(server_url).post(f"/flow-runs/{quote(run_id)}/cancel")
    if done["state"] == "CANCELLING":
        click.echo(f"Flow run {done['flow_run']} is CANCELLING: its worker stops it.")
    else:
        click.echo(f"Flow run {done['flow_run']} is {done['state']}.")


def event_ls(
    server_url: str, event: str | None, resource: str | None, limit: int
) -> list[dict[str, Any]]:
    """The events the API lists, in `event ls -o json`'s shape (the caller renders them)."""
    answer = ApiClient(server_url).get("/events", limit=limit, event=event, resource=resource)
    found: list[dict[str, Any]] = answer["events"]
    return found


def _owner(resource: dict[str, Any]) -> str:
    owner = resource.get("owner")
    return f"{owner['repo']}:{owner['file']}" if owner else "(made by hand)"


def _resource(resource: dict[str, Any], kind: str) -> dict[str, Any]:
    """As `--output json` of the store's commands shows an object."""
    return {
        "kind": kind,
        "key": resource["key"],
        "owner": resource["owner"],
        "source_commit": resource["source_commit"],
        "content_hash": resource["content_hash"],
        "spec": resource["spec"],
    }


def work_pool_ls(server_url: str, output: str) -> None:
    from reconciler.pools.status import NOT_READY, PAUSED, READY

    pools = ApiClient(server_url).get("/work-pools")["work_pools"]
    rows = []
    for pool in pools:
        if pool["spec"].get("paused"):
            status = PAUSED
        else:
            status = READY if any(w["online"] for w in pool["workers"]) else NOT_READY
        rows.append({**_resource(pool, "work_pool"), "status": status})
    if output == "json":
        echo_json(rows)
        return
    echo_table(
        ["work pool", "type", "status", "concurrency", "queues", "owner"],
        [
            [
                pool["key"],
                pool["spec"]["type"],
                row["status"],
                pool["spec"].get("concurrency_limit") or "-",
                len(pool["queues"]),
                _owner(pool),
            ]
            for pool, row in zip(pools, rows, strict=True)
        ],
    )


def work_queue_ls(server_url: str, pool: str | None, output: str) -> None:
    client = ApiClient(server_url)
    pools = (
        [client.get(f"/work-pools/{quote(pool)}")]
        if pool
        else client.get("/work-pools")["work_pools"]
    )
    queues = [queue for p in pools for queue in p["queues"]]
    if output == "json":
        echo_json([_resource(q, "work_queue") for q in queues])
        return
    echo_table(
        ["pool", "queue", "priority", "paused", "concurrency", "owner"],
        [
            [
                q["spec"]["pool"],
                q["spec"]["name"],
                q["spec"]["priority"],
                "yes" if q["spec"].get("paused") else "no",
                q["spec"].get("concurrency_limit") or "-",
                _owner(q),
            ]
            for q in queues
        ],
    )


def variable_ls(server_url: str, output: str) -> None:
    found = {v["name"]: v["value"] for v in ApiClient(server_url).get("/variables")["variables"]}
    if output == "json":
        echo_json(found)
        return
    echo_table(["name", "value"], [[k, json.dumps(v)] for k, v in found.items()])


def task_run_ls(server_url: str, flow_run_id: str, output: str) -> None:
    tasks = ApiClient(server_url).get(f"/flow-runs/{quote(flow_run_id)}/task-runs")["task_runs"]
    if output == "json":
        echo_json(tasks)
        return
    from reconciler.cli.run_records import TASK_HEADERS

    echo_table(TASK_HEADERS, _task_rows(tasks))


def _task_rows(tasks: list[dict[str, Any]]) -> list[list[object]]:
    """As reconciler/cli/run_records.py's `task_row` shows a task run."""
    rows: list[list[object]] = []
    for t in tasks:
        state = t["state_type"] or "-"
        if t["state_name"] and t["state_name"].upper() != state:
            state += f" ({t['state_name']})"
        rows.append(
            [
                t["name"],
                state,
                t["start_time"] or "-",
                t["end_time"] or "-",
                max(t["run_count"] - 1, 0),
                "yes" if t["cache_hit"] else "no",
            ]
        )
    return rows
