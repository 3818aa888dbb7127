"""The desired-state builder (reconciler/desired/build.py) and the loading rules under it: what a
user sees in the plan, and where each problem is reported (file:line:column)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from textwrap import dedent
from typing import Any

from reconciler.core.diagnostics import Diagnostic
from reconciler.desired.build import BuildOptions, BuildResult, RepoInput, build_desired
from reconciler.model.observed import ObservedState
from reconciler.model.resources import UNKNOWN_VALUE, Kind, canonical_json, content_hash
from reconciler.sources.base import MemorySnapshot

FLOWS = """\
from prefect import flow


@flow
def etl(day: int = 1, region: str = "eu"):
    pass


@flow
def load(path: str):
    pass
"""
POOLS = """\
work_pools:
  - {name: etl, type: process}
  - {name: containers, type: docker}
"""


def build(
    prefect_yaml: str,
    *,
    files: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    variables: Mapping[str, Any] | None = None,
    blocks: Mapping[tuple[str, str], Any] | None = None,
    skip_build: bool = False,
) -> BuildResult:
    content = {"flows/etl.py": FLOWS, "work-pools.yaml": POOLS, **(files or {})}
    if prefect_yaml:
        content["prefect.yaml"] = dedent(prefect_yaml).lstrip("\n")
    observed = ObservedState(0, variables=variables or {}, blocks=blocks or {})
    options = BuildOptions(environ=environ or {}, build_outputs_known=skip_build)
    return build_desired([RepoInput(MemorySnapshot(content))], observed, options)


def deployment(result: BuildResult, key: str = "etl/nightly") -> dict[str, Any]:
    assert result.desired is not None, rendered(result.diagnostics)
    found = {r.key: r.spec for r in result.desired.resources if r.kind is Kind.DEPLOYMENT}
    assert key in found, sorted(found)
    return found[key]


def rendered(diagnostics: list[Diagnostic]) -> str:
    return "\n".join(d.render() for d in diagnostics)


def errors(result: BuildResult) -> list[str]:
    return [f"{d.location}: {d.message}" for d in result.diagnostics if d.is_error]


def warnings(result: BuildResult) -> list[str]:
    return [f"{d.location}: {d.message}" for d in result.diagnostics if not d.is_error]


def one_deployment(body: str, top: str = "") -> str:
    """A prefect.yaml with `top` above one deployment `nightly` of etl() on pool etl."""
    lines = dedent(body).strip("\n").splitlines()
    return (
        dedent(top).lstrip("\n")
        + "deployments:\n  - name: nightly\n    entrypoint: flows/etl.py:etl\n"
        + "".join(f"    {line}\n" for line in lines)
    )


ON_ETL = "work_pool: {name: etl}"


# --- templating ----------------------------------------------------------------------------------


def test_variables_are_resolved_before_the_environment() -> None:
    result = build(
        one_deployment(
            f"""
            {ON_ETL}
            parameters: {{region: "{{{{ prefect.variables.target }}}}"}}
            description: "{{{{ $DESCRIPTION }}}}"
            """
        ),
        variables={"target": "{{ $REGION }}"},
        environ={"REGION": "us", "DESCRIPTION": "{{ prefect.variables.target }}"},
    )
    spec = deployment(result)
    assert spec["parameters"] == {"region": "us"}  # the variable's text went through $REGION
    assert spec["description"] == "{{ prefect.variables.target }}"  # env values are not read again


def test_a_whole_value_variable_keeps_its_type() -> None:
    result = build(
        one_deployment(f'{ON_ETL}\nparameters: {{day: "{{{{ prefect.variables.day }}}}"}}'),
        variables={"day": 7},
    )
    assert deployment(result)["parameters"] == {"day": 7}


def test_an_unset_variable_is_an_empty_string_with_a_warning() -> None:
    result = build(
        one_deployment(f'{ON_ETL}\nparameters: {{region: "x{{{{ prefect.variables.nope }}}}"}}')
    )
    assert deployment(result)["parameters"] == {"region": "x"}
    assert warnings(result) == [
        'memory/prefect.yaml:5:26: variable "nope" is not set; Prefect would use an empty string'
    ]


def test_block_references_are_checked_but_kept_as_written() -> None:
    body = """
        work_pool:
          name: etl
          job_variables: {env: {TOKEN: "{{ prefect.blocks.secret.token }}"}}
        """
    kept = build(one_deployment(body), blocks={("secret", "token"): {"value": "s3cr3t"}})
    env = deployment(kept)["job_variables"]["env"]
    assert env == {"TOKEN": "{{ prefect.blocks.secret.token }}"}
    assert "s3cr3t" in kept.secrets

    missing = build(one_deployment(body))
    assert errors(missing) == [
        'memory/prefect.yaml:6:36: "{{ prefect.blocks.secret.token }}" refers to a block that '
        "is not defined"
    ]


def test_step_outputs_are_known_after_build() -> None:
    result = build(
        one_deployment(
            """
            work_pool:
              name: containers
              job_variables:
                image: "{{ build-image.image }}"
                command: "run {{ image_name }}:{{ tag }}"
            """,
            top="""
            build:
              - prefect_docker.deployments.steps.build_docker_image:
                  id: build-image
                  image_name: registry.example/etl
                  tag: latest
            """,
        )
    )
    variables = deployment(result)["job_variables"]
    assert variables == {"image": UNKNOWN_VALUE, "command": UNKNOWN_VALUE}


def test_a_name_no_step_returns_is_removed_with_a_warning() -> None:
    # build_docker_image returns image, image_name, tag, image_id, additional_tags: no directory
    result = build(
        one_deployment(
            """
            work_pool:
              name: containers
              job_variables: {working_dir: "{{ directory }}", image: "{{ image }}"}
            """,
            top="""
            build:
              - prefect_docker.deployments.steps.build_docker_image: {image_name: etl}
            """,
        )
    )
    assert deployment(result)["job_variables"] == {"image": UNKNOWN_VALUE}
    assert warnings(result) == [
        'memory/prefect.yaml:8:36: placeholder "{{ directory }}" has no value; the key is '
        "removed (or the text left empty), as Prefect does"
    ]


def test_shell_step_outputs_are_stdout_and_stderr() -> None:
    result = build(
        one_deployment(
            f'{ON_ETL}\nversion: "{{{{ get-commit.stdout }}}}"\ndescription: "{{{{ stderr }}}}"',
            top="""
            build:
              - prefect.deployments.steps.run_shell_script:
                  id: get-commit
                  script: git rev-parse --short HEAD
            """,
        )
    )
    spec = deployment(result)
    assert spec["version"] == UNKNOWN_VALUE
    assert spec["description"] == UNKNOWN_VALUE


def test_skip_build_removes_step_outputs_with_a_warning_at_their_line() -> None:
    result = build(
        one_deployment(
            """
            work_pool:
              name: containers
              job_variables:
                image: "{{ build-image.image }}"
            """,
            top="""
            build:
              - prefect_docker.deployments.steps.build_docker_image:
                  id: build-image
                  image_name: etl
            """,
        ),
        skip_build=True,
    )
    assert deployment(result)["job_variables"] == {}
    assert warnings(result) == [
        'memory/prefect.yaml:11:16: placeholder "{{ build-image.image }}" has no value; the key '
        "is removed (or the text left empty), as Prefect does"
    ]


def test_ctx_placeholders_are_left_for_the_worker() -> None:
    result = build(
        one_deployment(
            """
            work_pool:
              name: etl
              job_variables: {name: "{{ ctx.flow_run.name }}"}
            """
        )
    )
    assert deployment(result)["job_variables"] == {"name": "{{ ctx.flow_run.name }}"}


def test_pull_steps_are_stored_as_written_with_the_environment_applied() -> None:
    result = build(
        one_deployment(
            ON_ETL,
            top="""
            pull:
              - prefect.deployments.steps.git_clone:
                  id: clone
                  repository: "{{ $REPO_URL }}"
                  access_token: "{{ prefect.blocks.secret.token }}"
                  requires: prefect-github>=0.2
              - prefect.deployments.steps.set_working_directory:
                  directory: "{{ clone.directory }}"
            """,
        ),
        environ={"REPO_URL": "https://example.invalid/etl.git"},
        blocks={("secret", "token"): {"value": "t"}},
    )
    assert deployment(result)["pull_steps"] == [
        {
            "prefect.deployments.steps.git_clone": {
                "id": "clone",
                "repository": "https://example.invalid/etl.git",
                "access_token": "{{ prefect.blocks.secret.token }}",
                "requires": "prefect-github>=0.2",
            }
        },
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ clone.directory }}"}},
    ]


def test_no_pull_section_clones_the_repository_and_an_empty_list_means_none() -> None:
    assert deployment(build(one_deployment(ON_ETL)))["pull_steps"] == [
        {"prefect.deployments.steps.git_clone": {"id": "clone-repository", "repository": "memory"}}
    ]
    assert deployment(build(one_deployment(f"{ON_ETL}\npull: []")))["pull_steps"] == []


def test_a_file_in_a_subdirectory_works_in_its_directory_of_the_clone() -> None:
    result = build(
        "",
        files={
            "teams/etl/prefect.yaml": one_deployment(ON_ETL),
            "teams/etl/flows/etl.py": FLOWS,
        },
    )
    assert deployment(result)["pull_steps"][1] == {
        "prefect.deployments.steps.set_working_directory": {
            "directory": "{{ clone-repository.directory }}/teams/etl"
        }
    }


def test_an_image_without_a_build_works_in_opt_prefect_and_warns_at_the_deployment() -> None:
    result = build(one_deployment("work_pool: {name: etl, job_variables: {image: acme/etl:1}}"))
    assert deployment(result)["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect"}}
    ]
    assert any(
        w.startswith("memory/prefect.yaml:4:51") and "/opt/prefect of the image" in w
        for w in warnings(result)
    ), warnings(result)


# --- parameters ----------------------------------------------------------------------------------


def test_unknown_parameter_is_an_error_with_did_you_mean() -> None:
    result = build(one_deployment(f"{ON_ETL}\nparameters: {{dya: 3}}"))
    problem = next(d for d in result.diagnostics if d.is_error)
    assert problem.message == 'parameter "dya" is not a parameter of flow etl() in flows/etl.py'
    assert problem.hint == 'did you mean "day"?'
    assert str(problem.location) == "memory/prefect.yaml:5:23"


def test_parameter_of_the_wrong_type_is_an_error_unless_enforcement_is_off() -> None:
    wrong = one_deployment(f"{ON_ETL}\nparameters: {{region: 3}}")
    assert [e for e in errors(build(wrong)) if "parameter region: 3 does not fit" in e]
    relaxed = build(wrong + "    enforce_parameter_schema: false\n")
    assert deployment(relaxed)["parameters"] == {"region": 3}


def test_required_parameters_are_demanded_only_when_enforcement_is_written() -> None:
    load = "deployments:\n  - name: nightly\n    entrypoint: flows/etl.py:load\n    " + ON_ETL
    assert deployment(build(load), "load/nightly")["parameters"] == {}
    strict = build(load + "\n    enforce_parameter_schema: true\n")
    assert errors(strict) == [
        "memory/prefect.yaml:2:5: required parameter(s) of load() not given: path"
    ]


def test_placeholders_in_parameters_are_resolved_or_removed() -> None:
    result = build(
        one_deployment(
            f'{ON_ETL}\nparameters: {{region: "{{{{ $REGION }}}}", day: "{{{{ x }}}}"}}'
        ),
        environ={"REGION": "eu-west"},
    )
    assert deployment(result)["parameters"] == {"region": "eu-west"}  # `day` had no value


def test_dates_in_parameters_are_iso_text_as_prefect_dumps_them() -> None:
    result = build(one_deployment(f"{ON_ETL}\nparameters: {{region: 2024-05-01}}"))
    problems = errors(result)
    assert problems == []  # a date is text to the flow's `region: str`
    assert deployment(result)["parameters"] == {"region": "2024-05-01"}


# --- entrypoints ---------------------------------------------------------------------------------


def test_missing_entrypoint_file_is_an_error_at_the_entrypoint() -> None:
    result = build("deployments:\n  - name: nightly\n    entrypoint: flows/nope.py:etl\n")
    assert errors(result)[0] == (
        "memory/prefect.yaml:3:17: entrypoint file 'flows/nope.py' not found in the repository"
    )


def test_entrypoint_escaping_the_repository_is_an_error() -> None:
    result = build("deployments:\n  - name: nightly\n    entrypoint: ../etl.py:etl\n    " + ON_ETL)
    assert errors(result) == [
        "memory/prefect.yaml:3:17: entrypoint path '../etl.py' escapes the repository"
    ]


def test_a_deployment_without_entrypoint_pool_or_name_is_an_error_at_its_place() -> None:
    result = build("deployments:\n  - description: orphan\n")
    assert errors(result) == [
        "memory/prefect.yaml:2:5: deployment has no entrypoint",
        "memory/prefect.yaml:2:5: deployment has no name",
        "memory/prefect.yaml:2:5: deployment has no work pool",
    ]


def test_module_style_entrypoint_and_py_suffix_of_the_name() -> None:
    result = build(
        "deployments:\n  - name: nightly.py\n    entrypoint: flows.etl.etl\n    " + ON_ETL + "\n"
    )
    assert deployment(result)["entrypoint"] == "flows.etl.etl"


# --- pools and job variables -------------------------------------------------------------------


def test_unknown_pool_is_an_error_with_did_you_mean() -> None:
    result = build(one_deployment("work_pool: {name: elt}"))
    problem = next(d for d in result.diagnostics if d.is_error)
    assert problem.message == 'work pool "elt" does not exist'
    assert problem.hint == 'did you mean "etl"?'
    assert str(problem.location) == "memory/prefect.yaml:4:23"


def test_job_variables_the_pool_schema_rejects_are_errors_at_their_line() -> None:
    result = build(
        one_deployment(
            """
            work_pool:
              name: etl
              job_variables:
                env: {DEBUG: [1]}
                stream_output: "loud"
            """
        )
    )
    assert errors(result) == [
        'memory/prefect.yaml:7:22: job variable "env.DEBUG" must be a string or null, got [1] '
        '(list) (work pool "etl")',
        'memory/prefect.yaml:8:24: job variable "stream_output" must be a boolean (true or '
        'false) or null, got "loud" (string) (work pool "etl")',
    ]


K8S_POOLS = """\
work_pools:
  - name: etl
    type: kubernetes
    job_variables: {namespace: flows}
