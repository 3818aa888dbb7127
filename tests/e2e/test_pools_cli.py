"""Work pools and queues by hand (`reconcile work-pool ...`, `reconcile work-queue ...`), end to
end through the CLI: the same shape as reconciled ones, Prefect's priority rules, refusals that
name the owning file and leave the store untouched, and reconciles that never prune them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.resources import Kind, Resource
from reconciler.prefect_rules.job_templates import default_base_job_template
from reconciler.store import open_store
from tests.conftest import GIT_ENV, CliResult, GitRepo
from tests.e2e.helpers import FLOW, Dump, apply_in_process, assert_refused, new_repo, run_many

pytestmark = pytest.mark.e2e

Run = Callable[..., CliResult]

OWNED_POOLS = """\
work_pools:
  - name: etl
    type: process
    queues:
      - {name: critical, priority: 1}
"""

# `nightly` runs on the hand-made docker pool `manual`, queue `fast` (made by hand too);
# `hourly` names a queue `auto` that nobody made, so the reconcile creates it, owned by this file.
ON_HAND_MADE = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool:
      name: manual
      work_queue_name: fast
      job_variables: {image: "registry.local/flows:1", env: {LOG_LEVEL: INFO}}
  - name: hourly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: manual, work_queue_name: auto}
  - name: owned
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl, work_queue_name: critical}
"""


def cli(store_url: str, *args: str) -> None:
    """Setup through the real CLI, for module fixtures (which cannot use `run_cli`)."""
    env = {**os.environ, **GIT_ENV, "NO_COLOR": "1"}
    env.pop("RECONCILER_STORE", None)
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args, "--store", store_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def resources(store_url: str, kind: Kind) -> dict[str, Resource]:
    store = open_store(store_url, readonly=True)
    try:
        return {r.key: r for r in store.list_resources(kind)}
    finally:
        store.close()


def spec(store_url: str, kind: Kind, key: str) -> dict[str, Any]:
    return resources(store_url, kind)[key].spec


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    return result


def table(result: CliResult) -> list[list[str]]:
    return [line.split() for line in ok(result).stdout.splitlines()]


def write_json(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value) if not isinstance(value, str) else value)
    return str(path)


# --- a store with hand-made and owned objects, shared by the tests that only read or are refused


@dataclass
class Mixed:
    store_url: str
    repo: Path
    files: Path

    def run(self, run_cli: Run, *args: str) -> CliResult:
        return run_cli(*args, "--store", self.store_url)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mixed]:
    root = tmp_path_factory.mktemp("pools")
    store_url = f"sqlite:///{root / 'state.db'}"
    cli(store_url, "work-pool", "create", "manual", "--type", "docker")
    cli(store_url, "work-queue", "create", "fast", "--pool", "manual")
    repo = new_repo(
        root / "flows",
        {"flows/etl.py": FLOW, "work-pools.yaml": OWNED_POOLS, "prefect.yaml": ON_HAND_MADE},
    )
    apply_in_process(store_url, repo)
    files = root / "files"
    files.mkdir()
    yield Mixed(store_url, repo.path, files)


def test_the_mixed_store_is_what_the_tests_below_expect(mixed: Mixed) -> None:
    queues = resources(mixed.store_url, Kind.WORK_QUEUE)
    assert {k: (q.spec["priority"], q.owner is None) for k, q in queues.items()} == {
        "etl/critical": (1, False),
        "etl/default": (2, False),
        "manual/default": (1, True),
        "manual/fast": (2, True),
        "manual/auto": (3, False),  # created by the reconcile for `hourly`
    }


