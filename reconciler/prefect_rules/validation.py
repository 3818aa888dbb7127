"""Validate a loaded YAML document against one of our JSON Schemas (schemas/), reporting
every problem at once as Diagnostics with `file:line:col`.

Second stage of the pipeline. jsonschema finds the problems; this module words them for
people: what was expected, what was found, and "did you mean" for misspelt keys. Unknown keys
are warnings by default (Prefect ignores them silently) and errors with `strict`.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema
    from jsonschema.exceptions import ValidationError

from reconciler.core.diagnostics import Diagnostic, Severity, error, warning
from reconciler.prefect_rules.yamlload import LoadedDocument, Path

_JSON_TYPES = {
    dict: "mapping",
    list: "list",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}
_SCHEMA_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "null": "empty",
}


@cache
def schema_text(name: str) -> str:
    return package_text("reconciler", "schemas", name)


def package_text(package: str, *parts: str) -> str:
    """A data file of an installed package, read from its directory (importlib.resources,
    which also reads zipped packages, costs 10 ms to import: it is the fallback)."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin is not None:
        try:
            return FilePath(spec.origin).parent.joinpath(*parts).read_text(encoding="utf-8")
        except OSError:
            pass
    from importlib import resources

    return resources.files(package).joinpath(*parts).read_text(encoding="utf-8")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """One of the packaged schemas, e.g. `prefect.schema.json`."""
    schema: dict[str, Any] = json.loads(schema_text(name))
    return schema


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    import jsonschema

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=None)


@cache
def _fast_validator(name: str, *, lenient: bool) -> Callable[[Any], Any]:
    """The schema as Python code (fastjsonschema): about fifty times faster than jsonschema,
    which then only runs to word the errors of a document that has some. The code is
    generated ahead of time (reconciler/spec/generated, `make schemas`); when a schema changed
    since, it is compiled here instead."""
    from reconciler.prefect_rules import schema_code

    module_name = schema_code.module_name(name, lenient=lenient)
    try:
        module = importlib.import_module(f"reconciler.prefect_rules.generated.{module_name}")
    except ImportError:
        module = None
    if module is not None and schema_code.schema_digest(schema_text(name)) == module.SCHEMA_SHA256:
        check: Callable[[Any], Any] = module.check
        return check
    import fastjsonschema

    compiled: Callable[[Any], Any] = fastjsonschema.compile(
        schema_code.validator_schema(load_schema(name), lenient=lenient)
    )
    return compiled


def prepare(schema_name: str) -> None:
    """Load the fast path's validator of `schema_name` now (forked workers then inherit it,
    instead of each loading it for its first document)."""
    _fast_validator(schema_name, lenient=False)


def validate_document(
    document: LoadedDocument, schema_name: str, *, strict: bool = False
) -> list[Diagnostic]:
    """Every schema problem of `document`, most specific first, in file order."""
    import fastjsonschema

    try:
        _fast_validator(schema_name, lenient=False)(document.data)
        return []  # the common case: nothing to report
    except fastjsonschema.JsonSchemaException:
        pass
    try:
        _fast_validator(schema_name, lenient=True)(document.data)
    except fastjsonschema.JsonSchemaException:
        pass  # something is wrong: let jsonschema find and word every problem
    else:
        schema = load_schema(schema_name)
        return [
            _unknown_key(document, path, key, known, strict, always_error)
            for path, key, known, always_error in _unknown_keys_in(
                document.data, schema, schema, ()
            )
        ]
    validator = _validator(schema_name)
    found: list[Diagnostic] = []
    for problem in validator.iter_errors(document.data):
        found.extend(_describe(problem, document, strict))
    return _dedupe(found)


UnknownKey = tuple[Path, str, list[str], bool]


