"""Read a deployment's flow from its entrypoint without importing any user code.

Part of the desired-state stage. `prefect deploy` imports the flow to learn its name,
description and parameter schema; we parse the committed file with `ast` instead, so nothing
from the repository runs and planning reads exactly what is committed. Only `Snapshot.kind`
and `Snapshot.read` are used.

Entrypoints take two forms, both relative to the directory of the prefect.yaml:
`path/to/file.py:function` (split on the last ":") and `package.module.function`.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.core.errors import UserError
from reconciler.prefect_rules.flow_types import TypeReader, Unresolved, qualified_name
from reconciler.sources.base import PathKind, Snapshot

MAX_FLOW_FILE_BYTES = 5 * 1024 * 1024

ENTRYPOINT_FORMS = (
    "write the entrypoint as 'path/to/file.py:flow_function' or 'package.module.flow_function', "
    "relative to the directory that holds prefect.yaml"
)

# What a decorator must resolve to (through the module's imports) to mark a flow.
FLOW_DECORATORS = frozenset({"flow", "prefect.flow", "prefect.flows.flow"})

_VARIADIC_SCHEMA: dict[bool, dict[str, Any]] = {
    True: {"type": "array", "items": {}, "default": []},
    False: {"type": "object", "additionalProperties": True, "default": {}},
}

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class FlowInfo:
    """What the plan needs to know about one flow, read from its source."""

    name: str
    function_name: str
    path: str
    description: str | None
    version: str | None
    parameter_schema: dict[str, Any]
    accepts_any_parameter: bool
    is_flow: bool


class EntrypointError(UserError):
    """The entrypoint cannot be read: `message` says what is wrong, `hint` what to do."""


def read_flow(snapshot: Snapshot, base_dir: str, entrypoint: str) -> FlowInfo:
    """Find, parse and describe the function an entrypoint names. Raises EntrypointError."""
    candidates, function_name = _split_entrypoint(entrypoint)
    path = _find_file(snapshot, base_dir, candidates)
    module = _parse_module(path, _read_source(snapshot, path))
    function = _find_function(module, function_name, path)
    return _describe(module, function, path)


# --- entrypoint -> file -------------------------------------------------------------------------


def _split_entrypoint(entrypoint: str) -> tuple[list[str], str]:
    """The candidate files (relative to base_dir, in lookup order) and the function name."""
    if not entrypoint.strip():
        raise EntrypointError("the entrypoint is empty", hint=ENTRYPOINT_FORMS)
    if ":" in entrypoint:
        file_part, function = entrypoint.rsplit(":", 1)
        if not file_part:
            raise _malformed(entrypoint, "the file path before ':' is missing")
        _check_function_name(entrypoint, function)
        _check_relative(entrypoint, file_part)
        return [file_part], function
    if entrypoint.endswith(".py"):
        raise _malformed(entrypoint, "it names a file but not the function inside it")
    module, _, function = entrypoint.rpartition(".")
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise _malformed(entrypoint, "it is neither 'file.py:function' nor 'module.function'")
    _check_function_name(entrypoint, function)
    module_path = module.replace(".", "/")
    # Python's import system prefers a package directory over a module of the same name.
    return [f"{module_path}/__init__.py", f"{module_path}.py"], function


def _malformed(entrypoint: str, reason: str) -> EntrypointError:
    return EntrypointError(f"entrypoint '{entrypoint}' is malformed: {reason}", ENTRYPOINT_FORMS)


def _check_function_name(entrypoint: str, function: str) -> None:
    if not function:
        raise _malformed(entrypoint, "the function name is missing")
    if not function.isidentifier() or keyword.iskeyword(function):
        raise _malformed(
            entrypoint,
            f"'{function}' is not a Python function name (only a function defined at the "
            "top level of the file can be an entrypoint)",
        )


def _check_relative(entrypoint: str, file_part: str) -> None:
    if file_part.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(file_part):
        raise EntrypointError(
            f"entrypoint '{entrypoint}' uses an absolute path",
            hint="make the path relative to the directory that holds prefect.yaml",
        )


def _find_file(snapshot: Snapshot, base_dir: str, candidates: list[str]) -> str:
    """The first candidate that is a committed regular file, as a repository path."""
    looked_for: list[str] = []
    for candidate in candidates:
        path = _repository_path(snapshot, base_dir, candidate)
        kind = snapshot.kind(path)
        if kind is PathKind.FILE:
            return path
        if kind is PathKind.DIRECTORY:
            raise EntrypointError(
                f"entrypoint file '{path}' is a directory, not a Python file",
                hint=ENTRYPOINT_FORMS,
            )
        if kind is not None:
            raise EntrypointError(
                f"entrypoint file '{path}' is not a regular committed file (a submodule?)",
                hint="point the entrypoint at a Python file committed in this repository",
            )
        looked_for.append(f"'{path}'")
    where = f"'{base_dir}'" if base_dir else "the repository root"
    raise EntrypointError(
        f"entrypoint file {' or '.join(looked_for)} not found in the repository",
        hint=f"paths are relative to the directory of prefect.yaml ({where}); "
        "check the spelling and that the file is committed",
    )


def _repository_path(snapshot: Snapshot, base_dir: str, relative: str) -> str:
    """Join and normalise `base_dir/relative`, refusing `..` past the root and symlinks.

    Every directory reached on the way is checked, including ones a later `..` leaves.
    """
    parts: list[str] = []
    for part in f"{base_dir}/{relative}".replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise EntrypointError(
                    f"entrypoint path '{relative}' escapes the repository",
                    hint="the flow file must be inside the repository; remove the extra '..'",
                )
            parts.pop()
            continue
        parts.append(part)
        if snapshot.kind("/".join(parts)) is PathKind.SYMLINK:
            raise EntrypointError(
                f"entrypoint path '{relative}' goes through the symbolic link '{'/'.join(parts)}'",
                hint="we read committed files only and do not follow links; "
                "point the entrypoint at the real file",
            )
    return "/".join(parts)


# --- file -> module -----------------------------------------------------------------------------


def _read_source(snapshot: Snapshot, path: str) -> str:
    data = snapshot.read(path)
    if len(data) > MAX_FLOW_FILE_BYTES:
        raise EntrypointError(
            f"flow file '{path}' is {len(data)} bytes; the limit is {MAX_FLOW_FILE_BYTES} bytes",
            hint="move the flow into a smaller module and point the entrypoint at it",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EntrypointError(
            f"flow file '{path}' is not valid UTF-8 (first bad byte on line {line})",
            hint="save the file as UTF-8",
        ) from None


def _parse_module(path: str, source: str) -> ast.Module:
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise EntrypointError(
            f"flow file '{path}' has a Python syntax error on line {exc.lineno}: {exc.msg}",
            hint="fix the syntax error; the file must parse as Python 3.11",
        ) from None
    except ValueError as exc:  # null bytes in the source
        raise EntrypointError(f"flow file '{path}' cannot be parsed: {exc}") from None
    except (RecursionError, MemoryError):
        raise EntrypointError(
            f"flow file '{path}' has an expression too deeply nested or too long to be parsed",
            hint="simplify that expression, or move it out of the flow's file",
        ) from None


# --- module -> function -------------------------------------------------------------------------


def _find_function(module: ast.Module, name: str, path: str) -> FunctionNode:
    """The top-level function `name`; a later `def` of the same name wins, as at run time."""
    functions: dict[str, FunctionNode] = {}
    classes: set[str] = set()
    imported: set[str] = set()
    assigned: set[str] = set()
    for stmt in _module_scope_statements(module.body):
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            functions[stmt.name] = stmt
        elif isinstance(stmt, ast.ClassDef):
            classes.add(stmt.name)
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            imported.update((alias.asname or alias.name).split(".")[0] for alias in stmt.names)
        else:
            assigned.update(_assigned_names(stmt))
    if name in functions:
        return functions[name]
    if name in classes:
        raise EntrypointError(
            f"'{name}' in '{path}' is a class, not a function",
            hint="the entrypoint must name a function decorated with @flow",
        )
    if name in imported:
        raise EntrypointError(
            f"'{name}' is imported into '{path}' from another module, not defined there",
            hint="point the entrypoint at the file that defines the flow function",
        )
    if name in assigned:
        raise EntrypointError(
            f"'{name}' in '{path}' is a variable, not a function defined with 'def'",
            hint="flows are read without running your code, so the entrypoint must name a "
            "function defined with 'def' and decorated with @flow (not 'x = flow(fn)')",
        )
    raise EntrypointError(
        f"function '{name}' not found at the top level of '{path}'",
        hint=_function_hint(name, sorted(functions)),
    )


def _function_hint(name: str, available: list[str]) -> str:
    import difflib  # only when there is something to suggest

    close = difflib.get_close_matches(name, available, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    if available:
        return f"functions defined in that file: {', '.join(available[:20])}"
    return "that file defines no top-level functions"


def _module_scope_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run in the module's scope: the body and blocks such as if/try/with."""
    for stmt in body:
        yield stmt
        for block in _nested_blocks(stmt):
            yield from _module_scope_statements(block)


