"""Prefect's `{{ }}` placeholder rules (docs/design-notes.md#templating and
#prefect-deploy-order), checked against the examples that were verified on Prefect 3.9.1."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from reconciler.prefect_rules.templating import (
    KNOWN_AFTER_BUILD,
    NOTSET,
    PLACEHOLDER_PATTERN,
    KnownAfterBuild,
    Placeholder,
    PlaceholderKind,
    TemplateError,
    TemplatePath,
    apply_values,
    find_placeholders,
    get_from_dict,
    references,
    resolve_blocks,
    resolve_variables,
)

NO_ENV: dict[str, str] = {}


def apply(template: object, values: dict[str, Any], **kwargs: Any) -> Any:
    kwargs.setdefault("environ", NO_ENV)
    return apply_values(template, values, **kwargs)


class MissingRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[TemplatePath, str]] = []

    def __call__(self, path: TemplatePath, name: str) -> None:
        self.calls.append((path, name))


# --- grammar -------------------------------------------------------------------------------


def test_placeholder_kinds_are_decided_by_prefix() -> None:
    template = {
        "a": "{{ step.out }}",
        "b": "{{prefect.blocks.secret.tok}}",
        "c": "x {{ prefect.variables.region }} {{ $HOME }}",
    }
    assert find_placeholders(template) == {
        Placeholder("{{ step.out }}", "step.out", PlaceholderKind.STANDARD),
        Placeholder(
            "{{prefect.blocks.secret.tok}}", "prefect.blocks.secret.tok", PlaceholderKind.BLOCK
        ),
        Placeholder(
            "{{ prefect.variables.region }}", "prefect.variables.region", PlaceholderKind.VARIABLE
        ),
        Placeholder("{{ $HOME }}", "$HOME", PlaceholderKind.ENV),
    }


def test_pattern_captures_full_text_and_name() -> None:
    match = PLACEHOLDER_PATTERN.search("image: {{  build-image.image[0] }}!")
    assert match is not None
    assert match.group(1) == "{{  build-image.image[0] }}"
    assert match.group(2) == "build-image.image[0]"


@pytest.mark.parametrize(
    "text",
    ["{{ a | default('x') }}", "{{ a b }}", "${VAR}", "{{ }}", "{ x }", "{% if x %}y{% endif %}"],
)
def test_jinja_looking_text_is_not_a_placeholder(text: str) -> None:
    assert find_placeholders(text) == set()
    assert apply(text, {"a": 1, "x": 2, "VAR": 3}, environ={"VAR": "v"}) == text


def test_keys_are_never_templated() -> None:
    template = {"{{ x }}": "{{ x }}", "k": ["{{ y }}", {"{{ y }}": 1}]}
    assert {p.name for p in find_placeholders(template)} == {"x", "y"}
    assert apply(template, {"x": "X", "y": "Y"}) == {
        "{{ x }}": "X",
        "k": ["Y", {"{{ y }}": 1}],
    }


@pytest.mark.parametrize("value", [None, 0, 1.5, True])
def test_scalars_have_no_placeholders_and_pass_through(value: object) -> None:
    assert find_placeholders(value) == set()
    assert apply(value, {}) is value


def test_unsupported_value_types_are_rejected_with_their_path() -> None:
    template = {"schedules": [{"anchor_date": datetime.date(2024, 1, 1)}]}
    with pytest.raises(TemplateError) as caught:
        apply(template, {})
    assert caught.value.path == ("schedules", 0, "anchor_date")
    assert "'date'" in caught.value.message
    with pytest.raises(TemplateError):
        find_placeholders({"a": {1, 2}})


# --- key paths (design notes: templating) ---------------------------------------------------------


@pytest.mark.parametrize("path", ["a.b[0].c", "a.b.0.c", ["a", "b", "0", "c"], ["a", "b", 0, "c"]])
def test_key_path_spellings(path: Any) -> None:
    assert get_from_dict({"a": {"b": [{"c": 42}]}}, path) == 42


def test_step_ids_may_contain_dashes() -> None:
    outputs = {"build-image": {"image": "repo/img:latest"}}
    assert get_from_dict(outputs, "build-image.image") == "repo/img:latest"


def test_exact_string_key_wins_over_integer_key() -> None:
    assert get_from_dict({"y": {"1": "text", 1: "int"}}, "y.1") == "text"
    assert get_from_dict({"y": {1: "int"}}, "y.1") == "int"
    assert get_from_dict({"y": {-1: "neg"}}, "y.-1") == "neg"


def test_non_canonical_integer_text_is_not_converted_for_mappings() -> None:
    assert get_from_dict({"y": {1: "int"}}, "y.01", "default") == "default"


def test_list_indexes_accept_any_integer_text() -> None:
    values = {"l": ["first", "second", "last"]}
    assert get_from_dict(values, "l.01") == "second"
    assert get_from_dict(values, "l[-1]") == "last"
    assert get_from_dict({"s": "abc"}, "s.1") == "b"


@pytest.mark.parametrize("path", ["a.missing", "a.b[5]", "a.b.x", "a.b[0].c.d", "nope"])
def test_missing_paths_give_the_default(path: str) -> None:
    assert get_from_dict({"a": {"b": [{"c": 42}]}}, path, "fallback") == "fallback"
    assert get_from_dict({"a": {"b": [{"c": 42}]}}, path) is None


def test_known_after_build_met_along_the_path_is_the_result() -> None:
    outputs = {"build-image": KNOWN_AFTER_BUILD, "push": {"digest": KNOWN_AFTER_BUILD}}
    assert get_from_dict(outputs, "build-image.image.tag") is KNOWN_AFTER_BUILD
    assert get_from_dict(outputs, "push.digest") is KNOWN_AFTER_BUILD
    assert get_from_dict(KNOWN_AFTER_BUILD, "anything") is KNOWN_AFTER_BUILD


# --- apply_values (design notes: templating) ------------------------------------------------------

REFERENCE_TEMPLATE = {
    "a": "{{ x }}",
    "b": "pre-{{ x }}",
    "c": "{{ missing }}",
    "d": "p{{ missing }}s",
    "e": ["{{ missing }}", 1],
    "f": "{{ $HOME }}",
    "g": "{{ x.y }}",
}


def test_reference_example_removing_unset_values() -> None:
    result = apply(REFERENCE_TEMPLATE, {"x": {"y": 5}}, environ={"HOME": "/root"})
    assert result == {
        "a": {"y": 5},
        "b": "pre-{'y': 5}",
        "d": "ps",
        "e": [1],
        "f": "/root",
        "g": 5,
    }


def test_reference_example_keeping_unset_values() -> None:
    result = apply(
        REFERENCE_TEMPLATE, {"x": {"y": 5}}, environ={"HOME": "/root"}, remove_notset=False
    )
    assert result["c"] == "{{ missing }}"
    assert result["d"] == "p{{ missing }}s"
    assert result["e"] == ["{{ missing }}", 1]  # 3.9.1 keeps the item; 3.8 dropped it


def test_step_runner_example_with_myvar() -> None:
    """Prefect's worked example: upstream outputs pass (removes), then the environment pass."""
    inputs = {
        "tag": "a",
        "env_embedded": "x-{{ $MYVAR }}",
        "env_whole": "{{ $MYVAR }}",
        "missing_whole": "{{ nope }}",
        "missing_emb": "p-{{ nope }}",
        "envstd": "{{ MYVAR }}",
    }
    environ = {"MYVAR": "hello"}
    after_outputs = apply_values(inputs, {}, environ=environ)
    received = apply_values(after_outputs, environ, environ=environ)
    assert received == {
        "tag": "a",
        "env_embedded": "x-hello",
        "env_whole": "hello",
        "missing_emb": "p-",
    }


