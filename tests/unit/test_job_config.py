"""The job configuration a worker runs: Prefect 3.9's rendering rules
(docs/design-notes.md#job-configuration), the default process and docker templates, and the
workers' preparation (docs/design-notes.md#docker-runs). Expected values come from Prefect's
rules as those notes give them, not from the code under test."""

from __future__ import annotations

import copy
import datetime
import sys
from typing import Any

import pytest

from reconciler.prefect_rules.job_templates import default_base_job_template
from reconciler.worker.docker_rules import container_name, docker_labels, image_tag
from reconciler.worker.job_config import (
    RUNNER_MODULE,
    DockerJob,
    JobConfigError,
    ProcessJob,
    RegistryCredentials,
    RunContext,
    check_volume,
    docker_job,
    merge_job_variables,
    process_job,
    render_job_configuration,
    resolve_job_references,
)

NO_ENV: dict[str, str] = {}
RUN = RunContext(flow_run_id="run-1", flow_run_name="happy-otter")
FULL_RUN = RunContext(
    flow_run_id="run-1",
    flow_run_name="happy-otter",
    flow_id="flow-9",
    flow_name="etl",
    deployment_id="dep-5",
    deployment_name="nightly",
    deployment_updated=datetime.datetime(
        2024, 5, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    ),
    work_pool_id="pool-3",
    work_pool_name="local",
    worker_id="worker-7",
    worker_name="w1",
    version="9.9.9",
    flow_run_fields={"parameters": {"day": "monday"}, "tags": ["a"]},
)
RUN_ENV = {"PREFECT__FLOW_RUN_ID": "run-1"}
RUN_LABELS = {
    "prefect.io/flow-run-id": "run-1",
    "prefect.io/flow-run-name": "happy-otter",
    "prefect.io/version": RUN.version,
}


def process_template() -> dict[str, Any]:
    return default_base_job_template("process")


def docker_template() -> dict[str, Any]:
    return default_base_job_template("docker")


