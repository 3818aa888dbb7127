"""Plan renderer, text form: Terraform-style blocks for a terminal (pipeline: plan -> render).

`change_lines` turns changes into finished lines by plain string building, one list append per
line. A `Gutters` value says what each form prints before a line's text: the plain and coloured
terminal forms here, and the Markdown renderer's diff form, which moves the action to column 0
so GitHub's diff highlighting colours the lines. Every line's text passes through `mask` last,
so a secret is hidden wherever it ends up, including inside nested values.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from reconciler.core.parallel import map_forked
from reconciler.model.resources import Owner, is_unknown
from reconciler.plan.model import Action, Change, FieldDiff, PathPart, Plan, Summary

Mask = Callable[[str], str]

UNKNOWN_TEXT = "(known after build)"
RUN_TIME_TEXT = "(known at run time: {})"
# A pull step's argument that is wholly an earlier pull step's output (`{{ get-token.token }}`);
# blocks, variables and `$VAR` are not outputs.
_RUN_TIME_PLACEHOLDER = re.compile(r'"(\{\{ *(?!prefect\.|\$)[\w\-]+(?:\.[\w\-]+)* *\}\})"')
NO_CHANGES_TEXT = "No changes. Your deployments and work pools match the repository."

_HEADER_COLUMN = 2
_FIELD_COLUMN = 6
_CLOSE_COLUMN = 4
_VALUE_COLUMN = _FIELD_COLUMN + 2
_HEADING_PREFIX = " " * _HEADER_COLUMN
_CLOSE_PREFIX = " " * _CLOSE_COLUMN
_NESTED_INDENT = "    "
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SYMBOL_COLORS = {"+": "green", "~": "yellow", "-": "red", "=": "cyan"}
_HEADINGS = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in-place",
    Action.DELETE: "will be destroyed",
    Action.ADOPT: "will be adopted",
}

_Field = tuple[str, str, list[str]]
"""One field of a block: its action symbol, its rendered path, and its value's lines."""


def _unmasked(text: str) -> str:
    return text


@dataclass(frozen=True)
class Gutters:
    """What one output form prints before the masked text of each kind of line.

    `title`, `field` and `value` map an action symbol (`+`, `~`, `-`) to the prefix of a block's
    opening line, of a field's first line, and of the further lines of a field's value (the
    terminal shows no symbol there, the diff form still marks them). `heading` styles the text
    of a block's `# ...` heading.
    """

    title: Mapping[str, str]
    field: Mapping[str, str]
    value: Mapping[str, str]
    heading: Callable[[str], str]

    @classmethod
    def of(
        cls, gutter: Callable[[str, int, bool], str], heading: Callable[[str], str] = _unmasked
    ) -> Gutters:
        """Gutters from `gutter(symbol, column, shows_symbol)`: the prefix of one line whose
        text starts at `column` (after the symbol and a space when it is shown)."""
        return cls(
            title={symbol: gutter(symbol, _HEADER_COLUMN, True) for symbol in _SYMBOL_COLORS},
            field={symbol: gutter(symbol, _FIELD_COLUMN, True) for symbol in _SYMBOL_COLORS},
            value={symbol: gutter(symbol, _VALUE_COLUMN, False) for symbol in _SYMBOL_COLORS},
            heading=heading,
        )


def _plain_gutter(symbol: str, column: int, shows_symbol: bool) -> str:
    return " " * column + (f"{symbol} " if shows_symbol else "")


def _colored_gutter(symbol: str, column: int, shows_symbol: bool) -> str:
    colored = click.style(symbol, fg=_SYMBOL_COLORS[symbol])
    return " " * column + (f"{colored} " if shows_symbol else "")


def _bold(text: str) -> str:
    return click.style(text, bold=True)


PLAIN_GUTTERS = Gutters.of(_plain_gutter)
COLORED_GUTTERS = Gutters.of(_colored_gutter, heading=_bold)


def render_text(plan: Plan, *, color: bool, mask: Mask = _unmasked) -> str:
    """The plan as Terraform-style text; `color` adds ANSI colours and bold headings."""
    if getattr(mask, "hides_nothing", False):
        mask = _unmasked  # a masker without secrets: the lines need no masking call
    steps = [mask(line) for line in step_lines(plan)]
    if not plan.has_changes:
        return "\n".join([*steps, _styled_message(mask(NO_CHANGES_TEXT), color)])
    blocks = _change_text(plan.changes, COLORED_GUTTERS if color else PLAIN_GUTTERS, mask)
    footer = _styled_message(mask(footer_text(plan.summary, plan.unchanged)), color)
    return "\n".join([*steps, blocks, "", footer])