def test_deploy_section_plain_placeholder_reads_the_environment_passed_as_values() -> None:
    """The environment pass of `prefect deploy` (design notes: prefect-deploy-order, 3)."""
    environ = {"IMAGE": "repo/img", "TAG": "v1"}
    config = {"image": "{{ IMAGE }}:{{ $TAG }}", "other": "{{ build.image }}"}
    assert apply_values(config, environ, environ=environ, remove_notset=False) == {
        "image": "repo/img:v1",
        "other": "{{ build.image }}",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [({"a": 1}, "x-{'a': 1}"), (True, "x-True"), (None, "x-None"), ([1, "b"], "x-[1, 'b']")],
)
def test_embedded_values_use_python_str(value: object, expected: str) -> None:
    assert apply("x-{{ v }}", {"v": value}) == expected


@pytest.mark.parametrize("value", [{"a": [1]}, [1, 2], 7, 2.5, False, None, ""])
def test_whole_value_keeps_its_type(value: object) -> None:
    assert apply({"k": "{{ v }}"}, {"v": value}) == {"k": value}


def test_whole_value_needs_the_placeholder_to_be_the_entire_string() -> None:
    assert apply(" {{ v }}", {"v": 7}) == " 7"
    assert apply("{{ v }}{{ v }}", {"v": 7}) == "77"
    assert apply("{{v}}-{{ v }}", {"v": 7}) == "7-7"


