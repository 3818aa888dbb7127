"""Plan renderers (text, JSON, Markdown) on plans built by hand from resources and diffs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.core.diagnostics import Location, error, warning
from reconciler.model.resources import UNKNOWN_VALUE, Kind, Owner, Resource
from reconciler.plan.model import Action, Change, Plan, SourceInfo, diff_values
from reconciler.plan.render_json import render_json
from reconciler.plan.render_markdown import render_markdown
from reconciler.plan.render_text import NO_CHANGES_TEXT, render_text

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "plan.schema.json"
SECRET = "hunter2-s3cr3t"
REPO_A = "github.com/acme/flows"
REPO_B = "github.com/acme/other"
SHA_A = "0123456789abcdef0123456789abcdef01234567"


def hide_secret(text: str) -> str:
    return text.replace(SECRET, "REDACTED")


def pool(name: str, spec: dict[str, Any], owner: Owner | None) -> Resource:
    return Resource.of(Kind.WORK_POOL, name, spec, owner)


def deployment(key: str, spec: dict[str, Any], owner: Owner | None) -> Resource:
    return Resource.of(Kind.DEPLOYMENT, key, spec, owner)


def create(resource: Resource) -> Change:
    return Change(Action.CREATE, resource.kind, resource.key, resource, None)


def update(before: Resource, after: Resource) -> Change:
    diffs = tuple(diff_values(before.spec, after.spec))
    return Change(Action.UPDATE, after.kind, after.key, after, before, diffs)


def delete(resource: Resource) -> Change:
    return Change(Action.DELETE, resource.kind, resource.key, None, resource)


def plan_of(*changes: Change, unchanged: int = 0, **extra: Any) -> Plan:
    return Plan(
        changes=tuple(changes),
        sources=extra.get("sources", ()),
        diagnostics=extra.get("diagnostics", ()),
        observed_revision=extra.get("observed_revision", 3),
        unchanged=unchanged,
    )


OWNER_A = Owner(REPO_A, "prefect.yaml")
POOLS_A = Owner(REPO_A, "reconciler-pools.yaml")
OWNER_B = Owner(REPO_B, "prefect.yaml")


def small_plan() -> Plan:
    new_pool = pool("etl", {"type": "process", "concurrency_limit": 4}, POOLS_A)
    before = deployment("my-flow/daily", {"parameters": {"days": 3}, "description": "old"}, OWNER_A)
    after = deployment("my-flow/daily", {"parameters": {"days": 7}, "tags": ["new"]}, OWNER_A)
    gone = deployment("x/y", {"entrypoint": "flows.py:y"}, OWNER_A)
    return plan_of(create(new_pool), update(before, after), delete(gone))


# --- text --------------------------------------------------------------------------------------


def test_text_renders_a_small_plan_exactly() -> None:
    expected = "\n".join(
        [
            f'  # work-pool "etl" will be created (owner: {REPO_A}:reconciler-pools.yaml)',
            '  + work-pool "etl" {',
            "      + concurrency_limit = 4",
            '      + type              = "process"',
            "    }",
            "",
            '  # deployment "my-flow/daily" will be updated in-place',
            '  ~ deployment "my-flow/daily" {',
            '      - description     = "old" -> null',
            "      ~ parameters.days = 3 -> 7",
            "      + tags            = [",
            '            "new"',
            "        ]",
            "    }",
            "",
            '  # deployment "x/y" will be destroyed',
            '  - deployment "x/y"',
            "",
            "Plan: 1 to add, 1 to change, 1 to destroy.",
        ]
    )
    assert render_text(small_plan(), color=False) == expected


def test_text_nested_values_are_multi_line_with_sorted_keys_and_nulls_left_out() -> None:
    template = {"variables": {"b": 1, "a": [True, None]}, "job_configuration": {}}
    spec = {"type": "process", "container_options": template, "description": None}
    text = render_text(plan_of(create(pool("etl", spec, POOLS_A))), color=False)
    block = text.split("\n")[2:15]
    assert block == [
        "      + container_options = {",
        '            "job_configuration": {},',
        '            "variables": {',
        '                "a": [',
        "                    true,",
        "                    null",
        "                ],",
        '                "b": 1',
        "            }",
        "        }",
        '      + type              = "process"',
        "    }",
        "",
    ]
    assert "description" not in text


def test_text_paths_quote_keys_that_are_not_identifiers_and_index_lists() -> None:
    before = deployment("f/d", {"job_variables": {"env": {"MY-VAR": "1"}}, "tags": ["a"]}, None)
    after = deployment("f/d", {"job_variables": {"env": {"MY-VAR": "2"}}, "tags": ["c"]}, None)
    lines = render_text(plan_of(update(before, after)), color=False).split("\n")
    assert lines[2:4] == [
        '      ~ job_variables.env["MY-VAR"] = "1" -> "2"',
        '      ~ tags[0]                     = "a" -> "c"',
    ]


def test_text_owner_move_is_shown_even_without_field_changes() -> None:
    before = deployment("f/d", {"entrypoint": "a.py:f"}, OWNER_A)
    after = deployment("f/d", {"entrypoint": "a.py:f"}, Owner(REPO_A, "sub/prefect.yaml"))
    text = render_text(plan_of(update(before, after)), color=False)
    moved = f'      ~ owner = "{REPO_A}:prefect.yaml" -> "{REPO_A}:sub/prefect.yaml"'
    assert moved in text.split("\n")


def test_text_adopting_an_unowned_object_shows_owner_from_null() -> None:
    before = deployment("f/d", {"entrypoint": "a.py:f"}, None)
    after = deployment("f/d", {"entrypoint": "a.py:f"}, OWNER_A)
    text = render_text(plan_of(update(before, after)), color=False)
    assert f'~ owner = null -> "{REPO_A}:prefect.yaml"' in text


def test_text_unknown_values_render_as_known_after_build() -> None:
    before = deployment("f/d", {"image": "repo/img:1"}, OWNER_A)
    after = deployment("f/d", {"image": UNKNOWN_VALUE}, OWNER_A)
    created = deployment("f/new", {"job_variables": {"image": UNKNOWN_VALUE}}, OWNER_A)
    text = render_text(plan_of(update(before, after), create(created)), color=False)
    assert '      ~ image = "repo/img:1" -> (known after build)' in text
    assert '"image": (known after build)' in text
    assert "$unknown" not in text


def test_text_pull_step_outputs_used_by_later_pull_steps_render_as_known_at_run_time() -> None:
    clone = "prefect.deployments.steps.git_clone"
    steps = [
        {"acme.steps.get_token": {"id": "get-token"}},
        {clone: {"access_token": "{{ get-token.access_token }}", "repository": "r"}},
    ]
    moved = [steps[0], {clone: {"access_token": "{{ get-token.token }}", "repository": "r"}}]
    elsewhere = {
        "pull_steps": steps,
        "job_variables": {"command": "{{ command }}", "token": "{{ prefect.blocks.secret.t }}"},
    }
    created = deployment("f/new", elsewhere, OWNER_A)
    before = deployment("f/d", {"pull_steps": steps}, OWNER_A)
    after = deployment("f/d", {"pull_steps": moved}, OWNER_A)
    text = render_text(plan_of(create(created), update(before, after)), color=False)
    assert '"access_token": (known at run time: {{ get-token.access_token }}),' in text
    assert (
        "(known at run time: {{ get-token.access_token }}) -> "
        "(known at run time: {{ get-token.token }})" in text
    )
    # Only pull steps run on the worker after other pull steps: nothing else is marked.
    assert '"command": "{{ command }}"' in text
    assert '"token": "{{ prefect.blocks.secret.t }}"' in text
    assert json.loads(render_json(plan_of(create(created))))  # the JSON form keeps the value
    assert "{{ get-token.access_token }}" in render_json(plan_of(create(created)))
    assert "known at run time" not in render_json(plan_of(create(created)))


def test_text_footer_counts_each_action_and_the_unchanged_objects() -> None:
    plans = [
        (plan_of(*small_plan().changes, unchanged=0), "Plan: 1 to add, 1 to change, 1 to destroy."),
        (
            plan_of(*small_plan().changes[:1], unchanged=1),
            "1 object unchanged. Plan: 1 to add, 0 to change, 0 to destroy.",
        ),
        (
            plan_of(*small_plan().changes[2:], unchanged=12),
            "12 objects unchanged. Plan: 0 to add, 0 to change, 1 to destroy.",
        ),
    ]
    for plan, footer in plans:
        assert render_text(plan, color=False).split("\n")[-1] == footer


def test_text_without_changes_says_so_and_nothing_else() -> None:
    assert render_text(plan_of(unchanged=7), color=False) == NO_CHANGES_TEXT
    assert NO_CHANGES_TEXT.startswith("No changes.")


def test_text_colors_symbols_and_bolds_headings_only_when_asked() -> None:
    colored = render_text(small_plan(), color=True)
    assert "\x1b[32m+\x1b[0m work-pool" in colored
    assert "\x1b[33m~\x1b[0m deployment" in colored
    assert "\x1b[31m-\x1b[0m deployment" in colored
    assert '\x1b[1m# deployment "x/y" will be destroyed\x1b[0m' in colored
    assert "\x1b[1mPlan: 1 to add" in colored
    assert "\x1b[" not in render_text(small_plan(), color=False)


def test_text_escapes_control_characters_in_user_text() -> None:
    created = deployment("f/\x1b[31mred", {"description": "bell\x07 and \x9b csi"}, OWNER_A)
    text = render_text(plan_of(create(created)), color=False)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert '"f/\\u001b[31mred"' in text
    assert '"bell\\u0007 and \\u009b csi"' in text


def test_text_masks_secrets_in_nested_values_keys_and_diffs() -> None:
    nested = {"container_options": {"variables": {"env": {"TOKEN": f"Bearer {SECRET}"}}}}
    before = deployment("f/d", {"pull": [{"token": "old"}]}, OWNER_A)
    after = deployment("f/d", {"pull": [{"token": SECRET}]}, OWNER_A)
    plan = plan_of(create(pool("etl", nested, POOLS_A)), update(before, after))
    for color in (False, True):
        text = render_text(plan, color=color, mask=hide_secret)
        assert SECRET not in text
        assert '"TOKEN": "Bearer REDACTED"' in text
        assert 'pull[0].token = "old" -> "REDACTED"' in text


# --- JSON --------------------------------------------------------------------------------------


def full_plan() -> Plan:
    before = deployment("f/d", {"image": "x", "tags": ["a"], "gone": None}, OWNER_A)
    after = deployment("f/d", {"image": UNKNOWN_VALUE, "tags": ["a", "b"]}, OWNER_B)
    return plan_of(
        create(pool("etl", {"type": "process", "base_job_template": {"k": SECRET}}, POOLS_A)),
        update(before, after),
        delete(deployment("x/y", {}, None)),
        unchanged=4,
        observed_revision=17,
        sources=(SourceInfo(REPO_A, "/srv/flows", "main", SHA_A, ("prefect.yaml",)),),
        diagnostics=(
            warning(f"unknown key 'x' near {SECRET}", Location("prefect.yaml", 3, 5), "remove it"),
            error("no location"),
        ),
    )


def test_json_validates_against_the_plan_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads(render_json(full_plan()))
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["summary"] == {"add": 1, "change": 1, "destroy": 1, "adopt": 0}
    assert document["changes"][1]["diffs"][0]["before_absent"] is False


def test_json_schema_rejects_shapes_the_plan_never_has() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    document = json.loads(render_json(full_plan()))
    document["changes"][2]["desired"] = {"name": "y"}
    document["extra"] = True
    messages = {error.message for error in validator.iter_errors(document)}
    assert "Additional properties are not allowed ('extra' was unexpected)" in messages
    assert "{'name': 'y'} is not of type 'null'" in messages


def test_json_is_byte_identical_across_renders() -> None:
    first = render_json(full_plan()).encode()
    assert first == render_json(full_plan()).encode()
    assert first.decode().startswith('{"changes": [')
    assert "\n" not in first.decode(), "one line, like terraform show -json"


def test_json_masks_secrets_in_desired_values_and_diagnostics() -> None:
    text = render_json(full_plan(), mask=hide_secret)
    assert SECRET not in text
    document = json.loads(text)
    assert document["changes"][0]["desired"]["base_job_template"] == {"k": "REDACTED"}
    assert document["diagnostics"][0]["message"] == "unknown key 'x' near REDACTED"


def test_json_keeps_line_separator_characters_inside_strings() -> None:
    created = deployment("f/d", {"description": "a\u2028b"}, OWNER_A)
    document = json.loads(render_json(plan_of(create(created)), mask=hide_secret))
    assert document["changes"][0]["desired"]["description"] == "a\u2028b"


# --- Markdown ----------------------------------------------------------------------------------


def markdown_plan() -> Plan:
    repo_b_before = deployment("b/old", {"tags": ["x"]}, OWNER_B)
    repo_b_after = deployment("b/old", {"tags": ["y"]}, OWNER_B)
    return plan_of(
        create(pool("etl", {"type": "process"}, POOLS_A)),
        update(repo_b_before, repo_b_after),
        delete(deployment("a/gone", {}, OWNER_A)),
        delete(deployment("z/manual", {}, None)),
        unchanged=2,
        sources=(
            SourceInfo(REPO_B, "../other", "main", None, ()),
            SourceInfo(REPO_A, ".", "main", SHA_A, ("prefect.yaml",)),
        ),
        diagnostics=(warning("schedule <b>ignored</b> | check it", Location("prefect.yaml", 9)),),
    )


def test_markdown_has_heading_table_with_totals_and_a_details_block_per_repository() -> None:
    text = render_markdown(markdown_plan())
    heading = "### reconciler plan\n\n| Repository | Commit | Add | Change | Destroy |"
    assert text.startswith(heading)
    assert "| github.com/acme/other |  | 0 | 1 | 0 |" in text
    assert "| github.com/acme/flows | 0123456 | 1 | 0 | 1 |" in text
    assert "| (unowned) |  | 0 | 0 | 1 |" in text
    assert "| **Total** | | 1 | 1 | 2 |" in text
    assert "2 objects unchanged." in text
    summaries = [line for line in text.split("\n") if line.startswith("<details>")]
    assert summaries == [
        "<details><summary>github.com/acme/other: 0 to add, 1 to change, 0 to destroy</summary>",
        "<details><summary>github.com/acme/flows: 1 to add, 0 to change, 1 to destroy</summary>",
        "<details><summary>(unowned): 0 to add, 0 to change, 1 to destroy</summary>",
    ]
    assert text.count("</details>") == 3


def test_markdown_diff_moves_actions_to_column_zero_with_bang_for_updates() -> None:
    text = render_markdown(markdown_plan())
    flows = text.split("<summary>github.com/acme/flows")[1].split("</details>")[0]
    assert flows.split("\n")[2:12] == [
        "```diff",
        f'  # work-pool "etl" will be created (owner: {REPO_A}:reconciler-pools.yaml)',
        '+   work-pool "etl" {',
        '+       type = "process"',
        "    }",
        "",
        '  # deployment "a/gone" will be destroyed',
        '-   deployment "a/gone"',
        "```",
        "",
    ]
    other = text.split("<summary>github.com/acme/other")[1]
    assert '!       tags[0] = "x" -> "y"' in other
    assert "\x1b[" not in text


def test_markdown_multi_line_values_are_coloured_on_every_line() -> None:
    created = pool("etl", {"container_options": {"variables": {}}}, POOLS_A)
    text = render_markdown(plan_of(create(created)))
    value = ["+       container_options = {", '+           "variables": {}', "+       }"]
    assert "\n".join(value) in text


def test_markdown_fence_outgrows_backticks_and_pipes_stay_literal_in_the_diff() -> None:
    created = deployment("f/d", {"description": "use ```` and ``` | here"}, OWNER_A)
    text = render_markdown(plan_of(create(created)))
    assert "\n`````diff\n" in text
    assert "\n`````\n" in text
    assert '"use ```` and ``` | here"' in text


def test_markdown_escapes_pipes_and_html_outside_the_diff() -> None:
    odd_repo = "git.example/<team>|flows&co"
    plan = plan_of(
        create(pool("etl", {"type": "process"}, Owner(odd_repo, "p.yaml"))),
        diagnostics=(warning("schedule <b>ignored</b> | `check` it", Location("prefect.yaml", 9)),),
    )
    text = render_markdown(plan)
    assert "| git.example/&lt;team&gt;\\|flows&amp;co |  | 1 | 0 | 0 |" in text
    assert "<summary>git.example/&lt;team&gt;|flows&amp;co: 1 to add" in text
    assert "- prefect.yaml:9: schedule &lt;b&gt;ignored&lt;/b&gt; \\| \\`check\\` it" in text
    assert "<b>" not in text


def test_markdown_lists_diagnostics_with_location_severity_and_hint() -> None:
    plan = plan_of(
        *small_plan().changes,
        diagnostics=(
            warning("unknown key 'tgas'", Location("prefect.yaml", 4, 3), "did you mean 'tags'?"),
            error("pool 'etl' is declared twice"),
        ),
    )
    text = render_markdown(plan)
    assert text.endswith(
        "#### Warnings\n\n"
        "- prefect.yaml:4:3: unknown key 'tgas' (hint: did you mean 'tags'?)\n"
        "- error: pool 'etl' is declared twice"
    )


def test_markdown_without_changes_says_so_and_keeps_warnings() -> None:
    assert render_markdown(plan_of()) == f"### reconciler plan\n\n{NO_CHANGES_TEXT}"
    with_warning = plan_of(diagnostics=(warning("careful", Location("prefect.yaml", 1)),))
    text = render_markdown(with_warning)
    assert "No changes." in text and "- prefect.yaml:1: careful" in text
    assert "<details>" not in text and "| Repository |" not in text


@pytest.mark.parametrize(
    "secret_place",
    ["nested value", "diff value", "repository name", "diagnostic"],
)
def test_markdown_masks_secrets_everywhere(secret_place: str) -> None:
    owner = Owner(f"https://{SECRET}@git.example/flows", "prefect.yaml")
    plans = {
        "nested value": plan_of(create(pool("p", {"t": {"env": {"K": [SECRET]}}}, OWNER_A))),
        "diff value": plan_of(
            update(deployment("f/d", {"k": ["a"]}, None), deployment("f/d", {"k": [SECRET]}, None))
        ),
        "repository name": plan_of(create(pool("p", {}, owner))),
        "diagnostic": plan_of(diagnostics=(warning(f"bad token {SECRET}", None, f"not {SECRET}"),)),
    }
    text = render_markdown(plans[secret_place], mask=hide_secret)
    assert SECRET not in text
    assert "REDACTED" in text


def test_text_summarises_derived_fields_of_a_created_object() -> None:
    schema = {"properties": {"source": {"position": 0}, "days": {"position": 1}}}
    template = {"variables": {"properties": {"image": {"default": "img:1"}, "env": {}}}}
    plan = plan_of(
        create(pool("etl", {"type": "docker", "base_job_template": template}, POOLS_A)),
        create(deployment("f/d", {"parameter_openapi_schema": schema}, OWNER_A)),
    )
    text = render_text(plan, color=False)
    assert "+ base_job_template = (job template with 2 variables; defaults for image)" in text
    assert "+ parameter_openapi_schema = (from the flow's signature: source, days)" in text
    document = json.loads(render_json(plan))
    assert document["changes"][0]["desired"]["base_job_template"] == template


# --- adopt ---------------------------------------------------------------------------------------


def adopt_plan() -> Plan:
    before = deployment("my-flow/daily", {"parameters": {"days": 3}}, OWNER_B)
    after = deployment("my-flow/daily", {"parameters": {"days": 7}}, OWNER_A)
    same_before = pool("etl", {"type": "process"}, None)
    same_after = pool("etl", {"type": "process"}, POOLS_A)
    return plan_of(
        Change(Action.ADOPT, Kind.WORK_POOL, "etl", same_after, same_before),
        Change(
            Action.ADOPT,
            Kind.DEPLOYMENT,
            "my-flow/daily",
            after,
            before,
            tuple(diff_values(before.spec, after.spec)),
        ),
    )


def test_text_renders_adoptions_with_their_owner_and_diffs() -> None:
    expected = "\n".join(
        [
            '  # work-pool "etl" will be adopted',
            '  = work-pool "etl" {',
            f'      ~ owner = null -> "{REPO_A}:reconciler-pools.yaml"',
            "    }",
            "",
            '  # deployment "my-flow/daily" will be adopted',
            '  = deployment "my-flow/daily" {',
            "      ~ parameters.days = 3 -> 7",
            f'      ~ owner           = "{REPO_B}:prefect.yaml" -> "{REPO_A}:prefect.yaml"',
            "    }",
            "",
            "Plan: 2 to adopt, 0 to add, 0 to change, 0 to destroy.",
        ]
    )
    assert render_text(adopt_plan(), color=False) == expected


def test_json_of_an_adoption_matches_the_schema() -> None:
    document = json.loads(render_json(adopt_plan()))
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    assert [c["action"] for c in document["changes"]] == ["adopt", "adopt"]
    assert document["summary"] == {"add": 0, "change": 0, "destroy": 0, "adopt": 2}
    assert document["changes"][1]["previous_owner"] == {"repo": REPO_B, "file": "prefect.yaml"}


def test_markdown_counts_adoptions() -> None:
    text = render_markdown(adopt_plan())
    assert "| Repository | Commit | Adopt | Add | Change | Destroy |" in text
    assert "2 to adopt, 0 to add" in text
    assert '=   deployment "my-flow/daily" {' in text
