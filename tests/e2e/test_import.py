"""`reconcile import --from STORE`, end to end: the files it writes (parsed back with our own
loader), filters, secrets never written in clear, and every bad input refused with nothing
written and the store unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine.stages import ReconcileRequest, reconcile
from reconciler.prefect_rules.yamlload import load_yaml
from reconciler.settings import Settings
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import FLOW, Dump, assert_refused

pytestmark = pytest.mark.e2e

ENV_SECRET = "hunter2-env-secret"
CLEAR_TOKEN = "tok-written-in-clear-42"
BLOCK_SECRET = "s3cr3t-block-value"

POOLS = """\
work_pools:
  - name: etl
    type: process
    concurrency_limit: 4
    job_variables: {env: {LOG_LEVEL: INFO}}
    queues:
      - {name: critical, priority: 2, concurrency_limit: 3}
  - name: gpu
    type: docker
"""

PREFECT = """\
definitions:
  schedules:
    nightly: &nightly {cron: "0 2 * * *", timezone: Europe/Berlin}
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    tags: [orders]
    schedules: [*nightly]
    work_pool:
      name: etl
      job_variables:
        env:
          DB_PASSWORD: "{{ $DB_PASSWORD }}"
          WAREHOUSE: "{{ prefect.blocks.secret.warehouse }}"
  - name: hourly
    entrypoint: flows/etl.py:ingest
    tags: [orders]
    parameters: {days: 2}
    schedules: [*nightly, {interval: 3600}]
    work_pool:
      name: etl
      job_variables:
        env:
          DB_PASSWORD: "{{ $DB_PASSWORD }}"
          WAREHOUSE: "{{ prefect.blocks.secret.warehouse }}"
  - name: train
    entrypoint: flows/etl.py:ingest
    tags: [ml]
    work_pool:
      name: gpu
      work_queue_name: default
      job_variables: {image: "example/train:1"}