def test_substituted_values_are_not_scanned_again() -> None:
    values = {"a": "{{ b }}", "b": "B"}
    assert apply("x-{{ a }}-{{ b }}", values) == "x-{{ b }}-B"
    assert apply("{{ a }}", values) == "{{ b }}"
    assert apply("x-{{ $E }}", {"b": "B"}, environ={"E": "{{ b }}"}) == "x-{{ b }}"


def test_env_placeholder_is_always_text_and_reads_only_the_given_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECONCILER_TEST_LEAK", "leaked")
    assert apply("{{ $N }}", {"N": 5}, environ={"N": "5"}) == "5"
    assert apply("{{ $RECONCILER_TEST_LEAK }}", {}) == ""
    assert apply("{{ $RECONCILER_TEST_LEAK }}", {}, remove_notset=False) == (
        "{{ $RECONCILER_TEST_LEAK }}"
    )


def test_unset_env_placeholder_in_a_mapping_is_blanked_not_removed() -> None:
    assert apply({"k": "{{ $UNSET }}"}, {}) == {"k": ""}


def test_skip_prefixes_keep_ctx_placeholders_for_the_worker() -> None:
    recorder = MissingRecorder()
    template = {
        "name": "{{ ctx.flow_run.name }}",
        "label": "{{ ctx.flow.name }}-{{ x }}",
        "only_ctx": "{{ctx.a}} and {{ ctx.b }}",
    }
    result = apply(template, {"x": 5}, skip_prefixes=["ctx."], on_missing=recorder)
    assert result == {
        "name": "{{ ctx.flow_run.name }}",
        "label": "{{ ctx.flow.name }}-5",
        "only_ctx": "{{ctx.a}} and {{ ctx.b }}",
    }
    assert recorder.calls == []


def test_without_skip_prefixes_ctx_placeholders_are_ordinary() -> None:
    assert apply({"name": "{{ ctx.flow_run.name }}"}, {}) == {}


def test_block_and_variable_placeholders_are_left_for_their_own_passes() -> None:
    recorder = MissingRecorder()
    template = {
        "a": "{{ prefect.blocks.secret.tok }}",
        "b": "{{ prefect.variables.v }}",
        "c": "{{ prefect.variables.v }}-{{ missing }}-{{ prefect.blocks.s.n }}",
    }
    result = apply(template, {}, on_missing=recorder)
    assert result == {
        "a": "{{ prefect.blocks.secret.tok }}",
        "b": "{{ prefect.variables.v }}",
        "c": "{{ prefect.variables.v }}--{{ prefect.blocks.s.n }}",
    }
    assert recorder.calls == [(("c",), "missing")]


def test_missing_whole_value_at_top_level_is_notset() -> None:
    assert apply("{{ missing }}", {}) is NOTSET
    assert apply("{{ missing }}", {}, remove_notset=False) is NOTSET
    assert apply(NOTSET, {}) is NOTSET


