"""What the readers of our files and of prefect.yaml share (reconciler/project): a name
declared twice in one file, and the problems of Prefect's rules placed at their lines."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core.diagnostics import Diagnostic, error, warning
from reconciler.prefect_rules.triggers import Problem
from reconciler.prefect_rules.yamlload import LoadedDocument, Path


def declared_twice(
    document: LoadedDocument, seen: dict[str, Path], label: str, name: str, at: Path
) -> Diagnostic | None:
    """An error when `name` (at `at`, its `name` key) was declared before in the file;
    otherwise None, and `name` is remembered in `seen`."""
    if name in seen:
        first = document.location(seen[name])
        return error(
            f'{label} "{name}" is declared twice in this file (first at line {first.line})',
            document.location((*at, "name")),
        )
    seen[name] = (*at, "name")
    return None


def placed(document: LoadedDocument, at: Path, problems: Iterable[Problem]) -> list[Diagnostic]:
    """Problems found below `at`, each at its line: an unknown key at the key itself."""
    found: list[Diagnostic] = []
    for problem in problems:
        where = (*at, *problem.path)
        unknown = problem.message.startswith("unknown key")
        location = document.key_location(where) if unknown else document.location(where)
        make = error if problem.is_error else warning
        found.append(make(problem.message, location, problem.hint))
    return found
