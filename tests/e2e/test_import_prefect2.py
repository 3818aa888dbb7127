"""`reconcile import --from-prefect2`: Prefect 2 deployment.yaml files (a Process and a
DockerContainer infrastructure block, a GitHub storage block) translated to Prefect 3 files,
which then plan without errors; what cannot be translated is reported; secrets never
written; bad input refused with nothing written."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.prefect_rules.yamlload import load_yaml
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import assert_refused

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "prefect2"
PROCESS = DATA / "process-deployment.yaml"
DOCKER = DATA / "docker-deployment.yaml"
KUBERNETES = DATA / "kubernetes-deployment.yaml"
BLOCKS = DATA / "blocks.json"
FLOWS = ROOT / "examples" / "01-data-project" / "flows"
SECRETS = ("p2-process-secret", "p2-docker-token-value", "ghp_p2-github-token-value")
ENV = {"DB_PASSWORD": "x", "REPORTS_API_TOKEN": "y", "ACCESS_TOKEN": "z"}


def parsed(path: Path) -> dict[str, object]:
    document = load_yaml(path.read_bytes(), path.name)
    assert not [d for d in document.diagnostics if d.is_error]
    assert isinstance(document.data, dict)
    return document.data


def test_process_and_docker_deployments_translate_and_plan(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    store_url: str,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    done = run_cli(
        "import", "--from-prefect2", str(PROCESS), str(DOCKER), "--blocks", str(BLOCKS),
        "--out", str(out),
    )  # fmt: skip
    assert done.code == 0, done.output
    assert "translated 2 deployment(s)" in done.stdout
    assert "{{ $DB_PASSWORD }}: environment variable DB_PASSWORD" in done.stdout
    written = "".join(p.read_text() for p in out.iterdir())
    for secret in SECRETS:
        assert secret not in written and secret not in done.output

    nightly, reports = parsed(out / "prefect.yaml")["deployments"]  # type: ignore[misc]
    assert nightly["work_pool"] == {
        "name": "process-pool",
        "work_queue_name": "nightly",
        "job_variables": {"env": {"DB_PASSWORD": "{{ $DB_PASSWORD }}", "LOG_LEVEL": "INFO"}},
    }
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}]
    assert nightly["pull"] == [
        {
            "prefect.deployments.steps.set_working_directory": {
                "directory": "/srv/flows/data-project"
            }
        }
    ]
    assert reports["work_pool"]["name"] == "reports-docker"
    variables = reports["work_pool"]["job_variables"]
    assert variables["image"] == "registry.local/reports:2023.09"
    assert variables["image_pull_policy"] == "Always"  # Prefect 2's ALWAYS, as workers spell it
    assert reports["schedules"][0]["active"] is False
    assert reports["pull"][0]["prefect.deployments.steps.git_clone"]["branch"] == "main"
    assert reports["pull"][1] == {
        "prefect.deployments.steps.set_working_directory": {
            "directory": "{{ clone.directory }}/reports"
        }
    }
    pools = parsed(out / "work-pools.yaml")["work_pools"]
    assert pools == [
        {"name": "process-pool", "type": "process", "queues": [{"name": "nightly"}]},
        {"name": "reports-docker", "type": "docker"},
    ]

    repo = make_repo({})
    shutil.copytree(FLOWS, repo.path / "flows")
    for path in out.iterdir():
        shutil.copy(path, repo.path / path.name)
    repo.commit(message="translated")
    planned = run_cli("--dry-run", "--store", store_url, str(repo.path), env=ENV)
    assert planned.code == 0, planned.output
    assert "error" not in planned.output
    assert "Plan: 7 to add, 0 to change, 0 to destroy." in planned.stdout


def test_what_cannot_be_translated_is_reported(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    ecs = tmp_path / "ecs.yaml"
    ecs.write_text(
        PROCESS.read_text()
        .replace("type: process\n", "type: ecs-task\n  cluster: flows\n", 1)
        .replace("_block_type_slug: process", "_block_type_slug: ecs-task")
        .replace("block_type_slug: process", "block_type_slug: ecs-task")
    )
    named_only = tmp_path / "named.yaml"
    named_only.write_text(DOCKER.read_text())  # its block is in no --blocks file
    out = tmp_path / "out"
    done = run_cli("import", "--from-prefect2", str(ecs), str(named_only), "--out", str(out))
    assert done.code == 0, done.output
    assert "not translated (do these by hand):" in done.stdout
    assert 'infrastructure "ecs-task" has no work-pool type here' in done.stdout
    assert "infrastructure block docker-container/reports-docker is not in any --blocks file" in (
        done.stdout
    )
    assert "p2-process-secret" not in (out / "prefect.yaml").read_text()


def test_kubernetes_job_translates_to_a_kubernetes_pools_job_variables(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_cli("import", "--from-prefect2", str(KUBERNETES), "--out", str(out))
    assert done.code == 0, done.output
    assert "translated 1 deployment(s)" in done.stdout
    assert "p2-k8s-secret" not in done.output + (out / "prefect.yaml").read_text()
    (entry,) = parsed(out / "prefect.yaml")["deployments"]  # type: ignore[misc]
    assert entry["work_pool"] == {
        "name": "orders-k8s",
        "work_queue_name": "cluster",
        "job_variables": {
            "env": {"DB_PASSWORD": "{{ $DB_PASSWORD }}", "LOG_LEVEL": "DEBUG"},
            "labels": {"team": "data"},
            "command": "python -m prefect.engine",
            "image": "registry.local/orders:2023.10",
            "namespace": "flows",
            "service_account_name": "prefect-runner",
            "pod_watch_timeout_seconds": 120,
            "finished_job_ttl": 3600,
        },
    }
    # the kubernetes pool and its queue are declared, as process and docker ones are
    assert parsed(out / "work-pools.yaml") == {
        "work_pools": [
            {"name": "orders-k8s", "type": "kubernetes", "queues": [{"name": "cluster"}]}
        ]
    }
    report = done.stdout.split("not translated (do these by hand):", 1)[1]
    assert 'infrastructure setting "customizations" has no job variable in kubernetes' in report
    assert 'infrastructure setting "job" has no job variable in kubernetes' in report
    assert "prefect work-pool create" not in done.stdout


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["{tmp}/missing.yaml"], "cannot read"),
        (["{tmp}/bad.yaml"], "not valid YAML"),
        (["{tmp}/list.yaml"], "a deployment file is a mapping"),
        ([str(PROCESS), "--blocks", "{tmp}/bad-blocks.json"], 'must be written "SLUG/NAME"'),
        (["{tmp}/empty.yaml"], "no deployment could be translated"),
        ([], "needs at least one deployment.yaml FILE"),
    ],
)
def test_bad_prefect2_input_is_refused_and_nothing_written(
    run_cli: Callable[..., CliResult], tmp_path: Path, files: list[str], expected: str
) -> None:
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- name: x\n")
    (tmp_path / "empty.yaml").write_text("description: no name, no entrypoint\n")
    (tmp_path / "bad-blocks.json").write_text('{"just-a-name": {"image": "x"}}')
    out = tmp_path / "out"
    args = [f.format(tmp=tmp_path) for f in files]
    done = run_cli("import", "--from-prefect2", *args, "--out", str(out))
    assert_refused(done, expected)
    assert not out.exists()


def test_existing_files_are_kept_without_force(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "prefect.yaml").write_text("mine\n")
    done = run_cli("import", "--from-prefect2", str(PROCESS), "--out", str(out))
    assert_refused(done, "prefect.yaml already exists; nothing was written")
    assert (out / "prefect.yaml").read_text() == "mine\n"
    assert not (out / "work-pools.yaml").exists()


def test_blocks_from_without_from_prefect2_is_refused(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_cli(
        "import", "--from", f"sqlite:///{tmp_path / 'state.db'}",
        "--blocks-from", "prefect+http://127.0.0.1:4200/api", "--out", str(out),
    )  # fmt: skip
    assert_refused(done, "FILE arguments, --blocks and --blocks-from go with --from-prefect2 only")
    assert not out.exists()
