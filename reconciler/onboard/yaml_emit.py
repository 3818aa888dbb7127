"""A small YAML writer for the files `reconcile import` writes: block style, keys in the order
given, named anchors (`&name`) and aliases (`*name`), and comment lines above mapping keys and
list items.

PyYAML's dumper names anchors `id001` and writes them wherever an object first appears; the
imported files want names a person chose (`&pool_etl`) under `definitions:`, so this writer
takes them from the value: `Anchored(name, value)` writes `&name` before the value and
`Alias(name)` writes `*name`. `Commented(lines, value)` writes `# line` above a mapping entry or
list item. Strings are written plain when YAML reads them back as the same string, otherwise
double-quoted (JSON's escapes are YAML's)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Anchored:
    name: str
    value: Any


@dataclass(frozen=True)
class Alias:
    name: str


@dataclass(frozen=True)
class Commented:
    lines: tuple[str, ...]
    value: Any


_PLAIN = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_ ./:@+=,()-]*$")
_INDENT = "  "


def emit(document: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """The YAML text of `document` (a mapping), with `header` comment lines first."""
    lines = [_comment(text) for text in header]
    _mapping(document, 0, lines)
    return "\n".join(lines) + "\n"


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and not text.endswith((":", " ")) and _reads_back(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _reads_back(text: str) -> bool:
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return False


def _comment(text: str) -> str:
    return "# " + " ".join(text.split()) if text.strip() else "#"


def _unwrap(value: Any) -> tuple[tuple[str, ...], str | None, Any]:
    comments: tuple[str, ...] = ()
    anchor = None
    if isinstance(value, Commented):
        comments, value = value.lines, value.value
    if isinstance(value, Anchored):
        anchor, value = value.name, value.value
    return comments, anchor, value


def _inline(value: Any) -> str | None:
    """How `value` is written on its key's line; None when it needs lines of its own."""
    if isinstance(value, Alias):
        return f"*{value.name}"
    if isinstance(value, Mapping):
        return "{}" if not value else None
    if isinstance(value, list | tuple):
        return "[]" if not value else None
    return scalar(value)


def _mapping(value: Mapping[str, Any], depth: int, lines: list[str]) -> None:
    pad = _INDENT * depth
    for key, item in value.items():
        comments, anchor, item = _unwrap(item)
        lines.extend(pad + _comment(text) for text in comments)
        head = f"{pad}{scalar(key)}:" + (f" &{anchor}" if anchor else "")
        inline = _inline(item)
        if inline is not None:
            lines.append(f"{head} {inline}")
        elif isinstance(item, Mapping):
            lines.append(head)
            _mapping(item, depth + 1, lines)
        else:
            lines.append(head)
            _sequence(item, depth + 1, lines)


def _sequence(value: Sequence[Any], depth: int, lines: list[str]) -> None:
    pad = _INDENT * depth
    for item in value:
        comments, anchor, item = _unwrap(item)
        lines.extend(pad + _comment(text) for text in comments)
        dash = f"{pad}- " + (f"&{anchor} " if anchor else "")
        inline = _inline(item)
        if inline is not None:
            lines.append(dash + inline)
        elif isinstance(item, Mapping):
            nested: list[str] = []
            _mapping(item, depth + 1, nested)
            first = nested[0][len(_INDENT) * (depth + 1) :]
            if anchor or first.startswith("#"):
                lines.append(dash.rstrip())
                lines.extend(nested)
            else:
                lines.append(dash + first)
                lines.extend(nested[1:])
        else:
            lines.append(dash.rstrip())
            _sequence(item, depth + 1, lines)