def template(configuration: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    return {"job_configuration": configuration, "variables": {"properties": properties}}


def render(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return render_job_configuration(base, values, environ=NO_ENV)


def process(
    deployment_vars: dict[str, Any] | None = None,
    run_vars: dict[str, Any] | None = None,
    *,
    base: dict[str, Any] | None = None,
    context: RunContext = RUN,
    **kwargs: Any,
) -> ProcessJob:
    kwargs.setdefault("environ", NO_ENV)
    return process_job(
        process_template() if base is None else base,
        deployment_vars or {},
        run_vars or {},
        context,
        **kwargs,
    )


def docker(
    deployment_vars: dict[str, Any] | None = None,
    run_vars: dict[str, Any] | None = None,
    *,
    base: dict[str, Any] | None = None,
    context: RunContext = RUN,
    **kwargs: Any,
) -> DockerJob:
    kwargs.setdefault("environ", NO_ENV)
    kwargs.setdefault("platform", "linux")
    return docker_job(
        docker_template() if base is None else base,
        deployment_vars or {},
        run_vars or {},
        context,
        **kwargs,
    )


# --- from_template_and_values (design notes: job-configuration) -----------------------------------

VERIFIED_TEMPLATE = template(
    {
        "command": "echo {{ a }} {{ b }}",
        "env": {"X": "{{ a }}", "Y": "{{ missing }}"},
        "labels": {"l": "{{ c }}"},
    },
    {
        "a": {"default": "A"},
        "b": {},
        "c": {"default": None},
        "missing": {},
        "env": {"default": {"D": "d"}},
    },
)


def test_the_verified_example_of_the_notes() -> None:
    assert render(VERIFIED_TEMPLATE, {"b": 7}) == {
        "command": "echo A 7",
        "env": {"X": "A", "D": "d"},
        "labels": {},
    }


def test_the_verified_example_as_a_process_job() -> None:
    job = process({"b": 7}, base=VERIFIED_TEMPLATE)
    assert job.command == ["echo", "A", "7"]
    assert job.command_configured
    assert job.env == {**RUN_ENV, "X": "A", "D": "d"}
    assert job.labels == RUN_LABELS
    assert job.stream_output is True  # not in the configuration: the field's default
    assert job.working_dir is None


def test_dotted_keys_are_expanded_and_the_nested_form_is_merged_over_them() -> None:
    assert render(process_template(), {"env.B": 2, "env": {"A": 1}})["env"] == {"B": 2, "A": 1}
    job = process({"env.B": 2, "env": {"A": 1}})
    assert job.env == {**RUN_ENV, "B": "2", "A": "1"}


def test_a_nested_value_wins_over_the_same_dotted_one() -> None:
    job = process({"env.A": "dotted", "env": {"A": "nested"}, "labels.team": "data"})
    assert job.env["A"] == "nested"
    assert job.labels["team"] == "data"


def test_a_plain_key_that_is_not_a_mapping_replaces_dotted_ones() -> None:
    rendered = render(process_template(), {"labels.team": "data", "labels": "flat"})
    assert rendered["labels"] == "flat"


def test_a_dotted_key_through_a_value_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(JobConfigError, match=r"'a\.b\.c'"):
        render(process_template(), {"a.b": 1, "a.b.c": 2})


def test_a_missing_variable_deletes_its_key() -> None:
    base = template(
        {"stream_output": "{{ stream_output }}", "working_dir": "{{ working_dir }}"},
        {"stream_output": {"type": "boolean"}, "working_dir": {"default": None}},
    )
    assert render(base, {}) == {}
    # ...so the field's default applies: stream_output is True, not null.
    job = process(base=base)
    assert job.stream_output is True
    assert job.working_dir is None


def test_embedded_missing_values_become_empty_text() -> None:
    base = template({"name": "run-{{ suffix }}-{{ kind }}"}, {"kind": {"default": "etl"}})
    assert render(base, {}) == {"name": "run--etl"}


def test_a_whole_value_keeps_its_type_and_an_embedded_one_is_python_str() -> None:
    base = template(
        {"whole": "{{ x }}", "embedded": "x={{ x }}", "flag": "{{ f }}"},
        {"x": {}, "f": {}},
    )
    assert render(base, {"x": {"y": 5}, "f": False}) == {
        "whole": {"y": 5},
        "embedded": "x={'y': 5}",
        "flag": False,
    }


def test_extra_job_variables_are_ignored() -> None:
    assert render(process_template(), {"not_a_field": 1, "image": "x"}) == {"stream_output": True}
    assert process({"not_a_field": 1, "image": "x"}) == process()


def test_variable_defaults_that_are_null_are_skipped() -> None:
    # the default process template: only stream_output has a default that is not None
    assert render(process_template(), {}) == {"stream_output": True}


def test_env_placeholders_read_the_given_environment() -> None:
    base = template({"home": "{{ $HOME }}", "unset": "x{{ $NOPE }}"}, {})
    rendered = render_job_configuration(base, {}, environ={"HOME": "/home/w"})
    assert rendered == {"home": "/home/w", "unset": "x"}


def test_a_template_without_both_parts_is_an_error() -> None:
    with pytest.raises(JobConfigError, match="job_configuration"):
        render({"job_configuration": {}}, {})


def test_inputs_are_not_changed() -> None:
    base = process_template()
    values = {"env": {"A": "1"}, "env.B": "2"}
    before = (copy.deepcopy(base), copy.deepcopy(values))
    render(base, values)
    assert (base, values) == before


# --- env merging ---------------------------------------------------------------------------


def test_merge_job_variables_merges_env_one_level_and_the_run_wins_elsewhere() -> None:
    deployment = {"image": "a", "env": {"A": "1", "B": "1"}, "volumes": ["/x:/x"]}
    run = {"image": "b", "env": {"B": "2", "C": None}}
    merged = merge_job_variables(deployment, run)
    assert merged == {"image": "b", "env": {"A": "1", "B": "2", "C": None}, "volumes": ["/x:/x"]}
    assert deployment["env"] == {"A": "1", "B": "1"}  # not changed
    assert run["env"] == {"B": "2", "C": None}


def test_without_a_deployment_env_the_run_env_replaces_at_the_top_level() -> None:
    assert merge_job_variables({"image": "a"}, {"env": {"B": "2"}}) == {
        "image": "a",
        "env": {"B": "2"},
    }
    assert merge_job_variables({"env": "text"}, {"env": {"B": "2"}}) == {"env": {"B": "2"}}


def test_pool_deployment_and_run_env_merge_and_null_removes_a_key() -> None:
    base = process_template()
    base["variables"]["properties"]["env"]["default"] = {"A": "pool", "B": "pool", "E": "pool"}
    job = process(
        {"env": {"B": "deployment", "C": "deployment"}},
        {"env": {"C": "run", "D": "run", "E": None}},
        base=base,
    )
    assert job.env == {**RUN_ENV, "A": "pool", "B": "deployment", "C": "run", "D": "run"}


def test_a_job_configuration_env_mapping_merges_with_the_job_variables_env() -> None:
    base = template(
        {"env": {"FIXED": "1", "REGION": "{{ region }}"}},
        {"region": {"default": "eu"}, "env": {"type": "object"}},
    )
    job = process({"env": {"X": "y", "FIXED": "2"}}, base=base)
    assert job.env == {**RUN_ENV, "FIXED": "2", "REGION": "eu", "X": "y"}


def test_env_values_become_text() -> None:
    job = process({"env": {"N": 5, "T": True, "M": {"a": 1}}})
    assert {k: job.env[k] for k in ("N", "T", "M")} == {"N": "5", "T": "True", "M": "{'a': 1}"}


def test_null_env_entries_remove_the_workers_base_variables_and_run_variables() -> None:
    job = process(
        {"env": {"PREFECT_API_URL": None, "PREFECT__FLOW_RUN_ID": None}},
        base_env={"PREFECT_API_URL": "http://api", "PREFECT_API_KEY": "k"},
    )
    assert job.env == {"PREFECT_API_KEY": "k"}


def test_the_process_inherits_the_worker_environment_under_the_job_env() -> None:
    job = process(
        {"env": {"HOME": "/job", "GONE": None}},
        environ={"HOME": "/worker", "PATH": "/bin", "GONE": "still"},
    )
    # nulls are dropped before the worker's environment is added: GONE is inherited
    assert job.env == {**RUN_ENV, "HOME": "/job", "PATH": "/bin", "GONE": "still"}


def test_job_env_overrides_the_attribution_variables() -> None:
    job = process({"env": {"PREFECT__WORKER_NAME": "mine"}}, context=FULL_RUN)
    assert job.env["PREFECT__WORKER_NAME"] == "mine"


# --- attribution and labels ----------------------------------------------------------------


def test_attribution_variables_and_labels_of_a_full_run() -> None:
    job = process(context=FULL_RUN)
    assert job.env == {
        "PREFECT__FLOW_RUN_ID": "run-1",
        "PREFECT__WORKER_ID": "worker-7",
        "PREFECT__WORKER_NAME": "w1",
        "PREFECT__FLOW_ID": "flow-9",
        "PREFECT__FLOW_NAME": "etl",
        "PREFECT__DEPLOYMENT_ID": "dep-5",
        "PREFECT__DEPLOYMENT_NAME": "nightly",
    }
    assert job.labels == {
        "prefect.io/flow-run-id": "run-1",
        "prefect.io/flow-run-name": "happy-otter",
        "prefect.io/version": "9.9.9",
        "prefect.io/work-pool-name": "local",
        "prefect.io/work-pool-id": "pool-3",
        "prefect.io/worker-name": "w1",
        "prefect.io/flow-id": "flow-9",
        "prefect.io/flow-name": "etl",
        "prefect.io/deployment-id": "dep-5",
        "prefect.io/deployment-name": "nightly",
        "prefect.io/deployment-updated": "2024-05-01T10:00:00+00:00",
    }


def test_a_run_without_deployment_or_flow_gets_only_the_run_variables_and_labels() -> None:
    job = process()
    assert job.env == RUN_ENV
    assert job.labels == RUN_LABELS


def test_job_labels_override_the_base_labels() -> None:
    job = process({"labels": {"team": "data", "prefect.io/flow-run-name": "custom"}})
    assert job.labels == {**RUN_LABELS, "team": "data", "prefect.io/flow-run-name": "custom"}


# --- name ----------------------------------------------------------------------------------


def test_the_name_defaults_to_the_flow_run_name() -> None:
    assert process().name == "happy-otter"
    assert process({"name": ""}).name == "happy-otter"


def test_the_name_is_templated_with_the_flow_and_the_flow_run() -> None:
    job = process(
        {"name": "{{ ctx.flow.name }}-{{ ctx.flow_run.name }}-{{ ctx.flow_run.parameters.day }}"},
        context=FULL_RUN,
    )
    assert job.name == "etl-happy-otter-monday"


def test_a_name_template_that_renders_empty_falls_back_to_the_run_name() -> None:
    assert process({"name": "{{ ctx.flow_run.nope }}{{ ctx.flow.name }}"}).name == "happy-otter"


def test_ctx_is_only_for_the_name() -> None:
    # labels are substituted whole from `{{ labels }}`: a ctx placeholder stays as written
    job = process({"labels": {"run": "{{ ctx.flow_run.name }}"}})
    assert job.labels["run"] == "{{ ctx.flow_run.name }}"


# --- process template ----------------------------------------------------------------------


def test_the_default_process_template_with_typical_job_variables() -> None:
    job = process(
        {
            "working_dir": "/srv/flows",
            "stream_output": False,
            "env": {"LOG_LEVEL": "debug"},
            "labels": {"team": "data"},
            "name": "nightly-{{ ctx.flow_run.name }}",
        }
    )
    assert job == ProcessJob(
        command=[sys.executable, "-m", RUNNER_MODULE],
        command_configured=False,
        env={**RUN_ENV, "LOG_LEVEL": "debug"},
        working_dir="/srv/flows",
        stream_output=False,
        name="nightly-happy-otter",
        labels={**RUN_LABELS, "team": "data"},
    )


def test_an_explicit_command_is_split_like_a_shell_and_run_as_given() -> None:
    job = process({"command": "python run.py --msg 'a b' \"c d\""})
    assert job.command == ["python", "run.py", "--msg", "a b", "c d"]
    assert job.command_configured


def test_an_empty_command_is_no_command() -> None:
    job = process({"command": ""}, default_command=["runner", "--go"])
    assert job.command == ["runner", "--go"]
    assert not job.command_configured


def test_a_command_that_cannot_be_split_is_an_error() -> None:
    with pytest.raises(JobConfigError, match="quotation"):
        process({"command": "echo 'unterminated"})


def test_an_empty_template_is_the_default_one() -> None:
    assert process({"working_dir": "/w"}, base={}) == process({"working_dir": "/w"})


def test_a_field_of_the_wrong_type_is_an_error_that_does_not_quote_the_value() -> None:
    with pytest.raises(JobConfigError, match="`stream_output` must be true or false") as caught:
        process({"stream_output": None})
    assert "null" in caught.value.message
    with pytest.raises(JobConfigError, match="`labels`") as caught:
        process({"labels": {"token": 12345678}})
    assert "12345678" not in caught.value.message


def test_booleans_accept_the_words_pydantic_accepts() -> None:
    assert process({"stream_output": "no"}).stream_output is False
    assert process({"stream_output": 1}).stream_output is True


# --- docker template -----------------------------------------------------------------------


def test_the_default_docker_template_with_typical_job_variables() -> None:
    job = docker(
        {
            "image": "registry.local:5000/flows:1.2",
            "env": {"LOG_LEVEL": "debug"},
            "volumes": ["/data:/data:ro", "cache:/cache"],
            "networks": ["backend", "metrics"],
            "mem_limit": "512m",
            "memswap_limit": "1g",
            "auto_remove": True,
            "privileged": True,
            "stream_output": False,
            "image_pull_policy": "Never",
            "labels": {"team": "data"},
            "container_create_kwargs": {"user": "1000", "image": "ignored", "volumes": ["x"]},
        },
        environ={"HOME": "/worker"},
    )
    assert job.image == "registry.local:5000/flows:1.2"
    assert job.command == ["python", "-m", RUNNER_MODULE]
    assert not job.command_configured
    assert job.env == {**RUN_ENV, "LOG_LEVEL": "debug"}  # the worker's HOME is not inherited
    assert job.volumes == ["/data:/data:ro", "cache:/cache"]
    assert job.networks == ["backend", "metrics"]
    assert (job.mem_limit, job.memswap_limit) == ("512m", "1g")
    assert (job.auto_remove, job.privileged, job.stream_output) == (True, True, False)
    assert job.image_pull_policy == "Never"
    assert job.pull_policy() == "Never"
    assert job.network_mode is None
    assert job.effective_network_mode() is None  # networks are set
    assert job.extra_create_kwargs() == {"user": "1000"}
    assert job.registry_credentials is None
    assert job.labels == {
        "io.prefect.flow-run-id": "run-1",
        "io.prefect.flow-run-name": "happy-otter",
        "io.prefect.version": RUN.version,
        "team": "data",
    }
    assert job.name == "happy-otter"


def test_docker_defaults_from_the_template() -> None:
    job = docker({"image": "img:latest"})
    assert (job.auto_remove, job.privileged, job.stream_output) == (False, False, True)
    assert (job.volumes, job.networks) == ([], [])
    assert (job.mem_limit, job.memswap_limit, job.network_mode) == (None, None, None)
    assert job.container_create_kwargs is None
    assert job.extra_create_kwargs() == {}


def test_docker_labels_are_reverse_dns() -> None:
    assert docker_labels({"prefect.io/flow-run-id": "1", "a.b.c/d/e": "2", "plain": "3"}) == {
        "io.prefect.flow-run-id": "1",
        "c.b.a.d/e": "2",
        "plain": "3",
    }
    job = docker({"image": "i"}, context=FULL_RUN)
    assert job.labels["io.prefect.deployment-updated"] == "2024-05-01T10:00:00+00:00"
    assert job.labels["io.prefect.work-pool-name"] == "local"


def test_container_names_are_made_docker_safe() -> None:
    assert container_name("my job/happy otter") == "my-job-happy-otter"
    assert container_name("__.-x") == "x"
    assert container_name("Café_1,000") == "Cafe_1000"
    assert container_name("///") is None
    assert len(container_name("a" * 300) or "") == 250
    job = docker(
        {"image": "i", "name": "{{ ctx.flow.name }} / {{ ctx.flow_run.name }}"}, context=FULL_RUN
    )
    assert job.name == "etl-happy-otter"


def test_the_pull_policy_follows_the_tag_when_not_configured() -> None:
    assert docker({"image": "img"}).pull_policy() == "Always"
    assert docker({"image": "img:latest"}).pull_policy() == "Always"
    assert docker({"image": "reg:5000/team/img"}).pull_policy() == "Always"
    assert docker({"image": "reg:5000/team/img:1.2"}).pull_policy() == "IfNotPresent"
    assert docker({"image": "img@sha256:abc"}).pull_policy() == "IfNotPresent"
    assert image_tag("reg:5000/team/img:1.2") == "1.2"


def test_an_unknown_pull_policy_is_an_error() -> None:
    with pytest.raises(JobConfigError, match="image_pull_policy"):
        docker({"image": "i", "image_pull_policy": "Sometimes"})


def test_without_an_image_the_worker_default_applies_else_an_error() -> None:
    assert docker(default_image="reconciler-runner:1").image == "reconciler-runner:1"
    assert docker({"image": ""}, default_image="reconciler-runner:1").image == "reconciler-runner:1"
    with pytest.raises(JobConfigError, match="no image"):
        docker()


def test_a_docker_command_is_split_like_a_shell() -> None:
    job = docker({"image": "i", "command": "sh -c 'echo hi'"})
    assert job.command == ["sh", "-c", "echo hi"]
    assert job.command_configured


def test_a_local_api_url_of_the_worker_is_rewritten_for_a_bridge_network() -> None:
    base_env = {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    bridged = docker({"image": "i", "networks": ["n"]}, base_env=base_env)
    assert bridged.env["PREFECT_API_URL"] == "http://host.docker.internal:4200/api"
    assert bridged.effective_network_mode() is None
    # no networks, Linux, local API: the host network, where localhost works as it is
    hosted = docker({"image": "i"}, base_env=base_env)
    assert hosted.env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert hosted.effective_network_mode("linux") == "host"
    assert hosted.network_mode is None
    on_mac = docker({"image": "i"}, base_env=base_env, platform="darwin")
    assert on_mac.env["PREFECT_API_URL"] == "http://host.docker.internal:4200/api"


def test_volumes_are_checked_and_relative_binds_resolved() -> None:
    for good in ("/anon", "/h:/c", "/h:/c:rw", "./data:/data", "..:/up", "named_1.v:/c"):
        check_volume(good)
    for bad in ("", "relative", "/h:c", "a/b:/c", "/h:/c:zz", "-x:/c"):
        with pytest.raises(JobConfigError, match="invalid volume"):
            check_volume(bad)
    with pytest.raises(JobConfigError, match="invalid volume"):
        docker({"image": "i", "volumes": ["a/b:/c"]})
    job = docker({"image": "i", "volumes": ["./data:/data:ro", "../x:/x", "/abs:/abs", "v:/v"]})
    assert job.resolved_volumes("/work/dir") == [
        "/work/dir/data:/data:ro",
        "/work/x:/x",
        "/abs:/abs",
        "v:/v",
    ]


def test_registry_credentials_from_a_block() -> None:
    creds = {"username": "u", "password": "hunter22", "registry_url": "reg.local"}
    job = docker(
        {
            "image": "i",
            "registry_credentials": "{{ prefect.blocks.docker-registry-credentials.r }}",
        },
        blocks=lambda slug, name: (
            creds if (slug, name) == ("docker-registry-credentials", "r") else None
        ),
    )
    assert job.registry_credentials == RegistryCredentials("u", "hunter22", "reg.local", True)
    assert "hunter22" not in repr(job)
    assert "hunter22" in job.secrets
    with pytest.raises(JobConfigError, match="`password`"):
        docker({"image": "i", "registry_credentials": {"username": "u", "registry_url": "r"}})


# --- blocks and variables ------------------------------------------------------------------


def test_block_and_variable_references_are_resolved_from_the_lookups() -> None:
    blocks = {("secret", "api-token"): {"value": "s3cr3t-token"}}
    variables = {"region": "eu-west-1", "replicas": 3}
    job = process(
        {
            "env": {
                "TOKEN": "{{ prefect.blocks.secret.api-token }}",
                "REGION": "{{ prefect.variables.region }}",
                "WHERE": "in-{{ prefect.variables.region }}",
                "N": "{{ prefect.variables.replicas }}",
                "GONE": "{{ prefect.variables.nope }}",
            }
        },
        blocks=lambda slug, name: blocks.get((slug, name)),
        variables=variables.__getitem__,
    )
    assert job.env == {
        **RUN_ENV,
        "TOKEN": "s3cr3t-token",
        "REGION": "eu-west-1",
        "WHERE": "in-eu-west-1",
        "N": "3",
        "GONE": "",
    }
    assert job.secrets == frozenset({"s3cr3t-token"})
    assert "s3cr3t-token" not in repr(job)


def test_environment_values_that_plans_mask_are_secrets_of_the_job() -> None:
    environ = {"MY_SECRET": "from-the-env", "DB_PASSWORD": "pa55word", "REGION": "eu-west-1"}
    pool = template(
        {"env": {"CONNECTION": "{{ $MY_SECRET }}", "WHERE": "{{ $REGION }}"}, "image": "x:1"},
        {},
    )
    job = process(base=pool, environ=environ)
    assert job.env["CONNECTION"] == "from-the-env" and job.env["WHERE"] == "eu-west-1"
    # DB_PASSWORD is only inherited: not a value the job configuration handed to the flow.
    assert job.secrets == frozenset({"from-the-env"})
    assert docker(base=pool, environ=environ).secrets == frozenset({"from-the-env"})


def test_a_value_the_plan_already_read_from_a_secret_variable_stays_a_secret() -> None:
    environ = {"API_TOKEN": "t0ken-value", "HOME": "/root"}
    job = process({"env": {"UPSTREAM": "t0ken-value", "WHERE": "/root"}}, environ=environ)
    assert job.secrets == frozenset({"t0ken-value"})


def test_a_missing_block_is_an_error_naming_where_it_was() -> None:
    with pytest.raises(JobConfigError, match=r"`env\.TOKEN`.*Block not found: 'tok'"):
        process({"env": {"TOKEN": "{{ prefect.blocks.secret.tok }}"}})


def test_references_are_left_for_the_lookups_by_rendering() -> None:
    rendered = render(process_template(), {"env": {"T": "{{ prefect.blocks.secret.t }}"}})
    assert rendered["env"] == {"T": "{{ prefect.blocks.secret.t }}"}
    resolved, secrets = resolve_job_references(rendered, blocks=lambda slug, name: {"value": "xyz"})
    assert resolved["env"] == {"T": "xyz"}
    assert secrets == frozenset({"xyz"})


def test_without_a_variable_lookup_variables_are_empty() -> None:
    resolved, _ = resolve_job_references({"a": "{{ prefect.variables.x }}", "b": 1})
    assert resolved == {"a": "", "b": 1}
