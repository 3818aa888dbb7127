"""Work-pool base job templates: Prefect's defaults, template checks and job-variable checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.errors import UserError
from reconciler.prefect_rules.job_templates import (
    POOL_TYPES,
    WORKER_POOL_TYPES,
    JobTemplateError,
    JobVariableProblem,
    default_base_job_template,
    job_variable_problems,
    template_problems,
    with_job_variable_defaults,
)
from reconciler.prefect_rules.templating import KNOWN_AFTER_BUILD


@pytest.fixture
def docker() -> dict[str, Any]:
    return default_base_job_template("docker")


@pytest.fixture
def process() -> dict[str, Any]:
    return default_base_job_template("process")


def paths(problems: list[JobVariableProblem]) -> list[tuple[str | int, ...]]:
    return [problem.path for problem in problems]


def small_template(variables: dict[str, Any]) -> dict[str, Any]:
    """A template whose job configuration uses every declared variable."""
    names = variables.get("properties", {})
    return {
        "job_configuration": {name: "{{ " + name + " }}" for name in names},
        "variables": {"type": "object", **variables},
    }


# --- default_base_job_template ----------------------------------------------------------------


def test_pools_may_be_process_docker_or_kubernetes_and_our_worker_runs_two() -> None:
    assert POOL_TYPES == ("process", "docker", "kubernetes")
    assert WORKER_POOL_TYPES == ("process", "docker")
    assert set(WORKER_POOL_TYPES) <= set(POOL_TYPES)


def test_the_worker_has_a_backend_for_each_type_it_runs_and_no_other() -> None:
    from reconciler.worker.backends import BACKENDS

    assert set(BACKENDS) == set(WORKER_POOL_TYPES)


def test_the_pools_schema_allows_exactly_the_pool_types() -> None:
    schema = json.loads((Path(__file__).parents[2] / "schemas/work-pools.schema.json").read_text())
    assert schema["$defs"]["work_pool"]["properties"]["type"]["enum"] == list(POOL_TYPES)


def test_process_job_configuration_is_prefects(process: dict[str, Any]) -> None:
    assert process["job_configuration"] == {
        "command": "{{ command }}",
        "env": "{{ env }}",
        "labels": "{{ labels }}",
        "name": "{{ name }}",
        "stream_output": "{{ stream_output }}",
        "working_dir": "{{ working_dir }}",
    }
    assert set(process["variables"]["properties"]) == set(process["job_configuration"])


def test_process_variables_spot_checks(process: dict[str, Any]) -> None:
    properties = process["variables"]["properties"]
    assert properties["stream_output"]["default"] is True
    assert properties["stream_output"]["type"] == "boolean"
    assert properties["working_dir"]["anyOf"] == [
        {"format": "path", "type": "string"},
        {"type": "null"},
    ]
    assert properties["working_dir"]["title"] == "Working Directory"
    assert properties["env"]["additionalProperties"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}]
    }
    assert "default" not in properties["env"]
    assert properties["command"]["description"].startswith("The command to use when starting")
    assert properties["name"]["default"] is None


def test_docker_job_configuration_is_prefects(docker: dict[str, Any]) -> None:
    names = [
        "command", "env", "labels", "name", "image", "registry_credentials",
        "image_pull_policy", "networks", "network_mode", "auto_remove", "volumes",
        "stream_output", "mem_limit", "memswap_limit", "privileged", "container_create_kwargs",
    ]  # fmt: skip
    assert docker["job_configuration"] == {name: "{{ " + name + " }}" for name in names}
    assert list(docker["variables"]["properties"]) == names


def test_docker_variables_spot_checks(docker: dict[str, Any]) -> None:
    variables = docker["variables"]
    properties = variables["properties"]
    assert properties["image"] == {
        "type": "string",
        "title": "Image",
        "examples": ["docker.io/prefecthq/prefect:3-latest"],
    }  # no default: the worker machine's Prefect image applies
    assert properties["registry_credentials"]["anyOf"][0] == {
        "$ref": "#/$defs/DockerRegistryCredentials"
    }
    assert properties["image_pull_policy"]["anyOf"][0]["enum"] == [
        "IfNotPresent",
        "Always",
        "IfPossible",
        "Never",
    ]
    assert (properties["auto_remove"]["default"], properties["privileged"]["default"]) == (
        False,
        False,
    )
    credentials = variables["$defs"]["DockerRegistryCredentials"]
    assert credentials["required"] == ["username", "password", "registry_url"]
    assert credentials["block_type_slug"] == "docker-registry-credentials"
    assert credentials["properties"]["reauth"]["default"] is True


def test_default_template_is_a_fresh_copy_each_time() -> None:
    first = default_base_job_template("docker")
    first["variables"]["properties"]["image"]["default"] = "mine"
    first["job_configuration"].clear()
    second = default_base_job_template("docker")
    assert "default" not in second["variables"]["properties"]["image"]
    assert second["job_configuration"]["image"] == "{{ image }}"


def test_unknown_pool_type_names_the_supported_types() -> None:
    with pytest.raises(ValueError, match=r"'ecs'.*process, docker, kubernetes"):
        default_base_job_template("ecs")


def test_kubernetes_template_passes_template_checks_and_is_declarable() -> None:
    template = default_base_job_template("kubernetes")
    assert template_problems(template) == []
    assert "kubernetes" in POOL_TYPES  # work-pools.yaml declares it
    assert "kubernetes" not in WORKER_POOL_TYPES  # Prefect's kubernetes worker runs it
    assert job_variable_problems(template, {"namespace": "flows", "finished_job_ttl": 60}) == []
    assert job_variable_problems(template, {"image_pull_policy": "ALWAYS"}) != []


@pytest.mark.parametrize("pool_type", POOL_TYPES)
def test_default_templates_pass_template_checks(pool_type: str) -> None:
    assert template_problems(default_base_job_template(pool_type)) == []


# --- with_job_variable_defaults ---------------------------------------------------------------


def test_defaults_are_set_on_a_copy(docker: dict[str, Any]) -> None:
    updated = with_job_variable_defaults(docker, {"image": "repo/app:1", "env": {"A": "1"}})
    assert updated["variables"]["properties"]["image"]["default"] == "repo/app:1"
    assert updated["variables"]["properties"]["env"]["default"] == {"A": "1"}
    assert "default" not in docker["variables"]["properties"]["image"]


def test_defaults_replace_existing_ones(process: dict[str, Any]) -> None:
    updated = with_job_variable_defaults(process, {"stream_output": False})
    assert updated["variables"]["properties"]["stream_output"]["default"] is False


def test_undeclared_default_suggests_the_closest_variable(docker: dict[str, Any]) -> None:
    with pytest.raises(JobTemplateError) as caught:
        with_job_variable_defaults(docker, {"imgae": "x"})
    assert 'did you mean "image"?' in caught.value.message
    assert caught.value.hint is not None
    assert "image_pull_policy" in caught.value.hint


def test_undeclared_default_without_close_match(process: dict[str, Any]) -> None:
    with pytest.raises(JobTemplateError) as caught:
        with_job_variable_defaults(process, {"zzz": 1})
    assert '"zzz" is not a job variable' in caught.value.message
    assert "did you mean" not in caught.value.message


def test_job_template_error_is_a_user_error() -> None:
    with pytest.raises(UserError):
        with_job_variable_defaults({}, {"image": "x"})


# --- template_problems ------------------------------------------------------------------------


def test_empty_template_is_allowed() -> None:
    assert template_problems({}) == []


@pytest.mark.parametrize(
    ("template", "missing"),
    [
        ({"job_configuration": {"a": "{{ a }}"}}, "variables"),
        ({"variables": {"properties": {}}}, "job_configuration"),
        ({"job_configuration": {}, "variables": {"properties": {}}}, "job_configuration"),
    ],
)
def test_both_sections_are_needed(template: dict[str, Any], missing: str) -> None:
    [problem] = template_problems(template)
    assert "both a `job_configuration` key and a `variables` key" in problem
    assert f"missing or empty: {missing}" in problem


def test_undeclared_placeholders_are_listed() -> None:
    template = {
        "job_configuration": {
            "command": "run {{ cmd }} {{ declared }}",
            "nested": {"deep": ["{{ other }}"]},
        },
        "variables": {"properties": {"declared": {"type": "string"}}},
    }
    [problem] = template_problems(template)
    assert 'undeclared variable(s): "cmd", "other". ' in problem


def test_block_and_context_placeholders_count_as_undeclared() -> None:
    template = {
        "job_configuration": {
            "token": "{{ prefect.blocks.secret.tok }}",
            "n": "{{ ctx.flow.name }}",
        },
        "variables": {"properties": {}},
    }
    [problem] = template_problems(template)
    assert '"ctx.flow.name", "prefect.blocks.secret.tok"' in problem
    assert "use them in job variable values instead" in problem


def test_variables_must_be_a_valid_json_schema() -> None:
    template = small_template({"properties": {"image": {"type": "strin"}}})
    [problem] = template_problems(template)
    assert "not a valid JSON Schema" in problem
    assert "variables.properties.image.type" in problem


def test_job_configuration_must_be_a_mapping() -> None:
    template = {"job_configuration": ["{{ a }}"], "variables": {"properties": {}}}
    assert template_problems(template) == [
        "`job_configuration` must be a mapping of job settings to values, got list"
    ]


# --- job_variable_problems --------------------------------------------------------------------


def test_valid_job_variables_have_no_problems(docker: dict[str, Any]) -> None:
    job_variables = {
        "image": "repo/app:1",
        "env": {"A": "1"},
        "volumes": ["/data:/data"],
        "image_pull_policy": "Always",
        "registry_credentials": {"username": "u", "password": "p", "registry_url": "r"},
    }
    assert job_variable_problems(docker, job_variables, ignore_required=False) == []


def test_image_must_be_a_string_for_docker(docker: dict[str, Any]) -> None:
    assert job_variable_problems(docker, {"image": 5}) == [
        JobVariableProblem(
            ("image",), 'job variable "image" must be a string or null, got 5 (integer)'
        )
    ]


def test_wrong_type_for_a_boolean(process: dict[str, Any]) -> None:
    [problem] = job_variable_problems(process, {"stream_output": "yes"})
    assert problem.path == ("stream_output",)
    assert "must be a boolean (true or false) or null" in problem.message
    assert 'got "yes" (string)' in problem.message


@pytest.mark.parametrize("name", ["image", "env", "stream_output", "volumes", "command"])
def test_null_is_accepted_for_optional_variables(docker: dict[str, Any], name: str) -> None:
    assert job_variable_problems(docker, {name: None}) == []


def test_unknown_job_variables_pass(process: dict[str, Any]) -> None:
    assert job_variable_problems(process, {"not_a_variable": {"anything": 1}}) == []


def test_env_values_must_be_strings_or_null(process: dict[str, Any]) -> None:
    problems = job_variable_problems(process, {"env": {"OK": "1", "UNSET": None, "N": 3}})
    assert problems == [
        JobVariableProblem(
            ("env", "N"), 'job variable "env.N" must be a string or null, got 3 (integer)'
        )
    ]


def test_list_items_are_checked_with_their_index(docker: dict[str, Any]) -> None:
    problems = job_variable_problems(docker, {"volumes": ["/a:/a", 7], "networks": "bridge"})
    assert paths(problems) == [("networks",), ("volumes", 1)]
    assert 'job variable "volumes[1]" must be a string' in problems[1].message


def test_enum_lists_the_allowed_values(docker: dict[str, Any]) -> None:
    [problem] = job_variable_problems(docker, {"image_pull_policy": "Sometimes"})
    assert problem.message == (
        'job variable "image_pull_policy" must be one of "IfNotPresent", "Always", '
        '"IfPossible", "Never", got "Sometimes" (string)'
    )


def test_registry_credentials_are_checked_through_defs(docker: dict[str, Any]) -> None:
    credentials = {"username": 1, "password": "p", "registry_url": "r", "reauth": "yes"}
    problems = job_variable_problems(docker, {"registry_credentials": credentials})
    assert paths(problems) == [
        ("registry_credentials", "reauth"),
        ("registry_credentials", "username"),
    ]
    assert "must be a boolean" in problems[0].message
    assert "must be a string" in problems[1].message


def test_registry_credentials_of_the_wrong_type(docker: dict[str, Any]) -> None:
    [problem] = job_variable_problems(docker, {"registry_credentials": ["u", "p"]})
    assert problem.message.startswith(
        'job variable "registry_credentials" must be a mapping or null, got ["u", "p"] (list)'
    )


@pytest.mark.parametrize(
    "job_variables",
    [
        {"image": "{{ build-image.image }}"},
        {"stream_output": "{{ prefect.variables.stream }}"},
        {"auto_remove": "x-{{ $AUTO_REMOVE }}"},
        {"registry_credentials": "{{ prefect.blocks.docker-registry-credentials.prod }}"},
        {"registry_credentials": {"username": "u", "reauth": "{{ prefect.variables.r }}"}},
        {"env": "{{ prefect.blocks.json.env }}"},
        {"name": "{{ ctx.flow_run.name }}"},
    ],
)
def test_placeholder_strings_are_not_type_checked(
    docker: dict[str, Any], job_variables: dict[str, Any]
) -> None:
    assert job_variable_problems(docker, job_variables) == []


def test_values_known_after_build_are_not_type_checked(docker: dict[str, Any]) -> None:
    job_variables = {"image": KNOWN_AFTER_BUILD, "env": {"TAG": KNOWN_AFTER_BUILD}}
    assert job_variable_problems(docker, job_variables) == []


def test_jinja_like_text_is_not_a_placeholder(docker: dict[str, Any]) -> None:
    [problem] = job_variable_problems(docker, {"auto_remove": "{{ a | default('x') }}"})
    assert problem.path == ("auto_remove",)


def test_required_is_ignored_by_default_and_enforced_on_request(docker: dict[str, Any]) -> None:
    job_variables = {"registry_credentials": {"username": "u"}}
    assert job_variable_problems(docker, job_variables) == []
    problems = job_variable_problems(docker, job_variables, ignore_required=False)
    assert paths(problems) == [
        ("registry_credentials", "password"),
        ("registry_credentials", "registry_url"),
    ]
    assert 'is required but missing: add it to "registry_credentials"' in problems[0].message


def test_top_level_required_variable() -> None:
    template = small_template({"properties": {"image": {"type": "string"}}, "required": ["image"]})
    assert job_variable_problems(template, {}) == []
    [problem] = job_variable_problems(template, {}, ignore_required=False)
    assert problem.path == ("image",)
    assert "give it a default in the work pool" in problem.message
    assert job_variable_problems(template, {"image": "x"}, ignore_required=False) == []


def test_required_variables_may_come_from_pool_defaults() -> None:
    template = small_template({"properties": {"image": {"type": "string"}}, "required": ["image"]})
    with_default = with_job_variable_defaults(template, {"image": "repo/app:1"})
    assert job_variable_problems(with_default, {}, ignore_required=False) == []


def test_required_variable_may_not_be_null() -> None:
    template = small_template({"properties": {"image": {"type": "string"}}, "required": ["image"]})
    [problem] = job_variable_problems(template, {"image": None})
    assert problem.message == 'job variable "image" must be a string, got null'


def test_pool_defaults_are_validated_with_the_job_variables(docker: dict[str, Any]) -> None:
    template = with_job_variable_defaults(docker, {"registry_credentials": {"username": "u"}})
    [first, _] = job_variable_problems(template, {}, ignore_required=False)
    assert first.message.startswith(
        'job variable "registry_credentials.password" (from the work pool\'s default) is required'
    )
    overridden = {"registry_credentials": None}
    assert job_variable_problems(template, overridden, ignore_required=False) == []


def test_invalid_pool_default_is_dropped_and_required_not_enforced() -> None:
    # Prefect ignores a default that does not fit its schema; it then cannot know whether
    # required variables would have been satisfied, so it does not enforce them.
    template = small_template(
        {
            "properties": {"image": {"type": "string"}, "count": {"type": "integer"}},
            "required": ["image"],
        }
    )
    broken = with_job_variable_defaults(template, {"count": "many"})
    assert job_variable_problems(broken, {}, ignore_required=False) == []
    assert paths(job_variable_problems(template, {}, ignore_required=False)) == [("image",)]


def test_problems_come_in_a_stable_order(docker: dict[str, Any]) -> None:
    job_variables = {"volumes": [1, "ok", 2], "image": 3, "env": {"B": 1, "A": 2}}
    problems = job_variable_problems(docker, job_variables)
    assert paths(problems) == [
        ("env", "A"),
        ("env", "B"),
        ("image",),
        ("volumes", 0),
        ("volumes", 2),
    ]
    assert job_variable_problems(docker, dict(reversed(job_variables.items()))) == problems


def test_definitions_and_block_references_resolve() -> None:
    credentials = {
        "title": "Creds",
        "block_type_slug": "creds",
        "type": "object",
        "properties": {"username": {"type": "string"}},
        "required": ["username"],
    }
    template = small_template(
        {
            "definitions": {"Creds": credentials},
            "properties": {"creds": {"allOf": [{"$ref": "#/definitions/Creds"}]}},
        }
    )
    reference = {"$ref": {"block_document_id": "5f1b7c44-5c52-4a4e-9d2e-1f0c1d2e3f4a"}}
    assert job_variable_problems(template, {"creds": reference}) == []
    assert job_variable_problems(template, {"creds": {"username": "u"}}) == []
    assert job_variable_problems(template, {"creds": {"username": 5}}) != []


def test_top_level_additional_properties_false_rejects_unknown_variables() -> None:
    template = small_template(
        {"properties": {"image": {"type": "string"}}, "additionalProperties": False}
    )
    [problem] = job_variable_problems(template, {"imgae": "x"})
    assert problem.path == ()
    assert "'imgae' was unexpected" in problem.message


def test_empty_template_checks_nothing() -> None:
    assert job_variable_problems({}, {"image": 5}) == []


def test_invalid_variables_schema_is_reported_as_a_template_error() -> None:
    template = small_template({"properties": {"image": {"type": "strin"}}})
    with pytest.raises(JobTemplateError, match="invalid `variables` schema"):
        job_variable_problems(template, {"image": "x"})


def test_dangling_ref_is_reported_as_a_template_error() -> None:
    template = small_template({"properties": {"creds": {"$ref": "#/$defs/Missing"}}})
    with pytest.raises(JobTemplateError, match='"#/\\$defs/Missing"'):
        job_variable_problems(template, {"creds": {}})


def test_a_changed_copy_of_a_template_is_checked_against_its_own_schema(
    process: dict[str, Any],
) -> None:
    assert job_variable_problems(process, {"stream_output": "yes"}) != []
    changed = copy.deepcopy(process)
    changed["variables"]["properties"]["stream_output"] = {"type": "string"}
    assert job_variable_problems(changed, {"stream_output": "yes"}) == []
    assert job_variable_problems(process, {"stream_output": "yes"}) != []