_CHUNK_CHANGES = 25
"""Changes per piece of work when a large plan's text is rendered on every core (small
pieces: when a core is busy with other programs, the other one takes more of them)."""


def _change_text(changes: Sequence[Change], gutters: Gutters, mask: Mask) -> str:
    """`change_lines` joined into one text; a large plan is rendered in pieces, on every
    core, and the pieces joined with the blank line that separates any two blocks."""
    chunks = [changes[i : i + _CHUNK_CHANGES] for i in range(0, len(changes), _CHUNK_CHANGES)]
    texts = map_forked(
        chunks,
        lambda chunk: "\n".join(change_lines(chunk, gutters, mask)),
        size=_text_size,
    )
    return f"\n{mask('')}\n".join(texts)


def _text_size(changes: Sequence[Change]) -> int:
    """About how many bytes of text the changes render to: a created object shows its whole
    spec, anything else a few lines."""
    return sum(len(c.desired.spec_json) if c.desired is not None else 100 for c in changes)


def step_lines(plan: Plan) -> list[str]:
    """The build and push steps apply would run or skip, then a blank line; none if none."""
    if not plan.steps:
        return []
    lines = ["Build and push steps (apply runs them; this plan did not):"]
    for step in plan.steps:
        label = f"{step.id} ({step.name.rsplit('.', 1)[-1]})" if step.id else step.name
        status = "would run" if step.status == "run" else "unchanged, skipped"
        users = ", ".join(step.deployments)
        lines.append(f"  {status:18} {_escape_unsafe(label)} in {step.file} for {users}")
    return [*lines, ""]


def footer_text(summary: Summary, unchanged: int) -> str:
    """`Plan: X to add, Y to change, Z to destroy.`, after the unchanged count when there is one
    (`W to adopt, ` first when the plan adopts)."""
    adopt = f"{summary.adopt} to adopt, " if summary.adopt else ""
    counts = (
        f"Plan: {adopt}{summary.add} to add, {summary.change} to change, "
        f"{summary.destroy} to destroy."
    )
    if unchanged <= 0:
        return counts
    noun = "object" if unchanged == 1 else "objects"
    return f"{unchanged} {noun} unchanged. {counts}"


def change_lines(changes: Sequence[Change], gutters: Gutters, mask: Mask) -> list[str]:
    """The blocks of `changes` in the order given, separated by blank lines."""
    lines: list[str] = []
    for index, change in enumerate(changes):
        if index:
            lines.append(mask(""))
        _append_block(change, gutters, mask, lines)
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
    lines: list[str] = []
    _append_value(value, "", "", "", lines)
    return lines


def _append_value(value: Any, head: str, tail: str, indent: str, lines: list[str]) -> None:
    """Append `value`'s lines, each after `indent`; `head` (`"key": `) opens the first line and
    `tail` (a comma) closes the last."""
    if type(value) is str and _is_plain(value):  # the common case, inline
        lines.append(f'{indent}{head}"{value}"{tail}')
    elif isinstance(value, dict) and value:
        if is_unknown(value):
            lines.append(f"{indent}{head}{UNKNOWN_TEXT}{tail}")
        else:
            _append_mapping(value, head, tail, indent, lines)
    elif isinstance(value, list) and value:
        _append_list(value, head, tail, indent, lines)
    else:
        lines.append(f"{indent}{head}{_json_literal(value)}{tail}")


def _append_mapping(
    mapping: dict[str, Any], head: str, tail: str, indent: str, lines: list[str]
) -> None:
    lines.append(f"{indent}{head}{{")
    inner = indent + _NESTED_INDENT
    *keys, last = sorted(mapping)
    for key in keys:
        _append_value(mapping[key], _key_head(key), ",", inner, lines)
    _append_value(mapping[last], _key_head(last), "", inner, lines)
    lines.append(f"{indent}}}{tail}")


@functools.lru_cache(maxsize=4096)
def _key_head(key: str) -> str:
    """`"key": `, for the few keys that repeat in every object of a plan."""
    return f"{_json_literal(key)}: "


def _append_list(items: list[Any], head: str, tail: str, indent: str, lines: list[str]) -> None:
    lines.append(f"{indent}{head}[")
    inner = indent + _NESTED_INDENT
    for item in items[:-1]:
        _append_value(item, "", ",", inner, lines)
    _append_value(items[-1], "", "", inner, lines)
    lines.append(f"{indent}]{tail}")


def _json_literal(value: Any) -> str:
    """JSON text that stays on one line and carries no terminal control characters."""
    if isinstance(value, str):
        if _is_plain(value):
            return f'"{value}"'  # the common case, without json.dumps's overhead
    elif value is None:
        return "null"
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif isinstance(value, int):
        return str(value)
    elif value == {} and isinstance(value, dict):
        return "{}"  # in every schedule (`parameters`)
    return _escape_unsafe(json.dumps(value, ensure_ascii=False))


