"""The generated reference pages of the docs site (docs/hooks/reference_pages.py): every
command and option of `reconcile`, and every key of work-pools.yaml and daemon.yaml, is on its
page, so the site cannot fall behind the code. MkDocs itself is not needed here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import click
import pytest

from reconciler.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pages() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reference_pages", ROOT / "docs" / "hooks" / "reference_pages.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def all_commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        found.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            found += all_commands(command, f"{path} {name}")
    return found


def test_every_command_and_option_is_on_the_cli_page(pages: ModuleType) -> None:
    page = pages.cli_reference(cli, "reconcile")
    commands = all_commands(cli, "reconcile")
    assert len(commands) > 20
    for path, command in commands:
        assert f"\n## {path}\n" in page, path
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.opts[0] in page, (path, param.opts[0])


def test_a_help_paragraph_marked_verbatim_becomes_a_code_block(pages: ModuleType) -> None:
    text = "Intro words\n  wrapped.\n\n\b\nreconcile a   keeps its spacing\nreconcile b"
    assert pages.help_markdown(text) == [
        "Intro words wrapped.",
        "",
        "```text",
        "reconcile a   keeps its spacing\nreconcile b",
        "```",
        "",
    ]


def schema_keys(schema: dict[str, object], prefix: str = "") -> list[str]:
    keys: list[str] = []
    properties = schema.get("properties", {})
    assert isinstance(properties, dict)
    for name, node in properties.items():
        keys.append(f"{prefix}{name}")
        if isinstance(node, dict) and "$ref" not in node:
            keys += schema_keys(node, f"{prefix}{name}.")
            items = node.get("items")
            if isinstance(items, dict) and "$ref" not in items:
                keys += schema_keys(items, f"{prefix}{name}[].")
    return keys


@pytest.mark.parametrize("schema_file", ["work-pools.schema.json", "daemon.schema.json"])
def test_every_key_of_the_schema_is_on_its_page(pages: ModuleType, schema_file: str) -> None:
    schema = json.loads((ROOT / "schemas" / schema_file).read_text())
    page = pages.schema_reference(schema, "x.yaml", f"schemas/{schema_file}")
    for key in schema_keys(schema):
        assert f"| `{key}` |" in page, key
    for name, definition in schema["$defs"].items():
        assert f"## `{name}`" in page
        for key in schema_keys(definition):
            assert f"| `{key}` |" in page, (name, key)


def test_pipes_are_escaped_outside_code_only(pages: ModuleType) -> None:
    assert pages.type_text({"enum": ["text", "json"]}) == '`"text"` or `"json"`'
    assert pages.type_text({"type": "array", "items": {"$ref": "#/$defs/repository"}}) == (
        "list of [repository](#repository)"
    )