def test_remove_notset_on_nested_lists_and_mappings() -> None:
    template = {"outer": [{"keep": 1, "drop": "{{ m }}"}, "{{ m }}", ["{{ m }}", "{{ v }}"]]}
    assert apply(template, {"v": "V"}) == {"outer": [{"keep": 1}, ["V"]]}
    assert apply(template, {"v": "V"}, remove_notset=False) == {
        "outer": [{"keep": 1, "drop": "{{ m }}"}, "{{ m }}", ["{{ m }}", "V"]]
    }


def test_worker_job_configuration_example() -> None:
    """Job configuration (design notes, stage 4): missing or None-default variables delete their
    key; extra values are ignored."""
    base = {
        "command": "echo {{ a }} {{ b }}",
        "env": {"X": "{{ a }}", "Y": "{{ missing }}"},
        "labels": {"l": "{{ c }}"},
    }
    variables = {"a": "A", "b": 7, "unused": "ignored"}
    assert apply(base, variables) == {"command": "echo A 7", "env": {"X": "A"}, "labels": {}}


def test_template_is_not_modified_in_place() -> None:
    template = {"a": ["{{ x }}", "{{ m }}"], "b": "{{ m }}"}
    snapshot = copy.deepcopy(template)
    apply(template, {"x": 1})
    assert template == snapshot


# --- on_missing ----------------------------------------------------------------------------


def test_on_missing_reports_each_unresolved_placeholder_where_it_sat() -> None:
    recorder = MissingRecorder()
    template = {
        "a": {"b": ["ok", "{{ m1 }}"]},
        "c": "p-{{ m2 }}-{{m2}}-{{ $E }}-{{ x }}",
        "d": "{{ x }}",
    }
    apply(template, {"x": 1}, on_missing=recorder)
    assert recorder.calls == [(("a", "b", 1), "m1"), (("c",), "m2"), (("c",), "$E")]


def test_on_missing_for_a_top_level_string_has_an_empty_path() -> None:
    recorder = MissingRecorder()
    apply("{{ nope }}", {}, on_missing=recorder, remove_notset=False)
    assert recorder.calls == [((), "nope")]


# --- KNOWN_AFTER_BUILD ---------------------------------------------------------------------


def test_known_after_build_marker_identity() -> None:
    assert KnownAfterBuild() == KNOWN_AFTER_BUILD
    assert KNOWN_AFTER_BUILD != "(known after build)"
    assert repr(KNOWN_AFTER_BUILD) == "(known after build)"
    assert copy.deepcopy({"k": KNOWN_AFTER_BUILD})["k"] is KNOWN_AFTER_BUILD
    assert len({KnownAfterBuild(), KNOWN_AFTER_BUILD}) == 1


def test_notset_marker() -> None:
    assert not NOTSET
    assert repr(NOTSET) == "NOTSET"
    assert copy.deepcopy(NOTSET) is NOTSET


def test_known_after_build_propagates_through_whole_and_embedded_values() -> None:
    outputs = {"build-image": KNOWN_AFTER_BUILD, "tag": "v1", "meta": {"d": KNOWN_AFTER_BUILD}}
    template = {
        "image": "{{ build-image.image }}",
        "ref": "{{ build-image.image }}:{{ tag }}",
        "tag": "{{ tag }}",
        "meta": "{{ meta }}",
        "text": "m={{ meta }}",
    }
    assert apply(template, outputs) == {
        "image": KNOWN_AFTER_BUILD,
        "ref": KNOWN_AFTER_BUILD,
        "tag": "v1",
        "meta": {"d": KNOWN_AFTER_BUILD},
        "text": KNOWN_AFTER_BUILD,
    }


def test_unknown_string_still_reports_its_missing_placeholders() -> None:
    recorder = MissingRecorder()
    result = apply("{{ b.image }}-{{ typo }}", {"b": KNOWN_AFTER_BUILD}, on_missing=recorder)
    assert result is KNOWN_AFTER_BUILD
    assert recorder.calls == [((), "typo")]


def test_known_after_build_already_in_a_template_passes_through() -> None:
    assert apply({"a": KNOWN_AFTER_BUILD}, {}) == {"a": KNOWN_AFTER_BUILD}
    assert find_placeholders([KNOWN_AFTER_BUILD]) == set()