def _unknown_keys_in(
    instance: Any, schema: Any, root: dict[str, Any], path: Path
) -> Iterator[UnknownKey]:
    """Keys a closed object (`additionalProperties: false`) does not declare, in a document
    already known to be valid otherwise. Follows local `$ref`s, `items` and the `anyOf`
    branch whose type fits."""
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        target = root.get("$defs", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
        yield from _unknown_keys_in(instance, target, root, path)
        return
    if "anyOf" in schema:
        for branch in schema["anyOf"]:
            if _type_matches(branch, instance, root):
                yield from _unknown_keys_in(instance, branch, root, path)
                return
        return
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            known = sorted(properties)
            always_error = schema.get("x-unknown-keys") == "error"
            for key in instance:
                if key not in properties:
                    yield (path, key, known, always_error)
        for key, value in instance.items():
            if key in properties:
                yield from _unknown_keys_in(value, properties[key], root, (*path, key))
            elif isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
                yield from _unknown_keys_in(value, sub, root, (*path, key))
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            yield from _unknown_keys_in(item, schema["items"], root, (*path, index))


def _unknown_key(
    document: LoadedDocument,
    path: Path,
    key: str,
    known: list[str],
    strict: bool,
    always_error: bool,
) -> Diagnostic:
    strict = strict or always_error
    severity = error if strict else warning
    hint = did_you_mean(key, known) or (f"known keys here: {', '.join(known)}" if known else None)
    if always_error:
        ignored = " (Prefect rejects the whole file for this)"
    else:
        ignored = "" if strict else "; it is ignored, as Prefect ignores it"
    return severity(
        f'unknown key "{key}" in {_where(path)}{ignored}',
        document.key_location((*path, key)),
        hint,
    )


def type_name(value: object) -> str:
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, datetime.date):
        return "date"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def show_value(value: object, limit: int = 60) -> str:
    if isinstance(value, (dict, list)):
        return type_name(value)
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _found(value: object) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, (dict, list)):
        return f"a {type_name(value)}"
    return f"{type_name(value)} {show_value(value)}"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    import difflib  # only when there is something to suggest

    matches = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f'did you mean "{matches[0]}"?' if matches else None


def _describe(problem: ValidationError, document: LoadedDocument, strict: bool) -> list[Diagnostic]:
    path: Path = tuple(problem.absolute_path)
    kind = problem.validator
    if kind == "additionalProperties":
        return _unknown_keys(problem, document, path, strict)
    if kind in ("anyOf", "oneOf"):
        return _alternatives(problem, document, path, strict)
    if kind == "type":
        expected = _expected_types(problem.validator_value)
        return [
            error(
                f"{_field(path)} must be {expected}, not {_found(problem.instance)}",
                document.location(path),
                _type_hint(problem.instance, problem.validator_value),
            )
        ]
    if kind == "enum":
        allowed = [v for v in _as_list(problem.validator_value) if v is not None]
        hint = did_you_mean(str(problem.instance), [str(v) for v in allowed])
        return [
            error(
                f"{_field(path)} must be one of {', '.join(json.dumps(v) for v in allowed)}; "
                f"got {show_value(problem.instance)}",
                document.location(path),
                hint,
            )
        ]
    if kind == "required":
        return [error(f"{_field(path)}: {problem.message}", document.location(path))]
    if kind in ("minimum", "maximum"):
        return [
            error(
                f"{_field(path)} must be {'at least' if kind == 'minimum' else 'at most'} "
                f"{problem.validator_value}; got {show_value(problem.instance)}",
                document.location(path),
            )
        ]
    if kind in ("maxProperties", "minProperties") and _is_step_path(path, problem):
        return [_bad_step(problem, document, path)]
    return [error(f"{_field(path)}: {problem.message}", document.location(path))]


def _unknown_keys(
    problem: ValidationError, document: LoadedDocument, path: Path, strict: bool
) -> list[Diagnostic]:
    schema = problem.schema if isinstance(problem.schema, dict) else {}
    known = sorted(schema.get("properties", {}))
    always_error = schema.get("x-unknown-keys") == "error"
    instance = problem.instance if isinstance(problem.instance, dict) else {}
    return [
        _unknown_key(document, path, key, known, strict, always_error)
        for key in instance
        if key not in known
    ]


