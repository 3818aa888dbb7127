"""Plan renderer, Markdown form for pull-request comments (pipeline: plan -> render).

A summary table with one row per repository, then per repository a collapsed ```diff block
holding the text renderer's lines with the action moved to column 0 (`~` becomes `!`) so
GitHub colours them, then the plan's diagnostics. The jinja2 template does not autoescape
(this is Markdown): user text is masked here and escaped by the template's `md` and `html`
filters; user text is data for the template, never a template itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jinja2

from reconciler.core.diagnostics import Diagnostic
from reconciler.plan.model import Action, Change, Plan, Summary
from reconciler.plan.render_text import NO_CHANGES_TEXT, Gutters, change_lines, step_lines

Mask = Callable[[str], str]

UNOWNED = "(unowned)"
"""The repository heading for changes to objects that no repository owns."""

_SHORT_SHA_LENGTH = 7
_MIN_FENCE_LENGTH = 3
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_LINE_BREAKS = re.compile(r"[\r\n]+")
_BACKTICK_RUN = re.compile(r"`+")


def _unmasked(text: str) -> str:
    return text


@dataclass(frozen=True)
class _Row:
    repo: str
    commit: str
    summary: Summary


@dataclass(frozen=True)
class _Section:
    repo: str
    summary: Summary
    fence: str
    diff: str


def render_markdown(plan: Plan, *, mask: Mask = _unmasked) -> str:
    """The plan as a Markdown comment: table, one collapsed diff per repository, warnings.

    Like the other renderers, the text has no trailing newline.
    """
    groups = _changes_by_repository(plan)
    commits = {source.repo: source.commit for source in plan.sources}
    rows = [
        _Row(mask(repo), _short_sha(commits.get(repo)), _summary_of(changes))
        for repo, changes in groups.items()
    ]
    sections = [_section(repo, changes, mask) for repo, changes in groups.items() if changes]
    rendered = _template().render(
        has_changes=plan.has_changes,
        no_changes_text=mask(NO_CHANGES_TEXT),
        rows=rows,
        total=plan.summary,
        unchanged_text=_unchanged_text(plan.unchanged),
        sections=sections,
        warnings=[mask(_diagnostic_text(diagnostic)) for diagnostic in plan.diagnostics],
        steps=[mask(line.strip()) for line in step_lines(plan)[1:] if line.strip()],
    )
    return rendered.rstrip("\n")


def repository_of(change: Change) -> str:
    """The repository a change belongs to: its owner's (the observed one for a delete)."""
    owner = change.owner
    return owner.repo if owner is not None else UNOWNED


def _changes_by_repository(plan: Plan) -> dict[str, list[Change]]:
    """Changes grouped by repository: the plan's sources first, other owners sorted, then
    (unowned). A source with no changes keeps its (empty) group so the table lists it."""
    grouped: dict[str, list[Change]] = {}
    for change in plan.changes:
        grouped.setdefault(repository_of(change), []).append(change)
    order = list(dict.fromkeys(source.repo for source in plan.sources))
    order += sorted(repo for repo in grouped if repo not in order and repo != UNOWNED)
    if UNOWNED in grouped and UNOWNED not in order:
        order.append(UNOWNED)
    return {repo: grouped.get(repo, []) for repo in order}


def _summary_of(changes: Sequence[Change]) -> Summary:
    actions = [change.action for change in changes]
    return Summary(
        actions.count(Action.CREATE),
        actions.count(Action.UPDATE),
        actions.count(Action.DELETE),
        actions.count(Action.ADOPT),
    )


def _short_sha(commit: str | None) -> str:
    return commit[:_SHORT_SHA_LENGTH] if commit else ""


def _unchanged_text(unchanged: int) -> str:
    if unchanged <= 0:
        return ""
    return f"{unchanged} {'object' if unchanged == 1 else 'objects'} unchanged."


def _section(repo: str, changes: Sequence[Change], mask: Mask) -> _Section:
    diff = "\n".join(change_lines(changes, _DIFF_GUTTERS, mask))
    return _Section(mask(repo), _summary_of(changes), fence_for(diff), diff)


def _diff_gutter(symbol: str, column: int, shows_symbol: bool) -> str:
    """A text line's gutter with its action at column 0 (`~` as `!`), the columns otherwise
    kept."""
    marker = "!" if symbol == "~" else symbol
    return marker + " " * (column - 1) + ("  " if shows_symbol else "")


_DIFF_GUTTERS = Gutters.of(_diff_gutter)


def fence_for(content: str) -> str:
    """A backtick fence longer than any backtick run in `content`, at least three long."""
    if "`" not in content:  # the common case, without scanning a large diff with a regex
        return "`" * _MIN_FENCE_LENGTH
    longest = max(len(run) for run in _BACKTICK_RUN.findall(content))
    return "`" * max(_MIN_FENCE_LENGTH, longest + 1)


def _diagnostic_text(diagnostic: Diagnostic) -> str:
    """`file:line: message` (errors say so), then the hint in parentheses."""
    where = f"{diagnostic.location}: " if diagnostic.location else ""
    severity = "error: " if diagnostic.is_error else ""
    hint = f" (hint: {diagnostic.hint})" if diagnostic.hint else ""
    return f"{where}{severity}{diagnostic.message}{hint}"


def escape_html(text: str) -> str:
    """Text safe inside an HTML element: `&`, `<` and `>` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_markdown(text: str) -> str:
    """Text safe in a Markdown table cell or list item: HTML characters as entities, one line,
    and the characters that start code, emphasis, links or cells backslash-escaped."""
    one_line = _LINE_BREAKS.sub(" ", escape_html(text))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", one_line)


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("reconciler.plan", "templates"),
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["md"] = escape_markdown
    environment.filters["html"] = escape_html
    return environment.get_template("plan.md.j2")
