"""The pure parts of `reconcile import` (reconciler/onboard/): the YAML writer reads back
through our own loader as the value it was given, anchors and aliases included; the secret
rule; the reduced base job templates."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.onboard.export import export_state
from reconciler.onboard.secrets import SecretRule
from reconciler.onboard.sources import masked_url
from reconciler.onboard.yaml_emit import Alias, Anchored, Commented, emit, scalar
from reconciler.prefect_rules.job_templates import (
    default_base_job_template,
    with_job_variable_defaults,
)
from reconciler.prefect_rules.yamlload import load_yaml

TRICKY = [
    "",
    "yes",
    "no",
    "null",
    "~",
    "1",
    "1.0",
    "0x10",
    "2024-01-01",
    "a: b",
    "a #b",
    "- x",
    "{{ $X }}",
    "* * * * *",
    "tab\there",
    "new\nline",
    'quote"s',
    "back\\slash",
    "ünïcode",
    "@at",
    "`tick`",
    "trailing ",
    " leading",
    "colon:",
    "%percent",
    "!bang",
    "&amp",
    "*star",
    "?q",
    "|pipe",
    ">gt",
    "on",
    "Off",
    "=",
]


def reread(text: str) -> Any:
    document = load_yaml(text.encode(), "test.yaml")
    assert not [d for d in document.diagnostics if d.is_error], text
    return document.data


@pytest.mark.parametrize("text", TRICKY)
def test_every_string_reads_back_as_itself(text: str) -> None:
    assert reread(emit({"key": text, text or "empty": [text]})) == {
        "key": text,
        text or "empty": [text],
    }


def test_values_nesting_and_order_read_back() -> None:
    value = {
        "z": 1,
        "a": [1, 2.5, True, None, {"k": []}, {}, [["x"], []]],
        "m": {"inner": {"deep": "v"}, "empty": {}},
    }
    text = emit(value)
    assert reread(text) == value
    assert list(reread(text)) == ["z", "a", "m"]


def test_anchors_aliases_and_comments() -> None:
    shared = {"name": "etl", "job_variables": {"env": {"A": "1"}}}
    text = emit(
        {
            "definitions": {"pools": {"etl": Anchored("pool_etl", shared)}},
            "deployments": [
                Commented(("first", "second line"), {"name": "a", "work_pool": Alias("pool_etl")}),
                Anchored("item", {"name": "b"}),
            ],
        },
        header=("header",),
    )
    assert text.startswith("# header\n")
    assert "etl: &pool_etl\n" in text and "work_pool: *pool_etl" in text
    assert "  # first\n  # second line\n  - name: a" in text
    data = reread(text)
    assert data["deployments"][0]["work_pool"] == shared
    assert data["deployments"][1] == {"name": "b"}


def test_scalars() -> None:
    assert [scalar(v) for v in (None, True, False, 3, 2.5)] == ["null", "true", "false", "3", "2.5"]
    assert scalar("plain") == "plain" and scalar("yes") == '"yes"'


def test_secret_rule_blocks_sensitive_paths_and_credential_names() -> None:
    rule = SecretRule({("secret", "db"): {"value": "blockpw"}, ("aws", "creds"): {"key": "k1"}})
    value = {
        "env": {"A": "blockpw", "API_TOKEN": "tok", "PLAIN": "ok", "B": "k1"},
        "image_pull_secrets": ["name-of-a-secret"],
        "conn": "recorded",
        "kept": "{{ $ALREADY }}",
    }
    scrubbed = rule.scrub(value, "deployment x", frozenset({"conn"}))
    assert scrubbed == {
        "env": {
            "A": "{{ prefect.blocks.secret.db }}",
            "API_TOKEN": "{{ $API_TOKEN }}",
            "PLAIN": "ok",
            "B": "{{ prefect.blocks.aws.creds.key }}",
        },
        "image_pull_secrets": ["name-of-a-secret"],
        "conn": "{{ $CONN_SECRET }}",  # made to look secret: the plan marks it sensitive again
        "kept": "{{ $ALREADY }}",
    }
    assert sorted((n.kind, n.name) for n in rule.needed) == [
        ("block", "aws.creds.key"),
        ("block", "secret.db"),
        ("env", "API_TOKEN"),
        ("env", "CONN_SECRET"),
    ]


def test_masked_url() -> None:
    assert masked_url("postgresql://me:pw@host:5432/db") == "postgresql://me:***@host:5432/db"
    assert masked_url("postgresql://host/db") == "postgresql://host/db"
    assert masked_url("/path/state.db") == "/path/state.db"


def pool(name: str, template: dict[str, Any], pool_type: str = "docker") -> Resource:
    spec = {"name": name, "type": pool_type, "base_job_template": template}
    return Resource.of(Kind.WORK_POOL, name, spec, Owner("repo", "work-pools.yaml"))


def test_pool_templates_are_reduced_to_what_differs() -> None:
    default = default_base_job_template("docker")
    with_defaults = with_job_variable_defaults(default, {"image": "img:1", "env": {"A": "b"}})
    custom = {**default, "job_configuration": {**default["job_configuration"], "extra": "x"}}
    observed = ObservedState(
        revision=1,
        resources={
            p.ident: p
            for p in (pool("same", default), pool("vars", with_defaults), pool("own", custom))
        },
    )
    pools = reread(export_state(observed, "test").pools_yaml or "")["work_pools"]
    by_name = {p["name"]: p for p in pools}
    assert "job_variables" not in by_name["same"] and "base_job_template" not in by_name["same"]
    assert by_name["vars"]["job_variables"] == {"image": "img:1", "env": {"A": "b"}}
    assert by_name["own"]["base_job_template"] == custom


def test_kubernetes_pools_are_written_and_other_types_left_out_with_a_note() -> None:
    k8s = with_job_variable_defaults(default_base_job_template("kubernetes"), {"namespace": "jobs"})
    observed = ObservedState(
        revision=1,
        resources={
            p.ident: p for p in (pool("k8s", k8s, "kubernetes"), pool("fargate", {}, "ecs"))
        },
    )
    exported = export_state(observed, "test")
    pools = reread(exported.pools_yaml or "")["work_pools"]
    assert pools == [
        {"name": "k8s", "type": "kubernetes", "job_variables": {"namespace": "jobs"}, "queues": []}
    ]
    assert exported.notes == [
        'work pool "fargate" has type "ecs", which work-pools.yaml does not declare (process, '
        "docker, kubernetes): left out; its deployments still name it"
    ]


def test_one_environment_name_never_stands_for_two_values() -> None:
    rule = SecretRule({})
    first = rule.scrub({"env": {"DB_PASSWORD": "one"}}, "deployment a")
    same = rule.scrub({"env": {"DB_PASSWORD": "one"}}, "deployment b")
    other = rule.scrub({"env": {"DB_PASSWORD": "two"}}, "deployment c")
    assert first == same == {"env": {"DB_PASSWORD": "{{ $DB_PASSWORD }}"}}
    assert other == {"env": {"DB_PASSWORD": "{{ $DB_PASSWORD_2 }}"}}


def memory_source(url: str) -> ObservedState:
    """A source as the Prefect target provides one: a URL in, an ObservedState out."""
    deployment = Resource.of(
        Kind.DEPLOYMENT,
        "ingest/made-in-prefect",
        {"name": "made-in-prefect", "flow_name": "ingest", "entrypoint": "flows/etl.py:ingest"},
        None,
    )
    return ObservedState(revision=1, resources={deployment.ident: deployment})


def test_any_source_of_observed_state_plugs_in_by_url_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reconciler.onboard import sources

    monkeypatch.setitem(sources.SOURCES, "memory://", f"{__name__}:memory_source")
    observed = sources.observe_source("memory://anything")
    result = export_state(observed, masked_url("memory://anything"))
    text = result.prefect_files["prefect.yaml"]
    assert "- name: made-in-prefect" in text
    assert "from memory://anything, made by hand" in text
    assert result.notes == [
        "deployment ingest/made-in-prefect: it has no work pool (served by its own process?); "
        "prefect.yaml needs one for a worker to run it: add `work_pool:` before planning"
    ]


def test_a_source_this_build_lacks_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.core.errors import UserError
    from reconciler.onboard import sources

    monkeypatch.setitem(sources.SOURCES, "absent://", "reconciler.no_such_target:observe_url")
    with pytest.raises(UserError, match="this build has no Prefect target"):
        sources.observe_source("absent://user:pw@host")