def _alternatives(
    problem: ValidationError, document: LoadedDocument, path: Path, strict: bool
) -> list[Diagnostic]:
    """An anyOf failed: if every branch is a plain type, say which types fit; else go deeper.
    Unknown keys met deeper stay warnings unless `strict`, as everywhere else."""
    branches: Sequence[dict[str, Any]] = _as_list(problem.validator_value)
    instance = problem.instance
    matching_type = [b for b in branches if _type_matches(b, instance)]
    if len(matching_type) == 1 and problem.context:
        # the value has the right shape for one branch: report that branch's own problem
        deepest = [
            c
            for c in problem.context
            if c.schema_path and _branch_of(c) == branches.index(matching_type[0])
        ]
        unknown = [c for c in deepest if c.validator == "additionalProperties"]
        others = [c for c in deepest if c.validator != "additionalProperties"]
        found = [d for c in unknown for d in _describe(c, document, strict)]
        if others:
            shape = [c for c in others if c.validator in ("maxProperties", "minProperties")]
            best = shape[0] if shape else max(others, key=lambda c: len(c.absolute_path))
            found.extend(_describe(best, document, strict)[:1])
        if found:
            return found
    expected = _expected_types([_branch_type(b) for b in branches])
    return [
        error(
            f"{_field(path)} must be {expected}, not {_found(instance)}",
            document.location(path),
            _type_hint(instance, None),
        )
    ]


def _branch_of(problem: ValidationError) -> int:
    first = problem.relative_schema_path[0] if problem.relative_schema_path else 0
    return int(first) if isinstance(first, int) else 0


def _branch_type(branch: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    if "$ref" in branch:
        target = root if root is not None else load_schema("prefect.schema.json")
        ref = branch["$ref"].split("/")[-1]
        branch = target.get("$defs", {}).get(ref, {})
    return branch.get("type", "object")


def _type_matches(
    branch: dict[str, Any], instance: object, root: dict[str, Any] | None = None
) -> bool:
    wanted = _branch_type(branch, root)
    wanted_list = wanted if isinstance(wanted, list) else [wanted]
    return any(_is_type(instance, t) for t in wanted_list)


def _is_type(instance: object, json_type: str) -> bool:
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "null": lambda v: v is None,
    }
    check = checks.get(json_type)
    return bool(check and check(instance))


def _expected_types(types: Any) -> str:
    flat: list[str] = []
    for item in types if isinstance(types, list) else [types]:
        for t in item if isinstance(item, list) else [item]:
            if t not in flat:
                flat.append(t)
    words = [_SCHEMA_TYPE_WORDS.get(t, t) for t in flat if t != "null"]
    if not words:
        return "empty"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _type_hint(instance: object, wanted: Any) -> str | None:
    if instance is None:
        return "the key is written without a value: give it one, or remove the key"
    if isinstance(instance, (datetime.date, datetime.datetime)):
        return "YAML read this as a date; put it in quotes to keep it a string"
    if (
        isinstance(instance, (int, float))
        and not isinstance(instance, bool)
        and (wanted == "string" or (isinstance(wanted, list) and "string" in wanted))
    ):
        return f'put it in quotes: "{instance}"'
    return None


def _is_step_path(path: Path, problem: ValidationError) -> bool:
    return isinstance(problem.instance, dict) and any(
        p in ("build", "push", "pull") for p in path if isinstance(p, str)
    )


def _bad_step(problem: ValidationError, document: LoadedDocument, path: Path) -> Diagnostic:
    keys = list(problem.instance) if isinstance(problem.instance, dict) else []
    if not keys:
        return error(f"{_field(path)} is an empty step", document.location(path))
    return error(
        f"{_field(path)} has {len(keys)} keys ({', '.join(keys)}); a step is a mapping with "
        "exactly one key, the step's function name",
        document.location(path),
        "indent the step's arguments under its name",
    )


def _field(path: Path) -> str:
    if not path:
        return "the file"
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f'"{text}"'


def _where(path: Path) -> str:
    return "the top level" if not path else _field(path)


def _dedupe(found: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[Severity, str, Any]] = set()
    unique = []
    for diag in found:
        key = (diag.severity, diag.message, diag.location)
        if key not in seen:
            seen.add(key)
            unique.append(diag)
    return unique
