"""What kind of flow a run's entrypoint is, read with `ast` (worker: before starting a run).

A worker runs two kinds of entrypoint:
- a Prefect flow (a function decorated with Prefect's `@flow`): run by Prefect's own engine,
  against the Prefect API the worker serves, so task runs, logs and states are recorded;
- anything else (a plain function): run by reconciler's small runner, which just calls it.

The file is parsed, never imported: the worker decides before any user code runs, and a file
that imports `prefect` on a Python that lacks it gets a message saying what to install where.
"""

from __future__ import annotations

import ast
import enum
from dataclasses import dataclass
from pathlib import Path


class FlowKind(enum.Enum):
    PREFECT_FLOW = "prefect"
    PLAIN = "plain"


@dataclass(frozen=True)
class EntrypointInfo:
    kind: FlowKind
    imports_prefect: bool
    """The file imports `prefect` (or one of its modules) at any level."""
    source: Path | None
    """The file that was read; None when it could not be found here."""
    prefect_optional: bool = False
    """Every import of prefect is guarded by `try: ... except ImportError:` (the file has its
    own fallback, so it also runs, as a plain function, where prefect is missing)."""


def entrypoint_source(entrypoint: str, flow_dir: Path) -> tuple[Path | None, str]:
    """The file that defines an entrypoint (`path/file.py:fn` or `package.module.fn`)
    under `flow_dir`, and the function's name. The file is None when it is not there (an
    installed module, for instance)."""
    if ":" in entrypoint:
        path_text, _, name = entrypoint.rpartition(":")
        path = Path(path_text)
        path = path if path.is_absolute() else flow_dir / path
        return (path if path.is_file() else None), name
    module, _, name = entrypoint.rpartition(".")
    parts = module.split(".") if module else []
    if not parts:
        return None, name
    for candidate in (
        flow_dir.joinpath(*parts).with_suffix(".py"),
        flow_dir.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file():
            return candidate, name
    return None, name


def inspect_entrypoint(entrypoint: str, flow_dir: Path) -> EntrypointInfo:
    source, name = entrypoint_source(entrypoint, flow_dir)
    if source is None:
        return EntrypointInfo(FlowKind.PLAIN, imports_prefect=False, source=None)
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (SyntaxError, ValueError, OSError):
        # The runner reports the real error when it loads the file.
        return EntrypointInfo(FlowKind.PLAIN, imports_prefect=False, source=source)
    names = _prefect_names(tree)
    imports_prefect = bool(names.modules or names.flow_decorators) or names.any_import
    function = _function(tree, name)
    is_flow = function is not None and any(
        _is_flow_decorator(decorator, names) for decorator in function.decorator_list
    )
    kind = FlowKind.PREFECT_FLOW if is_flow else FlowKind.PLAIN
    return EntrypointInfo(
        kind,
        imports_prefect=imports_prefect,
        source=source,
        prefect_optional=imports_prefect and not names.unguarded,
    )


@dataclass
class _PrefectNames:
    modules: set[str]
    """Local names bound to the `prefect` module (`import prefect`, `import prefect as pf`)."""
    flow_decorators: set[str]
    """Local names bound to Prefect's `flow` (`from prefect import flow [as f]`)."""
    any_import: bool = False
    unguarded: bool = False
    """Some import of prefect is not inside a `try` that catches ImportError."""


_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _guarded_imports(tree: ast.Module) -> set[int]:
    """ids of the import statements inside a `try` whose handlers catch a failed import."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        catches = False
        for handler in node.handlers:
            caught = handler.type
            names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
            if caught is None or any(
                isinstance(name, ast.Name) and name.id in _IMPORT_ERRORS for name in names
            ):
                catches = True
        if catches:
            for statement in node.body:
                for inner in ast.walk(statement):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        guarded.add(id(inner))
    return guarded


def _prefect_names(tree: ast.Module) -> _PrefectNames:
    names = _PrefectNames(set(), set())
    guarded = _guarded_imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "prefect" or alias.name.startswith("prefect."):
                    names.any_import = True
                    names.unguarded = names.unguarded or id(node) not in guarded
                    if alias.asname and alias.name == "prefect":
                        names.modules.add(alias.asname)
                    elif alias.asname is None:
                        names.modules.add("prefect")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == "prefect" or node.module.startswith("prefect."))
        ):
            names.any_import = True
            names.unguarded = names.unguarded or id(node) not in guarded
            for alias in node.names:
                if alias.name == "flow" and node.module in ("prefect", "prefect.flows"):
                    names.flow_decorators.add(alias.asname or "flow")
    return names


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    return None


def _is_flow_decorator(decorator: ast.expr, names: _PrefectNames) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Name):
        return target.id in names.flow_decorators
    if isinstance(target, ast.Attribute) and target.attr == "flow":
        base = target.value
        return isinstance(base, ast.Name) and base.id in names.modules
    return False
