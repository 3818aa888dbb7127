"""Read and check the parameters of a new run (`reconcile deployment run`), before it exists.

Part of run creation (`create_run.py`). Values given on the command line are parsed as JSON
where they read as JSON (`--param days=3` is the number 3, `--param when=2024-05-17` stays the
string), then refused when they cannot be stored as JSON (Infinity, NaN) or are nested deeper
than MAX_PARAMETER_DEPTH, and finally checked against the flow's parameter schema with
`jsonschema`, formats included (date, date-time, time, uuid). Each problem names the parameter
(`config.retries`, `rows[2].x`) and says why in words a user can act on.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from reconciler.core.errors import UserError

# Lists and mappings inside one another, the outermost --params object counting as one level.
MAX_PARAMETER_DEPTH = 64

NON_FINITE_HINT = (
    "JSON has no Infinity or NaN; give a finite number, or quote the text to pass it as a "
    "string (--param 'ratio=\"NaN\"')"
)


class _NonFinite(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _refuse_constant(text: str) -> Any:
    raise _NonFinite(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise _NonFinite(text)
    return value


def loads(text: str) -> Any:
    """JSON as the standard allows it: Infinity, NaN and overflowing numbers are errors."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def parse_value(text: str, what: str) -> Any:
    """A command-line value: its JSON value if it reads as JSON, otherwise the text itself."""
    try:
        value = loads(text)
    except _NonFinite as exc:
        raise UserError(
            f"{what}: {exc.text} is not a finite number and cannot be stored as JSON",
            NON_FINITE_HINT,
        ) from None
    except RecursionError:
        raise _too_deep(what) from None
    except ValueError:
        return text
    check_storable(value, what)
    return value


def parse_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object given whole (`--params`)."""
    try:
        value = loads(text)
    except _NonFinite as exc:
        raise UserError(
            f"{what}: {exc.text} is not a finite number and cannot be stored as JSON",
            NON_FINITE_HINT,
        ) from None
    except RecursionError:
        raise _too_deep(what) from None
    except ValueError as exc:
        raise UserError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UserError(f"{what} must be a JSON object, like '{{\"days\": 3}}'")
    check_storable(value, what)
    return value


def check_storable(value: Any, what: str) -> None:
    """Refuse what JSON cannot hold (non-finite floats), text that is not Unicode (a lone
    surrogate such as "\\ud800" from a JSON escape) or nesting past the limit."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, what)
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise UserError(
                f"{what}: {item} is not a finite number and cannot be stored as JSON",
                NON_FINITE_HINT,
            )
        if isinstance(item, dict | list | tuple):
            if depth + 1 > MAX_PARAMETER_DEPTH:
                raise _too_deep(what)
            if isinstance(item, dict):
                for key in item:
                    if isinstance(key, str):
                        _check_text(key, what)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("unicode_escape").decode("ascii")
        raise UserError(
            f"{what}: the text holds {bad}, which is not a character (half of a UTF-16 "
            "surrogate pair, or a byte that is not UTF-8) and cannot be stored",
            "give the character itself, or both halves of its \\uXXXX\\uXXXX escape",
        ) from None


def _too_deep(what: str) -> UserError:
    return UserError(
        f"{what} is nested more than {MAX_PARAMETER_DEPTH} levels deep (lists and mappings "
        "inside one another), the limit for parameters",
        "flatten the value, or pass large structured data through a file or a variable",
    )


# --- the flow's parameter schema -----------------------------------------------------------------

FORMATS = jsonschema.FormatChecker(formats=())
FORMAT_WORDS = {
    "date": "a date (YYYY-MM-DD)",
    "date-time": "a date and time (ISO 8601, like 2024-05-17T09:30:00+00:00)",
    "time": "a time (HH:MM[:SS])",
    "uuid": "a UUID",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@FORMATS.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return bool(_DATE.match(value)) and bool(datetime.date.fromisoformat(value))


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    # As lenient as pydantic, which converts the value at run time: the offset is optional.
    return not isinstance(value, str) or bool(datetime.datetime.fromisoformat(value))


@FORMATS.checks("time", raises=ValueError)
def _is_time(value: object) -> bool:
    return not isinstance(value, str) or bool(datetime.time.fromisoformat(value))


@FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(uuid.UUID(value))


def schema_problems(schema: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[str]:
    """`parameter NAME: why` for every value that breaks the schema (formats included)."""
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=FORMATS)
    problems: list[str] = []
    try:
        errors = sorted(validator.iter_errors(dict(parameters)), key=lambda e: list(e.path))
    except RecursionError:
        return ["the parameters are nested too deeply to be checked against the flow's schema"]
    for error in errors:
        for path, reason in _explain(error):
            problem = f"parameter {path}: {reason}" if path else reason
            if problem not in problems:
                problems.append(problem)
    return problems


def _explain(error: ValidationError) -> Iterator[tuple[str, str]]:
    """(where, why) for one error; an `anyOf` is explained by the branches that came closest."""
    path = list(error.absolute_path)
    kind = error.validator
    if kind in ("anyOf", "oneOf") and error.context:
        deeper = [e for e in error.context if len(e.absolute_path) > len(path)]
        if deeper:
            for sub in deeper:
                yield from _explain(sub)
            return
        types = [e.validator_value for e in error.context if e.validator == "type"]
        if len(types) == len(error.context):
            yield _where(path), f"must be {_either(types)} (got {_shown(error.instance)})"
            return
        for sub in error.context:
            if sub.validator != "type":
                yield from _explain(sub)
        return
    if kind == "required":
        missing = error.message.split(" is a required property")[0].strip("'\"")
        yield _where([*path, missing]), "is required"
        return
    yield _where(path), _reason(error)


def _reason(error: ValidationError) -> str:
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "type":
        return f"must be {_either([expected])} (got {_shown(value)})"
    if kind == "format":
        return f"{_shown(value)} is not {FORMAT_WORDS.get(str(expected), repr(expected))}"
    comparisons = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in comparisons:
        return f"must be {comparisons[str(kind)]} {expected} (got {_shown(value)})"
    if kind == "enum" and isinstance(expected, list):
        choices = ", ".join(_shown(choice) for choice in expected)
        return f"must be one of {choices} (got {_shown(value)})"
    if kind == "const":
        return f"must be {_shown(expected)} (got {_shown(value)})"
    sizes = {
        "minLength": "at least {} characters long",
        "maxLength": "at most {} characters long",
        "minItems": "a list of at least {} items",
        "maxItems": "a list of at most {} items",
    }
    if kind in sizes:
        return "must be " + sizes[str(kind)].format(expected)
    if kind == "pattern":
        return f"must match the pattern {expected} (got {_shown(value)})"
    if kind == "multipleOf":
        return f"must be a multiple of {expected} (got {_shown(value)})"
    return error.message


TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping (JSON object)",
    "array": "a list",
    "null": "null",
}


def _either(types: list[Any]) -> str:
    flat: list[str] = []
    for entry in types:
        for name in entry if isinstance(entry, list) else [entry]:
            word = TYPE_WORDS.get(str(name), str(name))
            if word not in flat:
                flat.append(word)
    return " or ".join(flat)


def _where(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
