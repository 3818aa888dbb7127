"""Issue 15: every command and every option of `reconcile` says what it does in --help."""

from __future__ import annotations

from collections.abc import Iterator

import click

from reconciler.cli.main import cli


def _commands(
    command: click.Command, path: str = "reconcile"
) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, f"{path} {name}")


def test_every_command_has_help() -> None:
    missing = [path for path, command in _commands(cli) if not (command.help or "").strip()]
    assert not missing, f"commands without help: {missing}"


def test_every_option_has_help() -> None:
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in _commands(cli)
        for param in command.params
        if isinstance(param, click.Option)
        and not param.hidden
        and not (param.help or "").strip()
        and param.opts[0] not in ("--help", "--version")
    ]
    assert not missing, f"options without help: {missing}"


def test_the_tree_is_walked() -> None:
    paths = [path for path, _ in _commands(cli)]
    assert "reconcile flow-run logs" in paths and "reconcile deployment run" in paths
    assert len(paths) > 40