def _refusals(m: Mixed) -> list[tuple[list[str], list[str]]]:
    """(command, texts the output must contain) for every refusal on the mixed store."""
    repo = str(m.repo)
    owned = f"belongs to {repo} (work-pools.yaml); it is managed by git"
    git = "git is the source of truth"
    bad_json = write_json(m.files / "bad.json", '{"job_configuration": ')
    a_list = write_json(m.files / "list.json", [1, 2])
    undeclared = default_base_job_template("process")
    undeclared["job_configuration"]["image"] = "{{ image }}"
    undeclared_file = write_json(m.files / "undeclared.json", undeclared)
    breaking = default_base_job_template("docker")
    breaking["variables"]["properties"]["image"] = {"type": "integer"}
    breaking_file = write_json(m.files / "breaking.json", breaking)
    return [
        # create
        (
            ["work-pool", "create", "manual", "--type", "process"],
            [
                'work pool "manual" already exists (it was made by hand)',
                "`reconcile work-pool update manual`",
            ],
        ),
        (
            ["work-pool", "create", "etl", "--type", "process"],
            [f'work pool "etl" already exists (it belongs to {repo}:work-pools.yaml)'],
        ),
        (["work-pool", "create", "a/b", "--type", "process"], ["cannot contain / % & > <"]),
        (["work-pool", "create", "x", "--type", "ecs"], ["Invalid value for '--type'"]),
        (["work-pool", "create", "x"], ["Missing option '--type'"]),
        (
            ["work-pool", "create", "x", "--type", "process", "--base-job-template", "/nope.json"],
            ["cannot read --base-job-template /nope.json"],
        ),
        (
            ["work-pool", "create", "x", "--type", "process", "--base-job-template", bad_json],
            [f"--base-job-template {bad_json} is not valid JSON", "at line 1, column 23"],
        ),
        (
            ["work-pool", "create", "x", "--type", "process", "--base-job-template", a_list],
            ["must hold a JSON object, not list"],
        ),
        (
            ["work-pool", "create", "x", "-t", "process", "--base-job-template", undeclared_file],
            [
                f"--base-job-template {undeclared_file} is not valid",
                '`job_configuration` uses undeclared variable(s): "image"',
            ],
        ),
        (
            ["work-pool", "create", "x", "-t", "docker", "--concurrency-limit", "-1"],
            ["Invalid value for '--concurrency-limit'"],
        ),
        (
            ["work-queue", "create", "q", "--pool", "nope"],
            ['work pool "nope" not found'],
        ),
        (
            ["work-queue", "create", "fast", "--pool", "manual"],
            ['work queue "fast" already exists in work pool "manual"'],
        ),
        (
            ["work-queue", "create", "q", "--pool", "etl"],
            [
                f'work pool "etl" belongs to {repo} (work-pools.yaml); its queues are declared',
                'add the queue under `queues:` of pool "etl" in work-pools.yaml',
            ],
        ),
        (
            ["work-queue", "create", "q", "--pool", "manual", "--priority", "3"],
            [
                'that priority would move work queue "manual/auto" from priority 3 to 4, but it '
                f"belongs to {repo}:prefect.yaml",
                "for example 4",
            ],
        ),
        (["work-queue", "create", "q", "--pool", "manual", "-q", "0"], ["Invalid value"]),
        # owned by the repository
        (["work-pool", "pause", "etl"], [f'work-pool "etl" {owned}', "cannot be paused", git]),
        (["work-pool", "resume", "etl"], [owned, "cannot be resumed"]),
        (["work-pool", "update", "etl", "--description", "x"], [owned, "cannot be changed"]),
        (["work-pool", "set-concurrency-limit", "etl", "3"], [owned, "change work-pools.yaml"]),
        (["work-pool", "clear-concurrency-limit", "etl"], [owned]),
        (["work-pool", "delete", "etl"], [owned, "remove it from work-pools.yaml in"]),
        (["work-queue", "pause", "critical", "--pool", "etl"], ['"etl/critical" ' + owned]),
        (["work-queue", "update", "etl/critical", "--priority", "3"], [owned]),
        (["work-queue", "set-concurrency-limit", "etl/critical", "1"], [owned]),
        (["work-queue", "delete", "critical", "-p", "etl"], [owned, "cannot be deleted"]),
        (
            ["work-queue", "resume", "auto", "--pool", "manual"],
            [
                f'work-queue "manual/auto" belongs to {repo} (prefect.yaml)',
                "it was created for the deployments of prefect.yaml",
            ],
        ),
        # used by reconciled deployments
        (
            ["work-pool", "delete", "manual"],
            [
                'work pool "manual" is used by deployments "ingest/hourly" '
                f'({repo}:prefect.yaml), "ingest/nightly" ({repo}:prefect.yaml)',
                "move those deployments to another pool in their files",
            ],
        ),
        (
            ["work-queue", "delete", "fast", "--pool", "manual"],
            ['work queue "manual/fast" is used by deployment "ingest/nightly"'],
        ),
        (
            ["work-queue", "delete", "manual/default"],
            ['the default queue of work pool "manual" cannot be deleted'],
        ),
        (
            ["work-pool", "update", "manual", "--base-job-template", breaking_file],
            [
                'does not fit the deployments that use work pool "manual": deployment '
                '"ingest/nightly": job_variables.image:'
            ],
        ),
        # addressing and usage
        (["work-pool", "update", "manual"], ["nothing to update", "--concurrency-limit"]),
        (["work-queue", "update", "fast"], ["nothing to update"]),
        (
            ["work-pool", "pause", "manuel"],
            ['work pool "manuel" not found', 'did you mean "manual"'],
        ),
        (["work-queue", "inspect", "default"], ["in several pools (etl, manual)", "--pool POOL"]),
        (["work-queue", "pause", "fastt", "--pool", "manual"], ['did you mean "fast"']),
        (["work-queue", "inspect", "etl/fast", "--pool", "manual"], ['--pool is "manual"']),
        (["work-queue", "ls", "--pool", "gpu"], ['work pool "gpu" not found']),
        (
            ["work-pool", "preview", "etl", "--deployment", "ingest/nightly"],
            ['runs on work pool "manual", not "etl"'],
        ),
    ]