# --- variables (design notes: templating) ---------------------------------------------------------


def test_variables_whole_value_keeps_type_and_missing_becomes_empty_text() -> None:
    variables = {"cfg": {"region": "eu"}, "n": 3, "nothing": None}
    template = {
        "cfg": "{{ prefect.variables.cfg }}",
        "n": "{{ prefect.variables.n }}",
        "none": "{{ prefect.variables.nothing }}",
        "gone": "{{ prefect.variables.gone }}",
    }
    assert resolve_variables(template, variables) == {
        "cfg": {"region": "eu"},
        "n": 3,
        "none": None,
        "gone": "",
    }


def test_variables_embedded_use_str_and_missing_is_blank() -> None:
    variables = {"cfg": {"region": "eu"}, "flag": True}
    text = "{{ prefect.variables.cfg }}|{{ prefect.variables.flag }}|{{ prefect.variables.gone }}"
    assert resolve_variables(text, variables) == "{'region': 'eu'}|True|"


def test_variable_names_have_no_key_paths() -> None:
    variables = {"a.b": "dotted", "a": {"b": "nested"}}
    assert resolve_variables("{{ prefect.variables.a.b }}", variables) == "dotted"


def test_variables_leave_other_placeholders_and_do_not_rescan() -> None:
    variables = {"v": "{{ prefect.variables.w }}", "w": "W"}
    text = "{{ x }}-{{ prefect.variables.v }}-{{ $E }}-{{ prefect.blocks.s.n }}"
    assert resolve_variables(text, variables) == (
        "{{ x }}-{{ prefect.variables.w }}-{{ $E }}-{{ prefect.blocks.s.n }}"
    )


def test_variable_values_are_copied_into_the_result() -> None:
    variables = {"cfg": {"list": [1]}}
    result = resolve_variables({"a": "{{ prefect.variables.cfg }}"}, variables)
    result["a"]["list"].append(2)
    assert variables == {"cfg": {"list": [1]}}


# --- blocks (design notes: templating) ------------------------------------------------------------

BLOCKS: dict[tuple[str, str], dict[str, Any]] = {
    ("secret", "my-token"): {"value": "s3cr3t"},
    ("json", "cfg"): {"value": {"key": {"nested": 1}, "list": [{"k": "v"}], "values": 2}},
    ("registry-creds", "reg"): {"username": "u", "password": "pw", "port": 5000},
}


def lookup(slug: str, name: str) -> dict[str, Any] | None:
    return BLOCKS.get((slug, name))


@pytest.mark.parametrize(
    ("placeholder", "expected"),
    [
        ("{{ prefect.blocks.secret.my-token }}", "s3cr3t"),
        ("{{ prefect.blocks.secret.my-token.value }}", "s3cr3t"),
        ("{{ prefect.blocks.json.cfg.key.nested }}", 1),
        ("{{ prefect.blocks.json.cfg.value.key }}", {"nested": 1}),
        ("{{ prefect.blocks.json.cfg.value[list][0].k }}", "v"),
        ("{{ prefect.blocks.json.cfg.list[0].k }}", "v"),
        ("{{ prefect.blocks.json.cfg.values }}", 2),
        ("{{ prefect.blocks.json.cfg }}", BLOCKS[("json", "cfg")]["value"]),
        (
            "{{ prefect.blocks.registry-creds.reg }}",
            BLOCKS[("registry-creds", "reg")],
        ),
        ("{{ prefect.blocks.registry-creds.reg.port }}", 5000),
    ],
)
def test_block_whole_values_keep_their_type(placeholder: str, expected: object) -> None:
    assert resolve_blocks({"k": placeholder}, lookup) == {"k": expected}


def test_block_whole_value_is_a_copy() -> None:
    result = resolve_blocks("{{ prefect.blocks.registry-creds.reg }}", lookup)
    result["username"] = "changed"
    assert BLOCKS[("registry-creds", "reg")]["username"] == "u"


