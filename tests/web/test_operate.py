"""The PR workflow and the operator commands against a real `reconcile daemon`, through the CLI
as a user runs it: `reconcile plan --server --repository --ref`, `sync`, `suspend`, `resume`,
`rollback`; each user error says what to do and changes nothing in the store."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

import pytest

from tests.conftest import CliResult, GitRepo, store_dump
from tests.daemon.conftest import DaemonProcess, StartDaemon
from tests.e2e.helpers import PREFECT, TWO_DEPLOYMENTS, assert_refused, project
from tests.infra.git_servers import HttpGitServer, Remote
from tests.web.conftest import ADMIN, READ

pytestmark = pytest.mark.e2e
TOKENS = {"RECONCILER_API_READ_TOKEN": READ, "RECONCILER_API_ADMIN_TOKEN": ADMIN}
RunCli = Callable[..., CliResult]
Dump = dict[str, list[tuple[object, ...]]]


def _lasting(dump: Dump) -> Dump:
    """The store without what the daemon rewrites on its own (its status, its leases)."""
    return {t: rows for t, rows in dump.items() if t not in ("repo_status", "repo_leases")}


def _daemon(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon
) -> tuple[GitRepo, DaemonProcess, str]:
    repo = make_repo(project())
    daemon = start_daemon({"repositories": [{"name": "flows", "path": str(repo.path)}]}, env=TOKENS)
    first = repo.git("rev-parse", "HEAD")
    daemon.wait_for(lambda s: s.get("flows", {}).get("applied_commit") == first)
    return repo, daemon, first


def _on_branch(repo: GitRepo, branch: str, files: dict[str, str]) -> str:
    repo.git("checkout", "-q", "-b", branch)
    commit = repo.commit(files, f"on {branch}")
    repo.git("checkout", "-q", "main")
    return commit


def test_plan_of_a_branch_through_the_daemon_writes_nothing(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, run_cli: RunCli
) -> None:
    repo, daemon, _ = _daemon(make_repo, start_daemon)
    commit = _on_branch(repo, "feature", {"prefect.yaml": TWO_DEPLOYMENTS})
    time.sleep(0.5)  # the watcher's attempt for the new ref (nothing to apply on main)
    before = _lasting(store_dump(daemon.store_url))
    env = {"RECONCILER_TOKEN": READ}
    base = ("plan", "--server", daemon.url, "--repository", "flows", "--ref", "feature")

    text = run_cli(*base, env=env)
    assert text.code == 0, text.output
    assert '# deployment "ingest/hourly" will be created' in text.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in text.stdout

    markdown = run_cli(*base, "-o", "markdown", "--detailed-exitcode", env=env)
    assert markdown.code == 2, markdown.output
    assert "```diff" in markdown.stdout and "ingest/hourly" in markdown.stdout

    answer = json.loads(run_cli(*base, "-o", "json", env=env).stdout)
    assert answer["commit"] == commit and answer["has_changes"] is True
    assert answer["summary"] == {"add": 1, "change": 0, "destroy": 0}
    assert [c["key"] for c in answer["plan"]["changes"]] == ["ingest/hourly"]

    # A commit id plans too; main, as applied, has no changes.
    same = run_cli(*base[:-1], commit[:12], "--detailed-exitcode", env=env)
    assert same.code == 2, same.output
    main = run_cli(*base[:-1], "main", "--detailed-exitcode", env=env)
    assert main.code == 0 and "No changes." in main.stdout, main.output

    assert _lasting(store_dump(daemon.store_url)) == before
    assert daemon.statuses()["flows"]["applied_commit"] != commit


def test_plan_refusals_say_what_to_do_and_write_nothing(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, run_cli: RunCli
) -> None:
    repo, daemon, _ = _daemon(make_repo, start_daemon)
    _on_branch(repo, "broken", {"prefect.yaml": "deployments:\n  - name: x\n    entrypont: a:b\n"})
    time.sleep(0.5)
    before = _lasting(store_dump(daemon.store_url))
    env = {"RECONCILER_TOKEN": READ}
    url = daemon.url

    broken = run_cli("plan", "--server", url, "--repository", "flows", "--ref", "broken", env=env)
    assert_refused(
        broken, "prefect.yaml:2:5: error: deployment has no entrypoint", "cannot be applied"
    )
    markdown = run_cli(
        "plan",
        "--server",
        url,
        "--repository",
        "flows",
        "--ref",
        "broken",
        "-o",
        "markdown",
        env=env,
    )
    assert markdown.code == 1 and "nothing would be applied" in markdown.stdout

    assert_refused(
        run_cli("plan", "--server", url, "--repository", "flows", "--ref", "nope", env=env),
        "ref 'nope' does not exist in repository 'flows'",
        "push the branch first",
    )
    assert_refused(
        run_cli("plan", "--server", url, "--repository", "flow", "--ref", "main", env=env),
        "no repository 'flow'",
        "flows",
    )
    assert_refused(
        run_cli("plan", "--server", url, "--repository", "flows", "--ref", "--all", env=env),
        "is not a ref this daemon plans",
    )
    assert_refused(
        run_cli("plan", "--server", url, "--repository", "flows", "--ref", "main"),
        "needs a token",
        "RECONCILER_TOKEN",
    )
    assert_refused(run_cli("plan", "--server", url, "--ref", "main"), "needs --repository")
    assert_refused(run_cli("plan", "--repository", "flows"), "give --server", "--dry-run")
    assert _lasting(store_dump(daemon.store_url)) == before


def test_suspend_sync_rollback_resume(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, run_cli: RunCli
) -> None:
    repo, daemon, first = _daemon(make_repo, start_daemon)
    admin = {"RECONCILER_TOKEN": ADMIN}
    url = daemon.url
    second = repo.commit({"prefect.yaml": TWO_DEPLOYMENTS}, "add hourly")
    daemon.wait_for(lambda s: s["flows"]["applied_commit"] == second)

    done = run_cli("rollback", "flows", "--to", first[:10], "--server", url, env=admin)
    assert done.code == 0, done.output
    assert f"rollback of flows to {first[:12]} started" in done.stdout
    daemon.wait_for(lambda s: s["flows"]["applied_commit"] == first)
    listed = json.loads(
        run_cli("deployment", "ls", "--server", url, "-o", "json", env=admin).stdout
    )
    assert [d["key"] for d in listed] == ["ingest/nightly"]

    # Suspended by the rollback: a new commit waits, until resume.
    third = repo.commit({"prefect.yaml": TWO_DEPLOYMENTS + "# again\n"}, "third")
    time.sleep(1.5)
    assert daemon.statuses()["flows"]["applied_commit"] == first
    status = run_cli("status", "--store", daemon.store_url)
    assert "flows: automatic sync suspended" in status.stdout, status.output
    assert "repository.rollback" in status.stdout, status.output
    resumed = run_cli("resume", "flows", "--server", url, env=admin)
    assert resumed.code == 0 and "automatic sync of flows resumed" in resumed.stdout
    daemon.wait_for(lambda s: s["flows"]["applied_commit"] == third)

    # suspend through the store, sync now through the daemon.
    assert run_cli("suspend", "flows", "--store", daemon.store_url).code == 0
    again = run_cli("suspend", "flows", "--store", daemon.store_url)
    assert "was already suspended" in again.stdout
    fourth = repo.commit({"prefect.yaml": project()["prefect.yaml"]}, "fourth")
    time.sleep(1.5)
    assert daemon.statuses()["flows"]["applied_commit"] == third
    synced = run_cli("sync", "flows", "--server", url, env=admin)
    assert synced.code == 0 and "sync of flows started" in synced.stdout
    daemon.wait_for(lambda s: s["flows"]["applied_commit"] == fourth)

    audit = json.loads(
        daemon.request("GET", "/api/v1/audit-log", headers={"Authorization": f"Bearer {READ}"}).body
    )["entries"]
    assert [(e["action"], e["detail"]["outcome"]) for e in audit][:5] == [
        ("repository.sync", "started"),
        ("repository.suspend", "already so"),
        ("repository.suspend", "done"),
        ("repository.resume", "done"),
        ("repository.rollback", "started"),
    ]
    assert audit[1]["actor"].startswith("cli (")


def test_operator_refusals_change_nothing(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, run_cli: RunCli
) -> None:
    repo, daemon, first = _daemon(make_repo, start_daemon)
    url, store = daemon.url, daemon.store_url
    admin = {"RECONCILER_TOKEN": ADMIN}
    never = _on_branch(repo, "other", {"prefect.yaml": TWO_DEPLOYMENTS})
    time.sleep(0.5)
    before = _lasting(store_dump(store))
    without_audit = {t: r for t, r in before.items() if t != "audit_log"}

    assert_refused(
        run_cli("rollback", "flows", "--to", never, "--server", url, env=admin),
        f"commit {never} was never applied from repository 'flows'",
        "reconcile history",
    )
    assert_refused(
        run_cli("rollback", "flows", "--to", "999", "--server", url, env=admin),
        "no applied plan 999",
    )
    assert_refused(
        run_cli("rollback", "flows", "--to", "main", "--server", url, env=admin),
        "neither a commit id nor an applied plan id",
    )
    assert_refused(
        run_cli(
            "rollback", "flows", "--to", first, "--server", url, env={"RECONCILER_TOKEN": READ}
        ),
        "the read-only token cannot act",
    )
    assert_refused(run_cli("rollback", "flows", "--to", first, "--store", store), "give --server")
    assert_refused(run_cli("sync", "flows", "--store", store), "needs the daemon", "--server")
    assert_refused(run_cli("sync", "flows"), "give --server URL")
    assert_refused(
        run_cli("suspend", "flow", "--store", store), "no repository 'flow'", "did you mean"
    )
    assert_refused(
        run_cli("suspend", "flows", "--store", f"sqlite:///{repo.path.parent / 'none.db'}"),
        "there is no store at",
    )
    assert_refused(
        run_cli("resume", "flows", "--store", store, "--server", url), "exclude each other"
    )
    after = _lasting(store_dump(store))
    assert {t: r for t, r in after.items() if t != "audit_log"} == without_audit
    # The API's refusals are audited (as every action is); nothing else was written.
    added = [row for row in after["audit_log"] if row not in before["audit_log"]]
    assert len(added) == 3 and all("refused" in str(row) for row in added)
    assert not (repo.path.parent / "none.db").exists()


def test_plan_of_a_remote_branch_fetches_it_and_leaves_the_branch(
    git_http_server: HttpGitServer,
    make_remote: Callable[..., Remote],
    start_daemon: StartDaemon,
    run_cli: RunCli,
) -> None:
    remote = make_remote(git_http_server, project())
    daemon = start_daemon(
        {
            "repositories": [
                {
                    "name": "flows",
                    "url": remote.url,
                    "poll_interval": "1h",
                    "username": {"env": "GIT_USER"},
                    "password": {"env": "GIT_PASSWORD"},
                }
            ]
        },
        env={
            **TOKENS,
            "GIT_USER": git_http_server.username,
            "GIT_PASSWORD": git_http_server.password,
        },
    )
    main = remote.head()
    daemon.wait_for(lambda s: s.get("flows", {}).get("applied_commit") == main)
    # The deployment's line in its file, read from the daemon's cache of the remote.
    call = urllib.request.Request(
        f"{daemon.url}/api/v1/deployments/ingest/nightly",
        headers={"Authorization": f"Bearer {READ}"},
    )
    with urllib.request.urlopen(call, timeout=30) as answer:
        shown = json.loads(answer.read())
    assert shown["owner_file"].endswith(":prefect.yaml")
    assert shown["owner_line"] == PREFECT.splitlines().index("  - name: nightly") + 1
    pushed = remote.commit({"prefect.yaml": TWO_DEPLOYMENTS}, "add hourly", branch="pr-1")
    env = {"RECONCILER_TOKEN": READ}
    base = ("plan", "--server", daemon.url, "--repository", "flows", "-o", "json")

    answer = json.loads(run_cli(*base, "--ref", "pr-1", env=env).stdout)
    assert answer["commit"] == pushed and answer["summary"]["add"] == 1
    by_id = json.loads(run_cli(*base, "--ref", pushed, env=env).stdout)
    assert by_id["commit"] == pushed
    missing = run_cli(*base, "--ref", "pr-2", env=env)
    assert_refused(missing, "cannot fetch 'pr-2' from", "push the branch first")
    password = git_http_server.password
    assert password and password not in missing.output + daemon.log()
    # The watched branch did not move: nothing was applied, the status still says main.
    time.sleep(0.5)
    assert daemon.statuses()["flows"]["applied_commit"] == main
    assert daemon.statuses()["flows"]["fetched_commit"] == main


def test_the_daemon_keeps_an_override_and_heals_real_drift(
    make_repo: Callable[..., GitRepo], start_daemon: StartDaemon, run_cli: RunCli
) -> None:
    repo = make_repo(project({"prefect.yaml": TWO_DEPLOYMENTS}))
    daemon = start_daemon(
        {"repositories": [{"name": "flows", "path": str(repo.path)}], "drift_interval": "1s"},
        env=TOKENS,
    )
    first = repo.git("rev-parse", "HEAD")
    daemon.wait_for(lambda s: s.get("flows", {}).get("applied_commit") == first)
    paused = run_cli("deployment", "pause", "ingest/hourly", "--store", daemon.store_url)
    assert paused.code == 0, paused.output
    time.sleep(3.0)  # two or three drift checks with self-heal
    status = daemon.statuses()["flows"]
    assert status["state"] == "Synced" and "drift" not in (status["message"] or ""), status
    listed = json.loads(
        run_cli("deployment", "ls", "--store", daemon.store_url, "-o", "json").stdout
    )
    assert {d["key"]: d["spec"]["paused"] for d in listed} == {
        "ingest/hourly": True,
        "ingest/nightly": False,
    }
