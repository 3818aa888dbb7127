"""The dashboard in a real browser (Debian's Chromium, headless, through Selenium): the
overview follows a repository to Synced after a commit, a deployment's run form creates a
run that a real worker completes while its page shows the logs arriving live, and an action
without the admin token is refused with nothing written. Screenshots of the pages are
saved (test-artifacts/screenshots, or $WEB_SCREENSHOTS_DIR)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.web.auth import Tokens
from tests.conftest import GIT_ENV, GitRepo, store_dump
from tests.daemon.conftest import StartDaemon
from tests.e2e.helpers import TWO_DEPLOYMENTS, project
from tests.web.browser import browser_missing, chromium, screenshot, serve_web, sign_in, wait_until
from tests.web.conftest import ADMIN, PROJECT_FILES, READ, prepare_store

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

SLOW_FLOWS = (
    PROJECT_FILES["flows/flows.py"]
    + """

def chatty(lines: int = 4, pause: float = 0.8) -> None:
    import time
    for number in range(1, lines + 1):
        print(f"line {number} of {lines}", flush=True)
        time.sleep(pause)
"""
)
CHATTY = PROJECT_FILES["prefect.yaml"] + (
    "  - {name: chatty, entrypoint: flows/flows.py:chatty, work_pool: {name: local}}\n"
)


def test_overview_shows_a_repository_turning_synced(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> None:
    repo = make_repo(project({"prefect.yaml": "deployments: [{name: x, entrypoint: 3}]\n"}))
    daemon = start_daemon(
        {"repositories": [{"name": "flows", "path": str(repo.path)}]},
        env={"RECONCILER_API_READ_TOKEN": READ, "RECONCILER_API_ADMIN_TOKEN": ADMIN},
    )
    daemon.wait_for(lambda s: s.get("flows", {}).get("state") == "Stalled")
    with chromium() as driver:
        sign_in(driver, daemon.url, READ)
        driver.get(daemon.url + "/")
        assert _repo_state(driver) == "Stalled"
        driver.execute_script("window.notReloaded = true")
        commit = repo.commit({"prefect.yaml": TWO_DEPLOYMENTS}, "fix the file")
        wait_until(driver, lambda d: _repo_state(d) == "Synced")
        assert driver.execute_script("return window.notReloaded") is True, "updated in place"
        row = driver.execute_script(
            "return document.querySelector('[data-repo=\"flows\"]').innerText"
        )
        assert commit[:12] in row
        screenshot(driver, "overview")
        driver.get(daemon.url + "/repositories/flows")
        assert "ingest/hourly" in driver.find_element("css selector", ".plan").text
        screenshot(driver, "repository")


def _repo_state(driver: object) -> str:
    """Read in one script: the overview's rows are swapped in place as it refreshes."""
    return str(
        driver.execute_script(  # type: ignore[attr-defined]
            "const b = document.querySelector('[data-repo=\"flows\"] [data-state]');"
            "return b ? b.dataset.state : null"
        )
    )


def test_run_form_creates_a_run_a_worker_completes_with_live_logs(
    make_repo: Callable[..., GitRepo], store_url: str, tmp_path: Path
) -> None:
    repo = make_repo({**PROJECT_FILES, "flows/flows.py": SLOW_FLOWS, "prefect.yaml": CHATTY})
    prepare_store(store_url, repo)
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
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
                "--poll-interval",
                "0.2",
                "--no-schedule",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **GIT_ENV},
            cwd=tmp_path,
        )
    try:
        with serve_web(store_url, Tokens(read=READ, admin=ADMIN)) as server, chromium() as d:
            sign_in(d, server.url, ADMIN)
            d.get(server.url + "/deployments/chatty/chatty")
            lines = d.find_element("name", "param.lines")
            lines.clear()
            lines.send_keys("5")
            screenshot(d, "deployment")
            d.find_element("id", "run-button").click()
            wait_until(d, lambda d: "/flow-runs/" in d.current_url)
            assert "run created" in d.find_element("id", "notice").text
            d.execute_script("window.notReloaded = true")
            wait_until(d, lambda d: "line 1 of 5" in d.find_element("id", "logs").text)
            still_running = "line 5 of 5" not in d.find_element("id", "logs").text
            assert still_running and d.execute_script("return window.notReloaded") is True, (
                "the first line arrived while the run still ran, without a reload"
            )
            wait_until(d, lambda d: "line 3 of 5" in d.find_element("id", "logs").text)
            screenshot(d, "flow-run")
            wait_until(
                d,
                lambda d: "COMPLETED" in d.find_element("id", "run-state").text,
                timeout=60,
            )
            assert "line 5 of 5" in d.find_element("id", "logs").text
            d.get(server.url + "/work-pools")
            screenshot(d, "work-pools")
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_an_action_without_the_admin_token_is_refused(
    make_repo: Callable[..., GitRepo], store_url: str
) -> None:
    prepare_store(store_url, make_repo(PROJECT_FILES))
    with serve_web(store_url, Tokens(read=READ, admin=ADMIN)) as server, chromium() as driver:
        sign_in(driver, server.url, READ)
        driver.get(server.url + "/deployments/typed/typed")
        before = store_dump(store_url)
        driver.find_element("id", "run-button").click()
        error = wait_until(driver, lambda d: d.find_elements("id", "error"))
        assert error
        text = driver.find_element("id", "error").text
        assert "read-only token cannot act" in text and "admin token" in text
        assert {k: v for k, v in store_dump(store_url).items() if k != "audit_log"} == {
            k: v for k, v in before.items() if k != "audit_log"
        }
        screenshot(driver, "refused")