def test_block_embedded_values_are_text_and_other_placeholders_stay() -> None:
    template = [
        "https://{{ prefect.blocks.registry-creds.reg.username }}:"
        "{{ prefect.blocks.registry-creds.reg.port }}/{{ x }}/{{ prefect.variables.v }}"
    ]
    assert resolve_blocks(template, lookup) == ["https://u:5000/{{ x }}/{{ prefect.variables.v }}"]


def test_block_embedded_dict_is_an_error_at_its_path() -> None:
    template = {"job_variables": {"env": ["cfg={{ prefect.blocks.json.cfg.key }}"]}}
    with pytest.raises(TemplateError) as caught:
        resolve_blocks(template, lookup)
    assert caught.value.path == ("job_variables", "env", 0)
    assert "cannot be embedded in text" in caught.value.message


def test_block_missing_key_path_is_an_error_that_hides_the_value() -> None:
    with pytest.raises(TemplateError) as caught:
        resolve_blocks({"a": {"b": "{{ prefect.blocks.secret.my-token.nope }}"}}, lookup)
    assert caught.value.path == ("a", "b")
    assert "'nope'" in caught.value.message
    assert "secret/my-token" in caught.value.message
    assert "s3cr3t" not in caught.value.message


def test_block_not_found_says_how_to_define_it() -> None:
    with pytest.raises(TemplateError) as caught:
        resolve_blocks(["ok", "x-{{ prefect.blocks.secret.absent }}"], lookup)
    assert caught.value.path == (1,)
    assert "Block not found: 'absent' of type 'secret'" in caught.value.message
    assert "`reconcile secret set secret/absent`" in caught.value.message


def test_block_placeholder_without_a_name_is_invalid() -> None:
    with pytest.raises(TemplateError) as caught:
        resolve_blocks({"a": "{{ prefect.blocks.secret }}"}, lookup)
    assert caught.value.path == ("a",)
    assert "Invalid block placeholder" in caught.value.message


def test_resolve_blocks_passes_other_values_through() -> None:
    template = {"n": 1, "none": None, "text": "{{ x }}", "{{ prefect.blocks.secret.my-token }}": 2}
    assert resolve_blocks(template, lookup) == template


# --- references ----------------------------------------------------------------------------


def test_references_lists_what_a_template_needs_from_the_store() -> None:
    template = {
        "{{ prefect.variables.key_only }}": "x",
        "a": "{{ prefect.variables.v }}-{{ prefect.variables.a.b }}",
        "b": ["{{ prefect.blocks.secret.tok }}", {"c": "{{ prefect.blocks.json.cfg.key.x }}"}],
        "d": "{{ prefect.blocks.malformed }} {{ x }} {{ $E }}",
        "e": 3,
    }
    assert references(template) == ({"v", "a.b"}, {("secret", "tok"), ("json", "cfg")})


# --- the passes together (design notes: prefect-deploy-order) -------------------------------------


def test_deploy_pipeline_passes_in_order() -> None:
    section = {
        "parameters": {"region": "{{ prefect.variables.region }}", "p": "{{ foo }}"},
        "job_variables": {
            "image": "{{ build-image.image }}",
            "env": {"TOKEN": "{{ prefect.blocks.secret.my-token }}", "HOME": "{{ HOME }}"},
            "name": "{{ ctx.flow_run.name }}",
        },
    }
    environ = {"HOME": "/home/ci"}
    resolved = resolve_variables(resolve_blocks(section, lookup), {"region": "eu"})
    resolved = apply_values(resolved, environ, environ=environ, remove_notset=False)
    recorder = MissingRecorder()
    final = apply_values(
        resolved,
        {"build-image": KNOWN_AFTER_BUILD},
        environ=environ,
        skip_prefixes=["ctx."],
        on_missing=recorder,
    )
    assert final == {
        "parameters": {"region": "eu"},
        "job_variables": {
            "image": KNOWN_AFTER_BUILD,
            "env": {"TOKEN": "s3cr3t", "HOME": "/home/ci"},
            "name": "{{ ctx.flow_run.name }}",
        },
    }
    assert recorder.calls == [(("parameters", "p"), "foo")]
