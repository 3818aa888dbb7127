"""`make screenshots`: the dashboard's main pages, photographed in Debian's Chromium for the
README and docs/web.md (docs/images/web-*.png).

A small project is applied to a fresh SQLite store, a real worker runs a few flows (one
fails), a few actions are taken, and each page is saved as the admin sees it.

    .venv/bin/python -m tests.web.screenshots [--out docs/images]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from reconciler.store import open_store
from reconciler.web.auth import Tokens
from tests.conftest import GIT_ENV
from tests.e2e.helpers import new_repo
from tests.web.browser import ROOT, browser_missing, chromium, screenshot, serve_web, sign_in
from tests.web.conftest import ADMIN, PROJECT_FILES, READ, prepare_store

FLOWS = (
    PROJECT_FILES["flows/flows.py"]
    + """

def chatty(lines: int = 4, pause: float = 0.05) -> None:
    import time
    for number in range(1, lines + 1):
        print(f"loading batch {number} of {lines}", flush=True)
        time.sleep(pause)


def boom() -> None:
    raise RuntimeError("the source table is missing")
"""
)
PREFECT = PROJECT_FILES["prefect.yaml"] + (
    "  - {name: chatty, entrypoint: flows/flows.py:chatty, work_pool: {name: local}}\n"
    "  - {name: boom, entrypoint: flows/flows.py:boom, work_pool: {name: local}}\n"
)


def _post(base: str, path: str, body: object) -> dict[str, object]:
    call = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(call, timeout=30) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    options = parser.parse_args()
    missing = browser_missing()
    if missing:
        sys.exit(f"error: {missing}")
    out = Path(options.out)
    os.environ.update(GIT_ENV)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        root = Path(scratch)
        repo = new_repo(
            root / "data-project",
            {**PROJECT_FILES, "flows/flows.py": FLOWS, "prefect.yaml": PREFECT},
        )
        store_url = f"sqlite:///{root / 'state.db'}"
        prepare_store(store_url, repo)
        with serve_web(store_url, Tokens(read=READ, admin=ADMIN)) as server:
            made = _post(
                server.url,
                "/api/v1/flow-runs",
                {
                    "runs": [
                        {"deployment": "chatty/chatty", "parameters": {"lines": 6}},
                        {"deployment": "hello/hello", "parameters": {"name": "docs"}},
                        {"deployment": "boom/boom"},
                    ]
                },
            )
            assert made["created"] == 3, made
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "reconciler",
                    "worker",
                    "start",
                    "--pool",
                    "local",
                    "--store",
                    store_url,
                    "--run-once",
                    "--no-schedule",
                ],
                check=True,
                capture_output=True,
                cwd=root,
            )
            _post(
                server.url,
                "/api/v1/deployments/hello/hello/runs",
                {"scheduled_time": time.time() + 3600},
            )
            _post(server.url, "/api/v1/work-pools/manual/pause", {})
            store = open_store(store_url, readonly=True)
            try:
                chatty = store.list_runs(deployment="chatty/chatty")[0].id
            finally:
                store.close()
            with chromium() as driver:
                sign_in(driver, server.url, ADMIN)
                for name, path in (
                    ("overview", "/"),
                    ("repository", "/repositories/project"),
                    ("deployment", "/deployments/chatty/chatty"),
                    ("flow-run", f"/flow-runs/{chatty}"),
                    ("flow-runs", "/flow-runs"),
                    ("work-pools", "/work-pools"),
                    ("audit-log", "/audit-log"),
                ):
                    driver.get(server.url + path)
                    print(screenshot(driver, f"web-{name}", out))


if __name__ == "__main__":
    main()
