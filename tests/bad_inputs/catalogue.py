"""The bad-input catalogue: what reconciler rejects, and how. One case per file in cases/:

    title:     what is wrong, in a few words
    why:       (optional) why it is refused, for the docs
    files:     files committed over the test project (tests/e2e/helpers.py `project()`)
    symlinks:  files committed as symbolic links: {path: target}
    command:   the arguments of `reconcile`; {repo}, {store} and {tmp} are filled in
    exit_code: what it must exit with (1)
    expect:    fragments the output must contain, in any order
    never:     (optional) fragments it must not contain (credentials, secrets)

test_catalogue.py runs every case against a store where the valid project is applied;
`python -m tests.bad_inputs.catalogue` writes docs/bad-inputs.md from the cases (a test checks
that the page is up to date).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CASES = Path(__file__).parent / "cases"
DOCS_PAGE = Path(__file__).parents[2] / "docs" / "bad-inputs.md"


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    command: list[str]
    exit_code: int
    expect: list[str]
    why: str = ""
    files: dict[str, str] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    never: list[str] = field(default_factory=list)


def load_cases() -> list[Case]:
    cases = []
    for path in sorted(CASES.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        cases.append(Case(name=path.stem, **raw))
    return cases


def _shown(text: str) -> str:
    """Text for a Markdown code span or block: control characters written as escapes."""
    from reconciler.core.terminal_text import printable

    return printable(text, keep_newlines=True)


def _fence(text: str) -> str:
    text = _shown(text)
    if len(text) > 600:
        text = text[:600] + f"\n... ({len(text) - 600} more characters)"
    return "```\n" + text.rstrip("\n") + "\n```"


def render_markdown(cases: list[Case]) -> str:
    lines = [
        "# What we reject and how",
        "",
        "<!-- Generated from tests/bad_inputs/cases/ by `python -m tests.bad_inputs.catalogue`;",
        "     edit the cases, not this page. tests/bad_inputs/test_catalogue.py checks both. -->",
        "",
        "Every case below is a test (tests/bad_inputs/test_catalogue.py): starting from a",
        "repository whose valid configuration is applied, the input is committed and the command",
        "run; it must exit with the code shown, print each message shown, print no traceback,",
        "and leave the store exactly as it was. Configuration errors name the file, line and",
        "column; `{repo}` is the repository's path and `{store}` the store's URL.",
        "",
        "| Case | Command | Exit | Message (fragments) |",
        "|---|---|---|---|",
    ]
    for case in cases:
        first = _shown(case.expect[0]).replace("|", "\\|")
        command = _shown(" ".join(_quoted(a) for a in case.command)).replace("|", "\\|")
        if len(command) > 60:
            command = command[:57] + "..."
        lines.append(
            f"| [{case.title}](#{case.name}) | `` {command} `` | {case.exit_code} | `` {first} `` |"
        )
    for case in cases:
        lines += ["", f'<a id="{case.name}"></a>', f"## {case.title}", ""]
        if case.why:
            lines += [case.why, ""]
        for path, content in case.files.items():
            lines += [f"`{path}`:", "", _fence(content), ""]
        for path, target in case.symlinks.items():
            lines += [f"`{path}` is committed as a symbolic link to `{_shown(target)}`.", ""]
        lines += ["Command:", "", _fence("reconcile " + " ".join(_quoted(a) for a in case.command))]
        lines += ["", f"Exit code {case.exit_code}; the output contains:", ""]
        lines += [_fence("\n".join(case.expect))]
    return "\n".join(lines) + "\n"


def _quoted(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./{}:=," for c in arg) else repr(arg)


def main() -> None:
    DOCS_PAGE.write_text(render_markdown(load_cases()))
    print(f"wrote {DOCS_PAGE}", file=sys.stderr)


if __name__ == "__main__":
    main()