"""

FILES: dict[str, str | bytes] = {
    "flows/etl.py": FLOW,
    "work-pools.yaml": POOLS,
    "prefect.yaml": PREFECT,
}


def fill_store(store_url: str, repo: GitRepo, env: dict[str, str] | None = None) -> None:
    """The project applied (with its secret block and environment), as `reconcile` does."""
    store = open_store(store_url)
    try:
        with store.transaction() as tx:
            tx.set_block("secret", "warehouse", {"value": BLOCK_SECRET})
    finally:
        store.close()
    outcome = reconcile(
        ReconcileRequest(repositories=(str(repo.path),), settings=Settings(store_url=store_url)),
        environ={"DB_PASSWORD": ENV_SECRET, **(env or {})},
    )
    assert not outcome.errors, outcome.errors


def parsed(path: Path) -> Any:
    document = load_yaml(path.read_bytes(), path.name)
    assert not [d for d in document.diagnostics if d.is_error]
    return document.data


@pytest.fixture
def filled(make_repo: Callable[..., GitRepo], store_url: str) -> GitRepo:
    repo = make_repo(FILES)
    fill_store(store_url, repo)
    return repo


def test_import_writes_both_files_grouped_with_anchors_and_origins(
    filled: GitRepo, run_cli: Callable[..., CliResult], store_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_cli("import", "--from", store_url, "--out", str(out))
    assert result.code == 0, result.output
    assert "imported 3 deployment(s), 2 work pool(s), 3 queue(s)" in result.stdout
    assert "the flows' code is not beside the imported files (flows/etl.py)" in result.stderr

    prefect_text = (out / "prefect.yaml").read_text()
    document = parsed(out / "prefect.yaml")
    names = [d["name"] for d in document["deployments"]]
    assert names == ["hourly", "nightly", "train"]  # grouped by directory and flow, then name
    # The pool block and the cron schedule both deployments use are written once, anchored.
    assert "pool_etl: &pool_etl" in prefect_text
    assert "work_pool: *pool_etl" in prefect_text
    assert "&schedule_cron_0_2" in prefect_text
    assert document["deployments"][0]["work_pool"] == document["deployments"][1]["work_pool"]
    assert f"owned by {filled.path.resolve()} (prefect.yaml)" in prefect_text
    assert "# --- flow ingest (flows/)" in prefect_text

    pools = parsed(out / "work-pools.yaml")["work_pools"]
    etl, gpu = pools
    assert etl["job_variables"] == {"env": {"LOG_LEVEL": "INFO"}}  # not the whole template
    assert "base_job_template" not in etl and "job_variables" not in gpu
    assert etl["queues"] == [
        {"name": "default", "priority": 1},
        {"name": "critical", "priority": 2, "concurrency_limit": 3},
    ]


def test_secrets_are_placeholders_and_listed_never_in_clear(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    tmp_path: Path,
) -> None:
    clear = PREFECT.replace(
        'job_variables: {image: "example/train:1"}',
        f'job_variables: {{image: "example/train:1", env: {{API_TOKEN: {CLEAR_TOKEN}}}}}',
    )
    repo = make_repo({**FILES, "prefect.yaml": clear})
    fill_store(store_url, repo)
    out = tmp_path / "out"
    result = run_cli("import", "--from", store_url, "--out", str(out))
    assert result.code == 0, result.output
    written = "".join(p.read_text() for p in out.iterdir())
    for secret in (ENV_SECRET, CLEAR_TOKEN, BLOCK_SECRET):
        assert secret not in written
        assert secret not in result.output
    assert 'DB_PASSWORD: "{{ $DB_PASSWORD }}"' in written
    assert 'API_TOKEN: "{{ $API_TOKEN }}"' in written
    assert 'WAREHOUSE: "{{ prefect.blocks.secret.warehouse }}"' in written
    assert "values to provide" in result.stdout
    assert "{{ $DB_PASSWORD }}: environment variable DB_PASSWORD" in result.stdout
    assert "{{ $API_TOKEN }}: environment variable API_TOKEN" in result.stdout


@pytest.mark.parametrize(
    ("flags", "deployments", "pools"),
    [
        (["--pool", "gpu"], ["train"], ["gpu"]),
        (["--tag", "orders"], ["hourly", "nightly"], ["etl"]),
        (["--deployment", "ingest/n*"], ["nightly"], ["etl"]),
        (["--deployment", "tra?n", "--deployment", "hourly"], ["hourly", "train"], ["etl", "gpu"]),
    ],
)
def test_filters(
    filled: GitRepo,
    run_cli: Callable[..., CliResult],
    store_url: str,
    tmp_path: Path,
    flags: list[str],
    deployments: list[str],
    pools: list[str],
) -> None:
    out = tmp_path / "out"
    result = run_cli("import", "--from", store_url, "--out", str(out), *flags)
    assert result.code == 0, result.output
    assert [d["name"] for d in parsed(out / "prefect.yaml")["deployments"]] == deployments
    assert [p["name"] for p in parsed(out / "work-pools.yaml")["work_pools"]] == pools


def test_existing_files_are_refused_without_force(
    filled: GitRepo, run_cli: Callable[..., CliResult], store_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "work-pools.yaml").write_text("mine\n")
    refused = run_cli("import", "--from", store_url, "--out", str(out))
    assert_refused(refused, "work-pools.yaml already exists; nothing was written", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["work-pools.yaml"]
    assert (out / "work-pools.yaml").read_text() == "mine\n"

    forced = run_cli("import", "--from", store_url, "--out", str(out), "--force")
    assert forced.code == 0, forced.output
    assert sorted(p.name for p in out.iterdir()) == ["prefect.yaml", "work-pools.yaml"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--from", "{tmp}/missing.db"], "there is no store at"),
        (
            ["--from", "postgresql://someone:pw-not-shown@127.0.0.1:1/nothing"],
            "cannot connect to the store postgresql://127.0.0.1:1/nothing",
        ),
        (["--from", "{store}", "--deployment", "[abc"], "is not a usable glob"),
        (["--from", "{store}", "--pool", "nope"], "nothing to import from"),
        (["--from", "mysql://x/y"], "unsupported store URL scheme"),
        (["--from", "{tmp}/empty.db"], "it holds no deployment and no pool"),
        (["--from", "{tmp}/not-a-store.db"], "file is not a database"),
        (["--from", "{store}", "--from-prefect2"], "either --from URL or --from-prefect2"),
        ([], "either --from URL or --from-prefect2"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    filled: GitRepo,
    run_cli: Callable[..., CliResult],
    store_url: str,
    tmp_path: Path,
    dump_store: Dump,
    args: list[str],
    expected: str,
) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "not-a-store.db").write_text("not a database\n")
    before = dump_store(store_url)
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path, store=store_url) for a in args]
    result = run_cli("import", *args, "--out", str(out))
    assert_refused(result, expected)
    assert "pw-not-shown" not in result.output
    assert not out.exists()
    assert dump_store(store_url) == before
