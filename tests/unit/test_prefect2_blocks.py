"""Prefect 2 translation (reconciler/onboard/prefect2.py): kubernetes-job infrastructure to a
kubernetes pool's job variables, what has no equivalent reported; blocks read from a server
(a `read_block` function here; the real server is in tests/prefect_target) behind --blocks
files, their secret fields written as placeholders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.errors import UserError
from reconciler.onboard.prefect2 import translate, translate_files
from reconciler.onboard.secrets import SecretRule
from reconciler.prefect_rules.job_templates import (
    default_base_job_template,
    job_variable_problems,
    template_problems,
)

KUBERNETES_JOB = {
    "type": "kubernetes-job",
    "image": "registry.local/etl:2.1",
    "namespace": "flows",
    "service_account_name": "prefect-runner",
    "image_pull_policy": "Always",
    "finished_job_ttl": 600,
    "job_watch_timeout_seconds": None,
    "pod_watch_timeout_seconds": 60,  # the kubernetes template's default: not written
    "stream_output": False,
    "env": {"LOG_LEVEL": "INFO"},
    "labels": {"team": "data"},
    "name": None,
    "command": ["python", "-m", "prefect.engine"],
    "customizations": [{"op": "add", "path": "/spec/template/spec/nodeSelector", "value": {}}],
    "job": {"apiVersion": "batch/v1", "kind": "Job"},
    "cluster_config": None,
    "_block_document_name": "etl-k8s",
    "_block_type_slug": "kubernetes-job",
    "_is_anonymous": False,
}


def deployment(infrastructure: Any, **more: Any) -> dict[str, Any]:
    return {
        "name": "etl",
        "entrypoint": "flows/etl.py:etl",
        "work_queue_name": "default",
        "infrastructure": infrastructure,
        "storage": None,
        "path": "/srv/flows",
        **more,
    }


def test_kubernetes_job_becomes_a_kubernetes_pools_job_variables() -> None:
    result = translate([(Path("k8s.yaml"), deployment(KUBERNETES_JOB))], {})
    entry = yaml.safe_load(result.prefect_yaml)["deployments"][0]
    variables = entry["work_pool"]["job_variables"]
    assert entry["work_pool"]["name"] == "etl-k8s"
    assert variables == {
        "image": "registry.local/etl:2.1",
        "namespace": "flows",
        "service_account_name": "prefect-runner",
        "image_pull_policy": "Always",
        "finished_job_ttl": 600,
        "stream_output": False,
        "env": {"LOG_LEVEL": "INFO"},
        "labels": {"team": "data"},
        "command": "python -m prefect.engine",
    }
    template = default_base_job_template("kubernetes")
    assert template_problems(template) == []
    assert job_variable_problems(template, variables) == []
    # no equivalent: reported, never dropped silently
    report = "\n".join(result.untranslated)
    assert 'infrastructure setting "customizations" has no job variable' in report
    assert 'infrastructure setting "job" has no job variable' in report
    assert "work-pools.yaml does not declare" not in report
    assert "prefect work-pool create" not in report
    # the pool is declared in work-pools.yaml, as process and docker pools are
    assert result.pools_yaml is not None
    assert yaml.safe_load(result.pools_yaml) == {
        "work_pools": [{"name": "etl-k8s", "type": "kubernetes"}]
    }


def test_kubernetes_settings_no_template_declares_are_reported() -> None:
    block = {**KUBERNETES_JOB, "volume_mounts": ["/data"]}
    result = translate([(Path("k8s.yaml"), deployment(block))], {})
    assert any(
        'infrastructure setting "volume_mounts" is not a job variable of kubernetes' in line
        for line in result.untranslated
    )


NAMED_DOCKER = {"_block_document_name": "reports", "_block_type_slug": "docker-container"}


def test_server_blocks_are_read_only_for_what_no_file_gives(tmp_path: Path) -> None:
    deployment_file = tmp_path / "deployment.yaml"
    deployment_file.write_text(yaml.safe_dump(deployment(NAMED_DOCKER, storage="github/repo")))
    blocks_file = tmp_path / "blocks.yaml"
    blocks_file.write_text(yaml.safe_dump({"docker-container/reports": {"image": "from-file:1"}}))
    asked: list[tuple[str, str]] = []

    def read_block(slug: str, name: str) -> tuple[dict[str, Any], tuple[str, ...]] | None:
        asked.append((slug, name))
        if (slug, name) == ("github", "repo"):
            return {"repository": "https://git.example/r.git", "access_token": "********"}, (
                "access_token",
            )
        return {"image": "from-server:1"}, ()

    result = translate_files([deployment_file], [blocks_file], read_block, "http://x/api")
    assert asked == [("github", "repo")]  # the --blocks file wins; the server is not asked
    entry = yaml.safe_load(result.prefect_yaml)["deployments"][0]
    assert entry["work_pool"]["job_variables"] == {"image": "from-file:1"}
    clone = entry["pull"][0]["prefect.deployments.steps.git_clone"]
    assert clone["access_token"] == "{{ $ACCESS_TOKEN }}"
    assert "********" not in result.prefect_yaml


def test_a_block_the_server_lacks_names_the_block_and_the_file(tmp_path: Path) -> None:
    deployment_file = tmp_path / "deployment.yaml"
    deployment_file.write_text(yaml.safe_dump(deployment(NAMED_DOCKER)))
    with pytest.raises(UserError) as caught:
        translate_files([deployment_file], [], lambda slug, name: None, "http://x/api")
    assert caught.value.message == (
        f"infrastructure block docker-container/reports named by {deployment_file} does not "
        "exist on the Prefect server at http://x/api"
    )
    assert caught.value.hint is not None and "--blocks file" in caught.value.hint


def test_secret_fields_become_placeholders_one_per_block_field() -> None:
    rule = SecretRule({})
    data = {
        "env": {"API_URL": "********", "TZ": "UTC"},
        "password": "********",
        "nested": {"deep": {"key": "x"}},
        "plain": "kept",
    }
    hidden = rule.hide_fields(data, ("env.*", "password", "nested"), "block a/b", "a/b")
    assert hidden == {
        "env": {"API_URL": "{{ $API_URL_SECRET }}", "TZ": "{{ $TZ_SECRET }}"},
        "password": "{{ $PASSWORD }}",
        "nested": {"deep": {"key": "{{ $KEY_SECRET }}"}},
        "plain": "kept",
    }
    # the same field of another block is another value: another name
    other = rule.hide_fields({"password": "********"}, ("password",), "block a/c", "a/c")
    assert other == {"password": "{{ $PASSWORD_2 }}"}
    again = rule.hide_fields({"password": "********"}, ("password",), "block a/b", "a/b")
    assert again == {"password": "{{ $PASSWORD }}"}