def _is_plain(text: str) -> bool:
    """True when `text` needs no escaping in JSON or a terminal: no quote, backslash, control
    or line-separator character. Printable rules those out faster than a regex; the few other
    unprintable characters take the json.dumps path, which writes them unchanged."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _escape_unsafe(text: str) -> str:
    return _UNSAFE_CHARACTERS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _append_block(change: Change, gutters: Gutters, mask: Mask, lines: list[str]) -> None:
    symbol = change.action.symbol
    title = f"{change.kind.label} {_json_literal(change.key)}"
    lines.append(_HEADING_PREFIX + gutters.heading(mask(_heading(change, title))))
    if change.action is Action.DELETE:
        lines.append(gutters.title[symbol] + mask(title))
        return
    lines.append(gutters.title[symbol] + mask(f"{title} {{"))
    fields = _created_fields(change) if change.action is Action.CREATE else _updated_fields(change)
    _append_aligned_fields(fields, gutters, mask, lines)
    lines.append(_CLOSE_PREFIX + mask("}"))


@functools.lru_cache(maxsize=1024)
def _owner_text(owner: Owner) -> str:
    """An owner as a heading shows it (the same few owners head every block)."""
    return _escape_unsafe(str(owner))


def _heading(change: Change, title: str) -> str:
    heading = f"# {title} {_HEADINGS[change.action]}"
    if change.action is Action.CREATE and change.owner is not None:
        heading += f" (owner: {_owner_text(change.owner)})"
    return heading


def _append_aligned_fields(
    fields: list[_Field], gutters: Gutters, mask: Mask, lines: list[str]
) -> None:
    """`path = value` per field, the `=` signs aligned; a value's further lines follow it."""
    width = max((len(path) for _, path, _ in fields), default=0)
    for symbol, path, value in fields:
        lines.append(gutters.field[symbol] + mask(f"{path.ljust(width)} = {value[0]}"))
        if len(value) > 1:
            prefix = gutters.value[symbol]
            if mask is _unmasked:  # the common case, without a call per line
                lines.extend([prefix + text for text in value[1:]])
            else:
                lines.extend([prefix + mask(text) for text in value[1:]])


def _created_fields(change: Change) -> list[_Field]:
    """Every top-level field of the new object that has a value (null fields are left out).
    Derived fields (the flow's parameter schema, a pool's job template) are summarised on one
    line: they come from code or from Prefect's defaults, not from what a reviewer wrote; the
    JSON form has them in full, and an update shows their changed fields."""
    spec = change.desired.view() if change.desired is not None else {}
    return [
        ("+", _top_level_path(key), _summary_or_lines(key, spec[key]))
        for key in sorted(spec)
        if spec[key] is not None
    ]


@functools.lru_cache(maxsize=1024)
def _top_level_path(key: str) -> str:
    return render_path((key,))


def _summary_or_lines(key: str, value: Any) -> list[str]:
    summarise = _SUMMARISED_ON_CREATE.get(key)
    if summarise is not None and isinstance(value, dict):
        return [summarise(value)]
    if key == "pull_steps":
        return _mark_run_time(value_lines(value))
    return value_lines(value)


def _mark_run_time(lines: list[str]) -> list[str]:
    """Pull steps' arguments taken from an earlier pull step's outputs, shown as known at run
    time: the worker runs the steps (docs/prefect-compatibility.md, "What is imported where")."""
    return [
        _RUN_TIME_PLACEHOLDER.sub(lambda m: RUN_TIME_TEXT.format(m[1]), line)
        if "{{" in line
        else line
        for line in lines
    ]


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
        fields.append(("~", "owner", [f"{before} -> {after}"]))
    return fields


def _owner_literal(owner: Owner | None) -> str:
    return _json_literal(None if owner is None else str(owner))


def _diff_field(diff: FieldDiff) -> _Field:
    """`after` for an added field, `before -> null` for a removed one, else `before -> after`
    (either side may span several lines)."""
    path = render_path(diff.path)
    mark = _mark_run_time if diff.path[:1] == ("pull_steps",) else list
    if diff.before_json is None:
        return ("+", path, mark(value_lines(diff.after)))
    lines = value_lines(diff.before)
    if diff.after_json is None:
        lines[-1] += " -> null"
        return ("-", path, mark(lines))
    last = lines.pop()
    _append_value(diff.after, f"{last} -> ", "", "", lines)
    return ("~", path, mark(lines))


def _styled_message(text: str, color: bool) -> str:
    return click.style(text, bold=True) if color else text