def _nested_blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    if isinstance(stmt, ast.If | ast.For | ast.AsyncFor | ast.While):
        return [stmt.body, stmt.orelse]
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return [stmt.body]
    if isinstance(stmt, ast.Try | ast.TryStar):
        return [
            stmt.body,
            *(handler.body for handler in stmt.handlers),
            stmt.orelse,
            stmt.finalbody,
        ]
    if isinstance(stmt, ast.Match):
        return [case.body for case in stmt.cases]
    return []


def _assigned_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
        targets = [stmt.target]
    else:
        return []
    return [name for target in targets for name in _target_names(target)]


def _target_names(target: ast.expr) -> list[str]:
    """Names an assignment target binds: `x`, `x, *y`; not `x[0]` or `x.attr`."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


# --- function -> FlowInfo -----------------------------------------------------------------------


def _describe(module: ast.Module, function: FunctionNode, path: str) -> FlowInfo:
    imports = _import_aliases(module)
    decorator = _flow_decorator(function, imports)
    options = _literal_string_keywords(decorator) if isinstance(decorator, ast.Call) else {}
    return FlowInfo(
        # Prefect uses `name or ...`, `description or ...`: an empty string falls back too.
        name=options.get("name") or function.name.replace("_", "-"),
        function_name=function.name,
        path=path,
        description=options.get("description") or ast.get_docstring(function),
        version=options.get("version") or None,
        parameter_schema=_parameter_schema(function.args, TypeReader(module, imports)),
        accepts_any_parameter=function.args.kwarg is not None,
        is_flow=decorator is not None,
    )


def _import_aliases(module: ast.Module) -> dict[str, str]:
    """Local name -> qualified name for every module-scope import (`f` -> `prefect.flow`)."""
    aliases: dict[str, str] = {}
    for stmt in _module_scope_statements(module.body):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(stmt, ast.ImportFrom):
            source = "." * stmt.level + (stmt.module or "")
            for alias in stmt.names:
                aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    return aliases


def _flow_decorator(function: FunctionNode, imports: dict[str, str]) -> ast.expr | None:
    """The `@flow` or `@flow(...)` decorator of `function`, if it has one."""
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if qualified_name(target, imports) in FLOW_DECORATORS:
            return decorator
    return None


def _literal_string_keywords(call: ast.Call) -> dict[str, str]:
    return {
        kw.arg: kw.value.value
        for kw in call.keywords
        if kw.arg and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)
    }


# --- signature -> parameter schema ---------------------------------------------------------------


@dataclass(frozen=True)
class _Parameter:
    name: str
    annotation: ast.expr | None
    default: ast.expr | None  # None: no default
    variadic: bool


def _parameter_schema(args: ast.arguments, types: TypeReader) -> dict[str, Any]:
    """Prefect-shaped schema: one property per named parameter, with its signature position.

    Deliberate difference: `required` and `definitions` are always present (Prefect leaves an
    empty `required` out); a validator reads both forms the same.
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    for position, param in enumerate(_signature(args)):
        prop: dict[str, Any] = {"title": param.name, "position": position}
        if param.variadic:
            # Prefect lists *args and **kwargs too, as an optional list and mapping.
            prop.update(_VARIADIC_SCHEMA[param.name == args.vararg.arg if args.vararg else False])
            properties[param.name] = prop
            continue
        if param.annotation is not None:
            # Unresolvable annotations give {}, as Prefect renders a type it cannot describe.
            prop.update(types.schema(param.annotation) or {})
            # A parameter's own title stays its name, as in Prefect (Field(title=...) is not used).
            prop["title"] = param.name
            prop.pop("description", None)
        if param.default is None:
            required.append(param.name)
        else:
            default = types.default_value(param.default)
            if default is not Unresolved.VALUE:
                prop["default"] = default
        properties[param.name] = prop
    return {
        "title": "Parameters",
        "type": "object",
        "properties": properties,
        "required": required,
        "definitions": dict(sorted(types.definitions.items())),
    }


def _signature(args: ast.arguments) -> list[_Parameter]:
    """Parameters in signature order, without a leading `self`."""
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += args.defaults
    params = [
        _Parameter(a.arg, a.annotation, d, False) for a, d in zip(positional, defaults, strict=True)
    ]
    if args.vararg:
        params.append(_Parameter(args.vararg.arg, None, None, True))
    params += [
        _Parameter(a.arg, a.annotation, d, False)
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        params.append(_Parameter(args.kwarg.arg, None, None, True))
    if positional and positional[0].arg == "self":
        params.pop(0)
    return params
