"""What the readers of our files and of prefect.yaml share (reconciler/project): reading one
of our own files against its schema, a name declared twice in one file, and the problems of
Prefect's rules placed at their lines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler.core.diagnostics import Diagnostic, error, warning
from reconciler.prefect_rules.triggers import Problem
from reconciler.prefect_rules.validation import validate_document
from reconciler.prefect_rules.yamlload import LoadedDocument, Path, YamlLoadError, load_yaml
from reconciler.sources.base import (
    LinkOutsideRepository,
    Snapshot,
    link_diagnostic,
    read_following_links,
)


def load_our_file(
    snapshot: Snapshot, path: str, display: str | None, schema: Any, key: str
) -> tuple[LoadedDocument | None, list[Diagnostic]]:
    """One of our files (work-pools.yaml, automations.yaml) read and checked against its
    schema, strictly (the file is ours: unknown keys are errors): the document when it has
    no error, and every diagnostic. `key` names the list the file must hold."""
    try:
        document = load_yaml(read_following_links(snapshot, path), display or path)
    except YamlLoadError as exc:
        return None, [exc.diagnostic]
    except LinkOutsideRepository as exc:
        return None, [link_diagnostic(exc, display or path)]
    diagnostics = list(document.diagnostics)
    if not isinstance(document.data, dict):
        article = "an" if key[0] in "aeiou" else "a"
        diagnostics.append(
            error(f"the file must be a mapping with {article} `{key}` list", document.location(()))
        )
        return None, diagnostics
    diagnostics.extend(validate_document(document, schema, strict=True))
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    return document, diagnostics


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
