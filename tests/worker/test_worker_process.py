"""`reconcile worker start` on a process pool, against a real store and real subprocesses: how
each kind of run ends, what it records, and that the worker keeps going."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import urllib.request
from collections import Counter

import pytest

from reconciler.model.resources import Kind, Resource
from reconciler.model.runs import RunState
from reconciler.store import open_store
from tests.conftest import store_dump
from tests.e2e.helpers import apply_in_process
from tests.infra.git_servers import free_port
from tests.infra.worker_process import stop_worker
from tests.worker.conftest import PREFECT, Project

pytestmark = pytest.mark.e2e

FINAL = {RunState.COMPLETED, RunState.FAILED, RunState.CRASHED, RunState.CANCELLED}


def test_a_run_completes_with_its_parameters_logs_and_history(project: Project) -> None:
    run_id = project.run("hello/hello", "--param", "name=reconciler", "--param", "times=2")
    project.run_once()
    run = project.get(run_id)
    assert run.state is RunState.COMPLETED and run.exit_code == 0
    assert run.parameters == {"name": "reconciler", "times": 2}
    assert [c.state for c in run.history] == [
        RunState.SCHEDULED,
        RunState.PENDING,
        RunState.RUNNING,
        RunState.COMPLETED,
    ]
    assert run.infrastructure_id and run.infrastructure_id.startswith("pid ")
    logs = project.logs(run_id)
    assert logs.count("hello reconciler") == 2 and "to stderr" in logs
    shown = project.cli("flow-run", "logs", run_id[:8], "--store", project.store_url)
    # Everything on stdout, each line with its time and stream (a pipe sees all of it).
    lines = [line.split(maxsplit=2) for line in shown.stdout.splitlines()]
    assert [rest for _, stream, rest in lines if stream == "stdout"].count("hello reconciler")
    assert any(stream == "stderr" and "to stderr" in rest for _, stream, rest in lines)
    assert shown.stderr == ""


def test_a_flow_that_raises_fails_with_its_traceback(project: Project) -> None:
    run_id = project.run("boom/boom", "--param", "message=out of cheese")
    project.run_once()
    run = project.get(run_id)
    assert run.state is RunState.FAILED and run.exit_code == 1
    assert "exit code 1 (the flow raised an exception)" in (run.state_message or "")
    assert "RuntimeError: out of cheese" in (run.state_message or "")
    assert "about to fail" in project.logs(run_id)


def test_a_flow_that_cannot_be_imported_fails_saying_why(project: Project) -> None:
    run_id = project.run("flow/broken")
    project.run_once()
    run = project.get(run_id)
    assert run.state is RunState.FAILED and run.exit_code == 2
    assert "cannot load the flow" in (run.state_message or "")
    assert "not_a_module_anywhere" in (run.state_message or "")


def test_a_failing_pull_step_crashes_the_run_naming_where_it_was_written(
    project: Project,
) -> None:
    """The place comes from the store: the repository is gone when the worker runs."""
    written = PREFECT + (
        "  - name: unpullable\n"
        "    entrypoint: flows/flows.py:hello\n"
        "    work_pool: {name: local}\n"
        "    pull:\n"
        "      - prefect.deployments.steps.run_shell_script:\n"
        "          id: fetch\n"
        '          script: "false"\n'
    )
    line = written.splitlines().index("      - prefect.deployments.steps.run_shell_script:") + 1
    project.repo.commit({"prefect.yaml": written})
    apply_in_process(project.store_url, project.repo)
    run_id = project.run("hello/unpullable")
    project.repo.path.rename(project.tmp_path / "moved-away")
    project.run_once()
    run = project.get(run_id)
    assert run.state is RunState.CRASHED
    where = f"{project.repo.path / 'prefect.yaml'}:{line}:9"
    assert (run.state_message or "").startswith(
        f'pull steps failed: {where}: step "fetch" (run_shell_script) failed with exit code 1'
    )


def test_a_flow_killed_by_a_signal_fails_and_the_worker_goes_on(project: Project) -> None:
    killed = project.run("killed/killed")
    worker = project.worker("--poll-interval", "0.05")
    try:
        run = project.wait_state(killed, FINAL)
        assert run.state is RunState.FAILED and run.exit_code == -signal.SIGKILL
        assert "killed (SIGKILL)" in (run.state_message or "")
        after = project.run("hello/hello")
        assert project.wait_state(after, FINAL).state is RunState.COMPLETED
    finally:
        assert stop_worker(worker) == 0


def test_job_variables_reach_the_process_and_a_run_can_override_them(project: Project) -> None:
    from_deployment = project.run("show-env/env")
    overridden = project.run("show-env/env", "--job-variable", 'env={"GREETING": "from-the-run"}')
    project.run_once()
    assert "GREETING=from-the-deployment" in project.logs(from_deployment)
    assert "GREETING=from-the-run" in project.logs(overridden)


def test_bad_parameters_and_job_variables_are_refused_and_create_nothing(
    project: Project,
) -> None:
    before = store_dump(project.store_url)
    cases = [
        (("--param", "nmae=x"), 'did you mean "name"'),
        (("--param", "times=many"), "parameter times: must be an integer (got 'many')"),
        (("--params", "[1]"), "--params must be a JSON object"),
        (("--params", "{nope"), "--params is not valid JSON"),
        (("--job-variable", "stream_output=sometimes"), "job variable stream_output"),
        (("--param", "noequals"), "is not NAME=VALUE"),
    ]
    for args, message in cases:
        done = project.cli("deployment", "run", "hello/hello", "--store", project.store_url, *args)
        assert done.code == 1, done.output
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    missing = project.cli("deployment", "run", "hello/helo", "--store", project.store_url)
    assert missing.code == 1 and 'did you mean "hello/hello"' in missing.stderr
    assert store_dump(project.store_url) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--param", "when=notadate"), "parameter when: 'notadate' is not a date (YYYY-MM-DD)"),
        (("--param", "when=2024-02-30"), "parameter when: '2024-02-30' is not a date"),
        (("--params", '{"config": {"retries": "x"}}'), "parameter config.retries: must be an"),
        (("--param", 'config={"retries": 1.5}'), "parameter config.retries: must be an integer"),
        (("--param", "ratio=2"), "parameter ratio: must be <= 1 (got 2)"),
        (("--param", "ratio=-0.1"), "parameter ratio: must be >= 0"),
        (("--param", "mode=medium"), "parameter mode: must be one of 'fast', 'slow'"),
        (("--param", "ratio=Infinity"), "--param ratio: Infinity is not a finite number"),
        (("--param", "ratio=NaN"), "--param ratio: NaN is not a finite number"),
        (("--param", "ratio=-1e999"), "is not a finite number and cannot be stored as JSON"),
        (("--params", '{"ratio": NaN}'), "--params: NaN is not a finite number"),
        (("--params", '{"anything": {"x": [Infinity]}}'), "--params: Infinity is not a finite"),
        (("--params", '{"anything": ' + "[" * 1000 + "]" * 1000 + "}"), "nested more than 64"),
        (("--params", '{"anything": ' + "[" * 64 + "]" * 64 + "}"), "nested more than 64"),
        (("--param", "anything=" + '{"a":' * 100 + "1" + "}" * 100), "nested more than 64"),
        # a JSON escape of half a surrogate pair decodes to text no store can encode
        (("--params", '{"anything": "\\ud800"}'), "--params: the text holds \\ud800, which is not"),
        (("--params", '{"\\udfff": 1}'), "the text holds \\udfff"),
        (("--param", 'anything=["ok", "\\ud83d"]'), "--param anything: the text holds \\ud83d"),
    ],
)
def test_values_that_break_the_flows_types_are_refused_before_a_run_exists(
    project: Project, args: tuple[str, ...], message: str
) -> None:
    before = store_dump(project.store_url)
    done = project.cli("deployment", "run", "typed/typed", "--store", project.store_url, *args)
    assert done.code == 1, done.output
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert store_dump(project.store_url) == before


def test_values_that_fit_the_flows_types_are_accepted_as_given(project: Project) -> None:
    run_id = project.run(
        "typed/typed",
        "--param",
        "when=2024-05-17",
        "--param",
        "ratio=1",
        "--param",
        'config={"retries": 5}',
        "--params",
        '{"anything": ' + '{"a": ' * 62 + "1" + "}" * 62 + "}",  # 64 levels: the limit
    )
    parameters = project.get(run_id).parameters
    assert parameters["when"] == "2024-05-17"  # a date stays the text the flow converts
    assert parameters["ratio"] == 1 and parameters["config"] == {"retries": 5}
    quoted = project.run("typed/typed", "--param", 'mode="fast"', "--param", 'when="2024-05-17"')
    assert project.get(quoted).parameters["mode"] == "fast"


def test_cancel_stops_a_running_flow(project: Project) -> None:
    run_id = project.run("sleepy/sleepy")
    worker = project.worker("--poll-interval", "0.05", "--cancel-grace-seconds", "2")
    try:
        running = project.wait_state(run_id, {RunState.RUNNING})
        pid = int((running.infrastructure_id or "pid 0").split()[1])
        deadline = time.monotonic() + 10
        while "sleeping" not in project.logs(run_id):
            assert time.monotonic() < deadline, "the flow never started"
            time.sleep(0.05)
        done = project.cli("flow-run", "cancel", run_id, "--store", project.store_url)
        assert done.code == 0 and "CANCELLING" in done.stdout
        run = project.wait_state(run_id, FINAL, timeout=10)
        assert run.state is RunState.CANCELLED
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        assert stop_worker(worker) == 0
    again = project.cli("flow-run", "cancel", run_id, "--store", project.store_url)
    assert again.code == 1 and "already ended CANCELLED" in again.stderr


def test_a_scheduled_run_cancelled_before_a_worker_takes_it_never_runs(project: Project) -> None:
    run_id = project.run("hello/hello")
    assert project.cli("flow-run", "cancel", run_id, "--store", project.store_url).code == 0
    project.run_once()
    run = project.get(run_id)
    assert run.state is RunState.CANCELLED and run.worker is None
    assert project.logs(run_id) == []


def test_priority_first_then_time_and_the_pool_limit_holds(project: Project) -> None:
    later = project.run("hello/hello")
    urgent = project.run("hello/urgent-hello")
    project.run_once("--limit", "1")
    assert project.get(urgent).state is RunState.COMPLETED
    assert project.get(later).state is RunState.SCHEDULED

    limited = [project.run("sleepy/limited-sleepy", "--param", "seconds=0.3") for _ in range(3)]
    workers = [project.worker("--poll-interval", "0.02", pool="limited") for _ in range(2)]
    try:
        runs = [project.wait_state(run_id, FINAL) for run_id in limited]
    finally:
        for worker in workers:
            stop_worker(worker)
    spans = sorted(
        (
            next(c.at for c in run.history if c.state is RunState.PENDING),
            next(c.at for c in run.history if c.state.is_final),
        )
        for run in runs
    )
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert second_start >= first_end, "the pool's limit of 1 was exceeded"


def test_a_worker_killed_during_a_run_is_noticed_and_its_run_crashes(project: Project) -> None:
    run_id = project.run("sleepy/sleepy", "--param", "seconds=5")
    doomed = project.worker("--name", "doomed", "--heartbeat-seconds", "0.3")
    try:
        project.wait_state(run_id, {RunState.RUNNING})
        doomed.kill()
        doomed.wait()
        time.sleep(1.0)  # three missed heartbeats
        listed = project.cli("worker", "ls", "-o", "json", "--store", project.store_url)
        assert [(w["name"], w["status"]) for w in json.loads(listed.stdout)] == [
            ("doomed", "OFFLINE")
        ]
        watcher = project.worker("--name", "watcher", "--heartbeat-seconds", "0.3")
        run = project.wait_state(run_id, {RunState.CRASHED}, timeout=15)
        assert run.state_message == "worker doomed stopped heartbeating"
        stop_worker(watcher)
    finally:
        if doomed.poll() is None:
            doomed.kill()


def test_a_worker_restarted_under_its_name_crashes_what_it_left(project: Project) -> None:
    run_id = project.run("sleepy/sleepy", "--param", "seconds=5")
    first = project.worker("--name", "same")
    project.wait_state(run_id, {RunState.RUNNING})
    first.kill()
    first.wait()
    second = project.worker("--name", "same")
    try:
        run = project.wait_state(run_id, {RunState.CRASHED}, timeout=15)
        assert run.state_message == "worker same restarted while the run was in progress"
    finally:
        stop_worker(second)


def test_the_healthcheck_answers_while_the_worker_polls(project: Project) -> None:
    port = free_port()
    worker = project.worker("--with-healthcheck", "--healthcheck-listen", f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert (r.status, json.loads(r.read())) == (200, {"message": "OK"})
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        assert stop_worker(worker) == 0


def test_an_unknown_pool_is_refused_clearly(project: Project) -> None:
    worker = project.worker("--run-once", pool="nope")
    assert worker.wait(timeout=60) == 1
    log = (sorted(project.tmp_path.glob("worker-*.log"))[-1]).read_text()
    assert "work pool 'nope' does not exist (pools: limited, local)" in log


def test_a_pool_of_a_type_no_backend_runs_is_refused_clearly_and_nothing_changes(
    project: Project,
) -> None:
    # work-pools.yaml declares kubernetes pools (for Prefect's kubernetes worker, against a
    # Prefect server); applied to our store, no worker of ours runs them.
    body = {"name": "k8s", "type": "kubernetes", "paused": False, "concurrency_limit": None}
    store = open_store(project.store_url)
    try:
        with store.transaction() as tx:
            tx.put(Resource.of(Kind.WORK_POOL, "k8s", body, None))
    finally:
        store.close()
    before = store_dump(project.store_url)

    worker = project.worker("--run-once", pool="k8s")

    assert worker.wait(timeout=60) == 1
    log = (sorted(project.tmp_path.glob("worker-*.log"))[-1]).read_text()
    assert (
        "work pool 'k8s' is of type 'kubernetes', which no worker backend here runs "
        "(backends exist for: docker, process)"
    ) in log
    assert "Prefect's kubernetes worker (`prefect worker start --pool NAME --type kubernetes`)" in (
        " ".join(log.split())
    )
    assert "Traceback" not in log
    assert store_dump(project.store_url) == before


def test_a_work_dir_that_does_not_exist_yet_is_created_and_runs_complete(
    project: Project,
) -> None:
    # Found by the chaos soak (bench/soak): every run CRASHED with a FileNotFoundError.
    work_dir = project.tmp_path / "not" / "yet"
    run_id = project.run("hello/hello")
    project.run_once("--work-dir", str(work_dir))
    assert project.get(run_id).state is RunState.COMPLETED
    assert work_dir.is_dir()


def test_a_work_dir_that_cannot_be_created_is_refused_clearly(project: Project) -> None:
    blocker = project.tmp_path / "a-file"
    blocker.write_text("")
    run_id = project.run("hello/hello")
    worker = project.worker("--run-once", "--work-dir", str(blocker / "runs"))
    assert worker.wait(timeout=60) == 1
    log = (sorted(project.tmp_path.glob("worker-*.log"))[-1]).read_text()
    assert f"cannot create the work directory {blocker / 'runs'}" in log
    assert "Traceback" not in log
    assert project.get(run_id).state is RunState.SCHEDULED


def test_four_workers_and_500_runs_run_each_exactly_once(project: Project) -> None:
    store = open_store(project.store_url)
    try:
        from reconciler.worker.create_run import create_run

        ids = [create_run(store, "quick/quick", parameters={"n": i}).id for i in range(500)]
    finally:
        store.close()
    # Beats every 30 s: a store that stalls under load (SQLite's busy wait was seen to reach its
    # 60 s limit on a loaded machine) must not make live workers look dead; this test is about
    # claims, and dead workers have tests of their own.
    workers = [
        project.worker("--poll-interval", "0.05", "--limit", "8", "--heartbeat-seconds", "30")
        for _ in range(4)
    ]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            store = open_store(project.store_url, readonly=True)
            try:
                states = Counter(r.state for r in store.list_runs(limit=1000))
            finally:
                store.close()
            if sum(states[s] for s in FINAL) == 500:
                break
            time.sleep(0.5)
    finally:
        for worker in workers:
            assert stop_worker(worker) == 0
    store = open_store(project.store_url, readonly=True)
    try:
        runs = [store.get_run(run_id) for run_id in ids]
    finally:
        store.close()
    unfinished = [r for r in runs if r is None or r.state is not RunState.COMPLETED]
    assert not unfinished, (
        Counter(r.state if r else None for r in runs),
        [(r.state, r.state_message) for r in unfinished[:5] if r],
    )
    for run in runs:
        assert run is not None
        starts = [c for c in run.history if c.state is RunState.RUNNING]
        assert len(starts) == 1, f"run {run.id} started {len(starts)} times"
    assert len({run.worker for run in runs if run is not None}) >= 2


def test_a_pool_is_ready_while_a_worker_heartbeats(project: Project) -> None:
    def status() -> str:
        shown = project.cli("work-pool", "inspect", "local", "--store", project.store_url)
        return str(json.loads(shown.stdout)["status"])

    assert status() == "NOT_READY"
    worker = project.worker("--heartbeat-seconds", "0.5")
    try:
        deadline = time.monotonic() + 20
        while status() != "READY":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        listed = project.cli(
            "worker", "ls", "--pool", "local", "-o", "json", "--store", project.store_url
        )
        (shown,) = json.loads(listed.stdout)
        assert (shown["pool"], shown["status"]) == ("local", "ONLINE")
    finally:
        assert stop_worker(worker) == 0
    assert status() == "NOT_READY"  # a worker that stops says goodbye