"""


def build_k8s(prefect_yaml: str, *, worker_types: frozenset[str] | None) -> BuildResult:
    content = {"flows/etl.py": FLOWS, "work-pools.yaml": K8S_POOLS, "prefect.yaml": prefect_yaml}
    options = BuildOptions(build_outputs_known=True, worker_types=worker_types)
    return build_desired([RepoInput(MemorySnapshot(content))], ObservedState(0), options)


def test_a_kubernetes_pool_is_declared_with_its_template_and_job_variable_defaults() -> None:
    result = build_k8s(one_deployment(ON_ETL), worker_types=None)
    assert result.diagnostics == []
    assert result.desired is not None
    pool = next(r.spec for r in result.desired.resources if r.kind is Kind.WORK_POOL)
    assert pool["type"] == "kubernetes"
    variables = pool["base_job_template"]["variables"]["properties"]
    assert variables["namespace"]["default"] == "flows"
    assert "job_manifest" in pool["base_job_template"]["job_configuration"]


def test_job_variables_of_a_kubernetes_pool_are_checked_against_its_template() -> None:
    result = build_k8s(
        one_deployment(
            """
            work_pool:
              name: etl
              job_variables:
                backoff_limit: "twice"
                image_pull_policy: ALWAYS
            """
        ),
        worker_types=None,
    )
    assert errors(result) == [
        'memory/prefect.yaml:7:24: job variable "backoff_limit" must be an integer or null, '
        'got "twice" (string) (work pool "etl")',
        'memory/prefect.yaml:8:28: job variable "image_pull_policy" must be one of '
        '"IfNotPresent", "Always", "Never", got "ALWAYS" (string) (work pool "etl")',
    ]


def test_an_unknown_default_of_a_kubernetes_pool_is_an_error_with_did_you_mean() -> None:
    pools = K8S_POOLS.replace("namespace: flows", "namespce: flows")
    content = {
        "flows/etl.py": FLOWS,
        "work-pools.yaml": pools,
        "prefect.yaml": one_deployment(ON_ETL),
    }
    options = BuildOptions(build_outputs_known=True, worker_types=None)
    result = build_desired([RepoInput(MemorySnapshot(content))], ObservedState(0), options)
    assert result.desired is None
    assert errors(result)[0] == (
        'memory/work-pools.yaml:4:20: "namespce" is not a job variable of this base job '
        'template (did you mean "namespace"?)'
    )


def test_a_kubernetes_pool_for_our_store_is_a_warning_at_its_type_not_an_error() -> None:
    result = build_k8s(one_deployment(ON_ETL), worker_types=frozenset({"process", "docker"}))
    assert result.desired is not None  # applied all the same
    assert errors(result) == []
    assert warnings(result) == [
        'memory/work-pools.yaml:3:11: work pool "etl" is of type kubernetes, which '
        "reconciler's worker does not run (docker, process): it is applied, but its flow runs "
        "wait until a worker for that type takes them"
    ]
    hint = result.diagnostics[0].hint
    assert hint is not None and "--store prefect+http://HOST/api" in hint
    assert "Prefect's kubernetes worker" in hint


def test_the_default_build_options_are_our_stores_and_warn_about_kubernetes_pools() -> None:
    assert BuildOptions().worker_types == frozenset({"process", "docker"})
    assert warnings(build(one_deployment(ON_ETL))) == []  # process and docker pools: no warning


def test_queue_defaults_to_default_and_a_pool_name_can_come_from_the_environment() -> None:
    result = build(
        one_deployment('work_pool: {name: "{{ $POOL }}", work_queue_name: null}'),
        environ={"POOL": "etl"},
    )
    spec = deployment(result)
    assert (spec["work_pool_name"], spec["work_queue_name"]) == ("etl", "default")


def test_the_same_deployment_in_two_files_names_both_places() -> None:
    same = one_deployment(ON_ETL).replace("flows/etl.py", "../flows/etl.py")
    result = build("", files={"team-a/prefect.yaml": same, "team-b/prefect.yaml": same})
    assert result.desired is None
    assert errors(result) == [
        'memory/team-b/prefect.yaml:2:11: deployment "etl/nightly" is declared twice: here '
        "and at memory/team-a/prefect.yaml:2:11"
    ]


# --- scalar fields -------------------------------------------------------------------------------


def test_concurrency_limit_forms() -> None:
    def limit(value: str) -> tuple[Any, Any]:
        spec = deployment(build(one_deployment(f"{ON_ETL}\nconcurrency_limit: {value}")))
        return spec["concurrency_limit"], spec["concurrency_options"]

    assert limit("3") == (3, None)
    assert limit('"4"') == (4, None)
    assert limit("5.0") == (5, None)
    assert limit("{limit: 2, collision_strategy: CANCEL_NEW, grace_period_seconds: 120}") == (
        2,
        {"collision_strategy": "CANCEL_NEW", "grace_period_seconds": 120},
    )


def test_invalid_concurrency_limits_are_errors() -> None:
    zero = build(one_deployment(f"{ON_ETL}\nconcurrency_limit: 0"))
    assert errors(zero) == [
        "memory/prefect.yaml:5:24: concurrency_limit must be a whole number of at least 1; got 0"
    ]
    no_strategy = build(one_deployment(f"{ON_ETL}\nconcurrency_limit: {{limit: 2}}"))
    assert errors(no_strategy) == [
        "memory/prefect.yaml:5:24: concurrency_limit.collision_strategy is required when "
        "concurrency_limit is a mapping"
    ]


def test_lax_booleans_as_prefect_reads_them() -> None:
    def paused(value: str) -> Any:
        return deployment(build(one_deployment(f"{ON_ETL}\npaused: {value}")))["paused"]

    assert [paused(v) for v in ('"yes"', '"off"', "1", "0", '"True"', "false")] == [
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    assert deployment(build(one_deployment(ON_ETL)))["paused"] is False


def test_every_bad_boolean_is_reported_once_with_the_other_problems() -> None:
    result = build(
        one_deployment(
            'work_pool: {name: elt}\nenforce_parameter_schema: "maybe"\npaused: "sometimes"'
        )
    )
    assert errors(result) == [
        'memory/prefect.yaml:5:31: enforce_parameter_schema must be true or false; got "maybe"',
        'memory/prefect.yaml:6:13: paused must be true or false; got "sometimes"',
        'memory/prefect.yaml:4:23: work pool "elt" does not exist',
    ]


def test_tags_as_prefect_stores_them() -> None:
    def tags(value: str) -> tuple[list[str], list[str]]:
        result = build(one_deployment(f"{ON_ETL}\ntags: {value}"))
        return deployment(result)["tags"], warnings(result)

    assert tags("[etl, 3, '', ' ']") == (["etl", "3"], [])
    assert tags("nightly") == (
        ["nightly"],
        [
            "memory/prefect.yaml:5:11: tags is the string 'nightly'; reading it as one tag "
            "(Prefect 3.9 would split it into single characters)"
        ],
    )
    nested, notes = tags("[[etl, scraping], bank]")
    assert nested == ["['etl', 'scraping']", "bank"]
    assert notes == [
        "memory/prefect.yaml:5:12: tags[0] is a list; like Prefect, the tag is its text "
        "\"['etl', 'scraping']\""
    ]


# --- schedules -----------------------------------------------------------------------------------


def test_legacy_schedule_from_an_anchor_is_read_and_its_error_shown_where_written() -> None:
    result = build(
        """
        definitions:
          daily: &daily {interval: 86400, timezone: UTC}
          broken: &broken {cron: "61 * * * *"}
        deployments:
          - name: nightly
            entrypoint: flows/etl.py:etl
            work_pool: {name: etl}
            description: "{{ $TEAM }} nightly"
            schedule: *daily
          - name: hourly
            entrypoint: flows/etl.py:etl
            work_pool: {name: etl}
            schedule: *broken
        """
    )
    assert len(errors(result)) == 1  # the placeholder did not trip over the legacy form
    assert errors(result)[0].startswith("memory/prefect.yaml:3:20: Invalid cron expression")
    ok = build(one_deployment(f"{ON_ETL}\nschedule: {{interval: 3600, timezone: UTC}}"))
    assert deployment(ok)["schedules"][0]["interval_seconds"] == 3600


# --- the file as a whole -------------------------------------------------------------------------


def test_a_file_without_deployments_is_refused_loudly() -> None:
    result = build(
        """
        # a Prefect 2 project file, or deployment keys written at the top level
        name: etl
        entrypoint: flows/etl.py:etl
        work_pool: {name: etl}
        """
    )
    problem = next(d for d in result.diagnostics if d.is_error)
    assert str(problem.location) == "memory/prefect.yaml:2:1"
    assert "no `deployments` list" in problem.message
    assert problem.hint is not None and problem.hint.startswith(
        "entrypoint, work_pool belong inside an item of a `deployments:` list"
    )


def test_an_empty_deployments_list_is_accepted() -> None:
    result = build("deployments: []\n")
    assert errors(result) == []


def test_a_shared_prefect_2_step_is_reported_once() -> None:
    result = build(
        """
        pull:
          - prefect.projects.steps.git_clone_project: {repository: "https://x.invalid/r.git"}
        deployments:
          - {name: a, entrypoint: flows/etl.py:etl, work_pool: {name: etl}}
          - {name: b, entrypoint: flows/etl.py:etl, work_pool: {name: etl}}
        """
    )
    assert errors(result) == [
        'memory/prefect.yaml:2:5: "prefect.projects.steps.git_clone_project" is a Prefect 2 '
        "step name that Prefect 3 no longer has"
    ]


def test_arguments_not_indented_under_a_step_are_refused() -> None:
    result = build(
        one_deployment(
            ON_ETL,
            top="""
            pull:
            - prefect.deployments.steps.git_clone:
              repository: https://x.invalid/r.git
            """,
        )
    )
    assert errors(result) == [
        'memory/prefect.yaml:2:3: "pull[0]" has 2 keys (prefect.deployments.steps.git_clone, '
        "repository); a step is a mapping with exactly one key, the step's function name"
    ]


def test_an_unknown_key_stays_a_warning_when_the_file_has_other_errors() -> None:
    result = build(one_deployment("work_pool: {name: etl, type: process}\nversion: 1.0"))
    assert errors(result) == [
        'memory/prefect.yaml:5:14: "deployments[0].version" must be a string, not number 1.0'
    ]
    assert warnings(result) == [
        'memory/prefect.yaml:4:28: unknown key "type" in "deployments[0].work_pool"; it is '
        "ignored, as Prefect ignores it"
    ]


def test_a_key_without_a_value_says_so() -> None:
    result = build(one_deployment(f"{ON_ETL}\nparameters:"))
    problem = next(d for d in result.diagnostics if d.is_error)
    assert problem.message == '"deployments[0].parameters" must be a mapping, not empty (null)'
    assert problem.hint == "the key is written without a value: give it one, or remove the key"


def test_a_repository_without_a_prefect_file_is_warned_about_even_with_pools() -> None:
    snapshot = MemorySnapshot({"work-pools.yaml": POOLS, "flows/etl.py": FLOWS})
    result = build_desired(
        [RepoInput(snapshot, prefect_glob="deploy/*.yaml")], ObservedState(0), BuildOptions()
    )
    assert result.desired is not None
    assert any("no file matching 'deploy/*.yaml'" in w for w in warnings(result)), warnings(result)
    assert not any("no file matching" in w for w in warnings(build(one_deployment(""))))


def test_resources_hold_canonical_json_and_its_hash() -> None:
    """The stored text (and the content hash that decides "unchanged") is exactly the
    canonical JSON of the spec, however the builder wrote it out."""
    result = build(
        """
        deployments:
          - {name: a, entrypoint: flows/etl.py:etl, work_pool: {name: etl}}
          - name: b
            entrypoint: flows/etl.py:etl
            description: "über \\"quoted\\""
            work_pool: {name: etl, job_variables: {env: {A: "1"}}}
            parameters: {day: 2}
          - {name: c, entrypoint: flows/etl.py:load, work_pool: {name: etl}, parameters: {path: x}}
        """
    )
    assert result.desired is not None, rendered(result.diagnostics)
    deployments = [r for r in result.desired.resources if r.kind is Kind.DEPLOYMENT]
    assert len(deployments) == 3
    for resource in deployments:
        assert resource.spec_json == canonical_json(json.loads(resource.spec_json))
        assert resource.hash == content_hash(resource.spec_json)
        assert resource.spec["parameter_openapi_schema"]["properties"]