def test_refusals_name_the_reason_and_change_nothing(
    mixed: Mixed, run_cli: Run, dump_store: Dump
) -> None:
    cases = _refusals(mixed)
    before = dump_store(mixed.store_url)
    with ThreadPoolExecutor(max_workers=4) as pool:  # each is a process: a few at a time
        results = list(pool.map(lambda args: mixed.run(run_cli, *args), [a for a, _ in cases]))
    failures = []
    for (args, expected), result in zip(cases, results, strict=True):
        try:
            assert_refused(result, *expected)
        except AssertionError as exc:
            failures.append(f"{' '.join(args)}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert dump_store(mixed.store_url) == before


def test_ls_and_inspect_show_hand_made_and_owned_objects(mixed: Mixed, run_cli: Run) -> None:
    pools, pools_json, queues, inspected, queue_json = run_many(
        run_cli,
        ["work-pool", "ls", "--store", mixed.store_url],
        ["work-pool", "ls", "-o", "json", "--store", mixed.store_url],
        ["work-queue", "ls", "--pool", "manual", "--store", mixed.store_url],
        ["work-pool", "inspect", "manual", "--store", mixed.store_url],
        ["work-queue", "inspect", "fast", "-o", "json", "--store", mixed.store_url],
    )
    repo = str(mixed.repo)
    assert table(pools) == [
        ["WORK", "POOL", "TYPE", "STATUS", "CONCURRENCY", "QUEUES", "OWNER"],
        ["etl", "process", "NOT_READY", "-", "2", f"{repo}:work-pools.yaml"],
        ["manual", "docker", "NOT_READY", "-", "3", "(made", "by", "hand)"],
    ]
    assert [(p["key"], p["owner"], p["status"]) for p in json.loads(ok(pools_json).stdout)] == [
        ("etl", {"repo": repo, "file": "work-pools.yaml"}, "NOT_READY"),
        ("manual", None, "NOT_READY"),
    ]
    assert table(queues) == [
        ["POOL", "QUEUE", "PRIORITY", "PAUSED", "CONCURRENCY", "OWNER"],
        ["manual", "auto", "3", "no", "-", f"{repo}:prefect.yaml"],
        ["manual", "default", "1", "no", "-", "(made", "by", "hand)"],
        ["manual", "fast", "2", "no", "-", "(made", "by", "hand)"],
    ]
    pool = json.loads(ok(inspected).stdout)
    assert (pool["owner"], pool["status"], pool["source_commit"]) == (None, "NOT_READY", None)
    assert pool["spec"]["base_job_template"] == default_base_job_template("docker")
    queue = json.loads(ok(queue_json).stdout)
    assert (queue["key"], queue["owner"], queue["spec"]["priority"]) == ("manual/fast", None, 2)


def test_preview_renders_the_job_configuration(mixed: Mixed, run_cli: Run) -> None:
    plain, for_deployment = run_many(
        run_cli,
        ["work-pool", "preview", "manual", "--job-configuration", "--store", mixed.store_url],
        [
            "work-pool",
            "preview",
            "manual",
            "--deployment",
            "ingest/nightly",
            "--store",
            mixed.store_url,
        ],
    )
    config = json.loads(ok(plain).stdout)["job_configuration"]
    assert config["stream_output"] is True and config["auto_remove"] is False
    assert "image" not in config  # no default and no value: the worker's default applies
    shown = json.loads(ok(for_deployment).stdout)
    assert shown["deployment"] == "ingest/nightly"
    assert shown["job_configuration"]["image"] == "registry.local/flows:1"
    assert shown["job_configuration"]["env"] == {"LOG_LEVEL": "INFO"}


# --- writes on a store of their own ---------------------------------------------------------------


def test_hand_made_pools_have_exactly_the_shape_of_reconciled_ones(
    make_repo: Callable[..., GitRepo], run_cli: Run, store_url: str
) -> None:
    repo = make_repo(
        {
            "work-pools.yaml": "work_pools:\n"
            "  - {name: rec-process, type: process}\n"
            "  - {name: rec-docker, type: docker, concurrency_limit: 2, paused: true}\n"
            "  - {name: rec-kubernetes, type: kubernetes}\n"
        }
    )
    apply_in_process(store_url, repo)
    store = ("--store", store_url)
    for result in run_many(
        run_cli,
        ["work-pool", "create", "hand-process", "--type", "process", *store],
        ["work-pool", "create", "hand-docker", "-t", "docker", "--concurrency-limit", "2",
         "--paused", *store],
        ["work-pool", "create", "hand-kubernetes", "--type", "kubernetes", *store],
    ):  # fmt: skip
        ok(result)
        if "hand-kubernetes" in result.stdout:  # said plainly: our worker does not run it
            assert result.stdout.splitlines() == [
                'Created work pool "hand-kubernetes" (kubernetes) with its queue "default"',
                "Note: reconciler's worker does not run kubernetes pools (process, docker): "
                "their runs wait for Prefect's kubernetes worker, which runs against a Prefect "
                "server (`--store prefect+http://HOST/api`)",
            ]
        else:
            assert "Note:" not in result.stdout
    pools = resources(store_url, Kind.WORK_POOL)
    queues = resources(store_url, Kind.WORK_QUEUE)
    assert pools["hand-kubernetes"].spec["base_job_template"] == default_base_job_template(
        "kubernetes"
    )
    for kind in ("process", "docker", "kubernetes"):
        hand, reconciled = pools[f"hand-{kind}"], pools[f"rec-{kind}"]
        assert hand.owner is None and reconciled.owner is not None
        assert {**hand.spec, "name": None} == {**reconciled.spec, "name": None}
        hand_queue, rec_queue = queues[f"hand-{kind}/default"], queues[f"rec-{kind}/default"]
        assert hand_queue.owner is None
        assert {**hand_queue.spec, "pool": None} == {**rec_queue.spec, "pool": None}
    assert sorted(queues) == [
        "hand-docker/default",
        "hand-kubernetes/default",
        "hand-process/default",
        "rec-docker/default",
        "rec-kubernetes/default",
        "rec-process/default",
    ]


def test_pause_resume_limits_and_update_of_a_hand_made_pool(
    run_cli: Run, store_url: str, tmp_path: Path, dump_store: Dump
) -> None:
    def run(*args: str) -> CliResult:
        return ok(run_cli(*args, "--store", store_url))

    def status() -> str:
        (pool,) = json.loads(run("work-pool", "ls", "-o", "json").stdout)
        return str(pool["status"])

    created = run("work-pool", "create", "etl", "--type", "process", "--description", "Local.")
    assert created.stdout == 'Created work pool "etl" (process) with its queue "default"\n'
    assert status() == "NOT_READY"

    assert run("work-pool", "pause", "etl").stdout == 'Updated work pool "etl": paused\n'
    assert status() == "PAUSED"
    before = dump_store(store_url)
    again = run("work-pool", "pause", "etl")
    assert again.stdout == 'Work pool "etl" is already paused; nothing changed\n'
    assert dump_store(store_url) == before  # not even the revision moved
    assert run("work-pool", "resume", "etl").stdout == 'Updated work pool "etl": resumed\n'
    assert status() == "NOT_READY"

    run("work-pool", "set-concurrency-limit", "etl", "5")
    assert spec(store_url, Kind.WORK_POOL, "etl")["concurrency_limit"] == 5
    cleared = run("work-pool", "clear-concurrency-limit", "etl")
    assert cleared.stdout == 'Updated work pool "etl": concurrency limit cleared\n'
    assert spec(store_url, Kind.WORK_POOL, "etl")["concurrency_limit"] is None

    template = default_base_job_template("process")
    template["variables"]["properties"]["working_dir"]["default"] = "/srv/flows"
    template_file = write_json(tmp_path / "template.json", template)
    updated = run(
        "work-pool", "update", "etl", "--description", "Shared.", "--concurrency-limit", "0",
        "--base-job-template", template_file,
    )  # fmt: skip
    assert updated.stdout == (
        'Updated work pool "etl": description "Shared.", concurrency limit 0, '
        "base job template replaced\n"
    )
    after = spec(store_url, Kind.WORK_POOL, "etl")
    assert (after["description"], after["concurrency_limit"]) == ("Shared.", 0)
    assert after["base_job_template"] == template
    preview = json.loads(run("work-pool", "preview", "etl", "--job-configuration").stdout)
    assert preview["job_configuration"]["working_dir"] == "/srv/flows"

    paused = run("work-pool", "create", "later", "-t", "docker", "--paused")
    assert paused.stdout == 'Created work pool "later" (docker) (paused) with its queue "default"\n'
    deleted = run("work-pool", "delete", "etl")
    assert deleted.stdout == 'Deleted work pool "etl" and its 1 queue\n'
    assert sorted(resources(store_url, Kind.WORK_QUEUE)) == ["later/default"]


def test_queues_take_priorities_as_prefect_gives_them(run_cli: Run, store_url: str) -> None:
    def run(*args: str) -> str:
        return ok(run_cli(*args, "--store", store_url)).stdout.strip()

    def priorities() -> dict[str, int]:
        listed = json.loads(run("work-queue", "ls", "--pool", "etl", "-o", "json"))
        return {q["spec"]["name"]: q["spec"]["priority"] for q in listed}

    run("work-pool", "create", "etl", "--type", "process")
    assert run("work-queue", "create", "bulk", "--pool", "etl", "--limit", "2") == (
        'Created work queue "bulk" in work pool "etl" with priority 2'
    )
    assert run("work-queue", "create", "late", "--pool", "etl", "--priority", "7") == (
        'Created work queue "late" in work pool "etl" with priority 7'
    )
    # taken: the queues in the way move down, the others keep their numbers
    assert run("work-queue", "create", "urgent", "-p", "etl", "-q", "1", "-l", "1") == (
        'Created work queue "urgent" in work pool "etl" with priority 1; moved "default" to 2, '
        '"bulk" to 3'
    )
    assert priorities() == {"urgent": 1, "default": 2, "bulk": 3, "late": 7}
    # a free number again takes the first gap
    assert run("work-queue", "create", "gap", "--pool", "etl").endswith("with priority 4")
    assert run("work-queue", "update", "etl/late", "--priority", "2") == (
        'Updated work queue "etl/late": priority 2; moved "default" to 3, "bulk" to 4, "gap" to 5'
    )
    assert priorities() == {"urgent": 1, "late": 2, "default": 3, "bulk": 4, "gap": 5}

    assert run("work-queue", "pause", "bulk") == 'Updated work queue "etl/bulk": paused'
    assert run("work-queue", "set-concurrency-limit", "bulk", "9", "--pool", "etl") == (
        'Updated work queue "etl/bulk": concurrency limit 9'
    )
    bulk = spec(store_url, Kind.WORK_QUEUE, "etl/bulk")
    assert (bulk["paused"], bulk["concurrency_limit"]) == (True, 9)
    run("work-queue", "resume", "etl/bulk")
    run("work-queue", "clear-concurrency-limit", "etl/bulk")
    run("work-queue", "update", "bulk", "--description", "Backfills.")
    assert spec(store_url, Kind.WORK_QUEUE, "etl/bulk") == {
        "pool": "etl",
        "name": "bulk",
        "description": "Backfills.",
        "priority": 4,
        "concurrency_limit": None,
        "paused": False,
    }
    assert run("work-queue", "delete", "gap", "--pool", "etl") == (
        'Deleted work queue "gap" of work pool "etl"'
    )
    assert priorities() == {"urgent": 1, "late": 2, "default": 3, "bulk": 4}


def test_queues_created_at_the_same_time_get_distinct_priorities(
    run_cli: Run, store_url: str
) -> None:
    ok(run_cli("work-pool", "create", "etl", "--type", "process", "--store", store_url))
    results = run_many(
        run_cli, *[["work-queue", "create", f"q{i}", "--pool", "etl", "--store", store_url]
                   for i in range(4)]
    )  # fmt: skip
    for result in results:
        ok(result)
    queues = resources(store_url, Kind.WORK_QUEUE).values()
    assert sorted(q.spec["priority"] for q in queues) == [1, 2, 3, 4, 5]


def test_write_commands_on_a_missing_store_create_nothing(run_cli: Run, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "state.db"
    result = run_cli("work-pool", "pause", "etl", "--store", f"sqlite:///{missing}")
    assert_refused(result, 'work pool "etl" not found', f"there is no store at {missing}")
    assert not (tmp_path / "nowhere").exists()


# --- a reconcile never prunes what was made by hand -------------------------------------------


def test_a_reconcile_never_prunes_hand_made_pools_and_queues(
    make_repo: Callable[..., GitRepo], run_cli: Run, store_url: str
) -> None:
    store = ("--store", store_url)
    for args in (
        ["work-pool", "create", "manual", "--type", "process"],
        ["work-queue", "create", "fast", "--pool", "manual", "--priority", "1"],
        [
            "work-pool",
            "create",
            "spare",
            "--type",
            "docker",
            "--paused",
            "--concurrency-limit",
            "3",
        ],
    ):
        ok(run_cli(*args, *store))
    hand_made = {**resources(store_url, Kind.WORK_POOL), **resources(store_url, Kind.WORK_QUEUE)}
    assert sorted(hand_made) == [
        "manual",
        "manual/default",
        "manual/fast",
        "spare",
        "spare/default",
    ]

    # A repository whose work-pools.yaml declares other pools, with a deployment on a hand-made
    # pool's hand-made queue.
    repo = make_repo(
        {
            "flows/etl.py": FLOW,
            "work-pools.yaml": "work_pools:\n  - {name: etl, type: process}\n",
            "prefect.yaml": "deployments:\n"
            "  - name: nightly\n"
            "    entrypoint: flows/etl.py:ingest\n"
            "    work_pool: {name: manual, work_queue_name: fast}\n"
            "  - name: hourly\n"
            "    entrypoint: flows/etl.py:ingest\n"
            "    work_pool: {name: etl}\n",
        }
    )
    first = ok(run_cli(*store, str(repo.path)))
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in first.stdout
    assert_untouched(first.stdout, "manual", "spare")
    nightly = spec(store_url, Kind.DEPLOYMENT, "ingest/nightly")
    assert (nightly["work_pool_name"], nightly["work_queue_name"]) == ("manual", "fast")

    # The files change: pool `etl` becomes `other`, and nothing runs on `manual` any more.
    repo.commit(
        {
            "work-pools.yaml": "work_pools:\n  - {name: other, type: process}\n",
            "prefect.yaml": "deployments:\n"
            "  - name: hourly\n"
            "    entrypoint: flows/etl.py:ingest\n"
            "    work_pool: {name: other}\n",
        }
    )
    second = ok(run_cli(*store, str(repo.path)))
    assert '- work-pool "etl"' in second.stdout  # the prune ran...
    assert '- deployment "ingest/nightly"' in second.stdout
    assert_untouched(second.stdout, "manual", "spare")  # ...but not on these
    assert sorted(resources(store_url, Kind.WORK_POOL)) == ["manual", "other", "spare"]
    after = {
        **resources(store_url, Kind.WORK_POOL),
        **resources(store_url, Kind.WORK_QUEUE),
    }
    for key, resource in hand_made.items():
        assert after[key] == resource, key  # same spec, same hash, still owned by nobody
        assert after[key].owner is None

    # And now that nothing uses it, the hand-made pool can go, by hand.
    deleted = ok(run_cli("work-pool", "delete", "manual", *store))
    assert deleted.stdout == 'Deleted work pool "manual" and its 2 queues\n'
    assert "No changes." in ok(run_cli(*store, str(repo.path))).stdout
    assert sorted(resources(store_url, Kind.WORK_POOL)) == ["other", "spare"]


def assert_untouched(plan_text: str, *pools: str) -> None:
    """The plan has no change on these pools or their queues (deployments may name them)."""
    for pool in pools:
        assert f'work-pool "{pool}"' not in plan_text, plan_text
        assert f'work-queue "{pool}/' not in plan_text, plan_text


def test_a_kubernetes_pool_applies_to_our_store_with_a_warning_at_its_type(
    make_repo: Callable[..., GitRepo], run_cli: Run, store_url: str
) -> None:
    repo = make_repo(
        {
            "flows/etl.py": FLOW,
            "work-pools.yaml": "work_pools:\n  - name: k8s\n    type: kubernetes\n",
            "prefect.yaml": "deployments:\n  - name: nightly\n    entrypoint: flows/etl.py:ingest\n"
            "    work_pool: {name: k8s, job_variables: {namespace: flows}}\n",
        }
    )
    warning = (
        'work-pools.yaml:3:11: warning: work pool "k8s" is of type kubernetes, which '
        "reconciler's worker does not run (docker, process)"
    )
    planned = ok(run_cli("--dry-run", "--store", store_url, "--no-color", str(repo.path)))
    assert warning in " ".join(planned.output.split())
    assert "Prefect's kubernetes worker" in planned.output
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in planned.stdout

    validated = ok(run_cli("validate", str(repo.path)))
    assert warning in " ".join(validated.output.split())

    ok(run_cli("--store", store_url, "--no-color", str(repo.path)))
    assert spec(store_url, Kind.WORK_POOL, "k8s")["type"] == "kubernetes"
    assert spec(store_url, Kind.DEPLOYMENT, "ingest/nightly")["job_variables"] == {
        "namespace": "flows"
    }
