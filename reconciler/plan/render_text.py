"""Plan renderer, text form: Terraform-style blocks for a terminal (pipeline: plan -> render).

`change_lines` turns changes into `Line` values; `render_text` prints them with an optional
colour gutter, and the Markdown renderer reuses the same lines with the gutter moved to column
0 so GitHub's diff highlighting colours them. Every line's text passes through `mask` last, so a
secret is hidden wherever it ends up, including inside nested values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from reconciler.model import Owner, is_unknown
from reconciler.plan.model import Action, Change, FieldDiff, PathPart, Plan, Summary

Mask = Callable[[str], str]

UNKNOWN_TEXT = "(known after build)"
NO_CHANGES_TEXT = "No changes. Your deployments and work pools match the repository."

_HEADER_COLUMN = 2
_FIELD_COLUMN = 6
_CLOSE_COLUMN = 4
_VALUE_COLUMN = _FIELD_COLUMN + 2
_NESTED_INDENT = "    "
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PLAIN_STRING = re.compile('[^"\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]*\\Z')
_SYMBOL_COLORS = {"+": "green", "~": "yellow", "-": "red"}
_HEADINGS = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in-place",
    Action.DELETE: "will be destroyed",
}


def _unmasked(text: str) -> str:
    return text


@dataclass(frozen=True)
class Line:
    """One output line: `indent` spaces, then the gutter `symbol` if shown, then `text`.

    `symbol` is the action the line belongs to even when it is not shown (continuation lines of
    a multi-line value), so the Markdown form can still colour the whole value.
    """

    indent: int
    text: str
    symbol: str = ""
    shows_symbol: bool = False
    heading: bool = False

    def plain(self, mask: Mask) -> str:
        gutter = f"{self.symbol} " if self.shows_symbol else ""
        return " " * self.indent + gutter + mask(self.text)

    def styled(self, mask: Mask) -> str:
        text = mask(self.text)
        if self.heading:
            text = click.style(text, bold=True)
        gutter = ""
        if self.shows_symbol:
            gutter = click.style(self.symbol, fg=_SYMBOL_COLORS[self.symbol]) + " "
        return " " * self.indent + gutter + text


def render_text(plan: Plan, *, color: bool, mask: Mask = _unmasked) -> str:
    """The plan as Terraform-style text; `color` adds ANSI colours and bold headings."""
    if not plan.has_changes:
        return _styled_message(mask(NO_CHANGES_TEXT), color)
    lines = change_lines(plan.changes)
    body = [line.styled(mask) if color else line.plain(mask) for line in lines]
    footer = _styled_message(mask(footer_text(plan.summary, plan.unchanged)), color)
    return "\n".join([*body, "", footer])


def footer_text(summary: Summary, unchanged: int) -> str:
    """`Plan: X to add, Y to change, Z to destroy.`, after the unchanged count when there is one."""
    counts = (
        f"Plan: {summary.add} to add, {summary.change} to change, {summary.destroy} to destroy."
    )
    if unchanged <= 0:
        return counts
    noun = "object" if unchanged == 1 else "objects"
    return f"{unchanged} {noun} unchanged. {counts}"


def change_lines(changes: Sequence[Change]) -> list[Line]:
    """The blocks of `changes` in the order given, separated by blank lines."""
    lines: list[Line] = []
    for index, change in enumerate(changes):
        if index:
            lines.append(Line(0, ""))
        lines.extend(_change_block(change))
    return lines


def render_path(path: Sequence[PathPart]) -> str:
    """A field path as `a.b[2].c`; keys that are not identifiers are quoted: `env["MY-VAR"]`."""
    rendered = ""
    for part in path:
        if isinstance(part, int):
            rendered += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            rendered += f".{part}" if rendered else part
        else:
            rendered += f"[{_json_literal(part)}]"
    return rendered


def value_lines(value: Any) -> list[str]:
    """A JSON value as JSON text, one line per scalar; containers are multi-line, keys sorted.

    The unknown marker renders as `(known after build)` wherever it appears.
    """
    if is_unknown(value):
        return [UNKNOWN_TEXT]
    if isinstance(value, dict) and value:
        entries = [(f"{_json_literal(key)}: ", value[key]) for key in sorted(value)]
        return _container_lines("{", "}", entries)
    if isinstance(value, list) and value:
        return _container_lines("[", "]", [("", item) for item in value])
    return [_json_literal(value)]


def _container_lines(opening: str, closing: str, entries: list[tuple[str, Any]]) -> list[str]:
    lines = [opening]
    for index, (prefix, item) in enumerate(entries):
        item_lines = value_lines(item)
        item_lines[0] = prefix + item_lines[0]
        if index < len(entries) - 1:
            item_lines[-1] += ","
        lines.extend(_NESTED_INDENT + line for line in item_lines)
    lines.append(closing)
    return lines


def _json_literal(value: Any) -> str:
    """JSON text that stays on one line and carries no terminal control characters."""
    if isinstance(value, str) and _PLAIN_STRING.match(value):
        return f'"{value}"'  # the common case, without json.dumps's overhead
    if value is None or isinstance(value, bool):
        return "null" if value is None else ("true" if value else "false")
    if isinstance(value, int):
        return str(value)
    return _escape_unsafe(json.dumps(value, ensure_ascii=False))


def _escape_unsafe(text: str) -> str:
    return _UNSAFE_CHARACTERS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _change_block(change: Change) -> list[Line]:
    symbol = change.action.symbol
    title = f"{change.kind.label} {_json_literal(change.key)}"
    heading = f"# {title} {_HEADINGS[change.action]}"
    if change.action is Action.CREATE and change.owner is not None:
        heading += f" (owner: {_escape_unsafe(str(change.owner))})"
    lines = [Line(_HEADER_COLUMN, heading, heading=True)]
    if change.action is Action.DELETE:
        lines.append(Line(_HEADER_COLUMN, title, symbol, shows_symbol=True))
        return lines
    lines.append(Line(_HEADER_COLUMN, f"{title} {{", symbol, shows_symbol=True))
    fields = _created_fields(change) if change.action is Action.CREATE else _updated_fields(change)
    lines.extend(_aligned_field_lines(fields))
    lines.append(Line(_CLOSE_COLUMN, "}"))
    return lines


@dataclass(frozen=True)
class _Field:
    symbol: str
    path: str
    value: list[str]


def _created_fields(change: Change) -> list[_Field]:
    """Every top-level field of the new object that has a value (null fields are left out).
    Derived fields (the flow's parameter schema, a pool's job template) are summarised on one
    line: they come from code or from Prefect's defaults, not from what a reviewer wrote; the
    JSON form has them in full, and an update shows their changed fields."""
    spec = change.desired.spec if change.desired is not None else {}
    return [
        _Field("+", render_path((key,)), _summary_or_lines(key, spec[key]))
        for key in sorted(spec)
        if spec[key] is not None
    ]


def _summary_or_lines(key: str, value: Any) -> list[str]:
    summarise = _SUMMARISED_ON_CREATE.get(key)
    if summarise is not None and isinstance(value, dict):
        return [summarise(value)]
    return value_lines(value)


def _parameter_schema_summary(schema: dict[str, Any]) -> str:
    properties = schema.get("properties", {})
    names = sorted(properties, key=lambda n: (_position(properties[n]), n))
    listed = ", ".join(names) if names else "no parameters"
    return f"(from the flow's signature: {_escape_unsafe(listed)})"


def _position(prop: Any) -> int:
    position = prop.get("position") if isinstance(prop, dict) else None
    return position if isinstance(position, int) else 1_000_000


def _job_template_summary(template: dict[str, Any]) -> str:
    variables = template.get("variables", {}).get("properties", {})
    defaults = sorted(k for k, v in variables.items() if isinstance(v, dict) and "default" in v)
    text = f"(job template with {len(variables)} variables"
    if defaults:
        text += f"; defaults for {', '.join(defaults)}"
    return _escape_unsafe(text + ")")


_SUMMARISED_ON_CREATE: dict[str, Callable[[dict[str, Any]], str]] = {
    "parameter_openapi_schema": _parameter_schema_summary,
    "base_job_template": _job_template_summary,
}


def _updated_fields(change: Change) -> list[_Field]:
    fields = [_diff_field(diff) for diff in change.diffs]
    if change.owner_changed:
        before = _owner_literal(change.previous_owner)
        after = _owner_literal(change.owner)
        fields.append(_Field("~", "owner", [f"{before} -> {after}"]))
    return fields


def _owner_literal(owner: Owner | None) -> str:
    return _json_literal(None if owner is None else str(owner))


def _diff_field(diff: FieldDiff) -> _Field:
    path = render_path(diff.path)
    if diff.before_json is None:
        return _Field("+", path, value_lines(diff.after))
    if diff.after_json is None:
        return _Field("-", path, _joined(value_lines(diff.before), ["null"]))
    return _Field("~", path, _joined(value_lines(diff.before), value_lines(diff.after)))


def _joined(before: list[str], after: list[str]) -> list[str]:
    """`before -> after` where either side may span several lines."""
    return [*before[:-1], f"{before[-1]} -> {after[0]}", *after[1:]]


def _aligned_field_lines(fields: list[_Field]) -> list[Line]:
    width = max((len(field.path) for field in fields), default=0)
    lines: list[Line] = []
    for field in fields:
        first, *rest = field.value
        text = f"{field.path.ljust(width)} = {first}"
        lines.append(Line(_FIELD_COLUMN, text, field.symbol, shows_symbol=True))
        lines.extend(Line(_VALUE_COLUMN, line, field.symbol) for line in rest)
    return lines


def _styled_message(text: str, color: bool) -> str:
    return click.style(text, bold=True) if color else text
