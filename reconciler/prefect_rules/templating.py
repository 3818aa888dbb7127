"""Prefect's `{{ }}` placeholder rules, re-implemented as pure functions.

The desired-state stage uses this module to template deployment sections, step inputs and pull
steps exactly as `prefect deploy` and the step runner would. Nothing here reads the process
environment, the network or a store: environment variables, step outputs, variables and blocks
are all passed in. Placeholder grammar and precedence follow Prefect 3.9.1 (not Jinja):

- `{{ name }}` (STANDARD) reads `values` through a key path such as `step-id.image` or `a.b[0]`;
- `{{ $NAME }}` (ENV) reads the environment mapping;
- `{{ prefect.variables.name }}` (VARIABLE) and `{{ prefect.blocks.slug.name[.path] }}` (BLOCK)
  are resolved by their own passes.
"""

from __future__ import annotations

import copy
import enum
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PLACEHOLDER_PATTERN: re.Pattern[str] = re.compile(r"({{\s*([\w\.\-\[\]$]+)\s*}})")

_BLOCK_PREFIX = "prefect.blocks."
_VARIABLE_PREFIX = "prefect.variables."
_ENV_PREFIX = "$"

TemplatePath = tuple[str | int, ...]
"""Where a value sits inside a template: dict keys and list indexes, outermost first."""

MissingCallback = Callable[[TemplatePath, str], None]
BlockLookup = Callable[[str, str], Any | None]


class PlaceholderKind(enum.Enum):
    STANDARD = "standard"
    BLOCK = "block"
    VARIABLE = "variable"
    ENV = "env"


@dataclass(frozen=True)
class Placeholder:
    full_match: str
    name: str
    kind: PlaceholderKind


class _NotSet:
    """The result of a whole-value placeholder with no value: the caller drops the key."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOTSET"

    def __reduce__(self) -> str:
        return "NOTSET"  # copies and pickles stay the module's single instance


NOTSET = _NotSet()


class KnownAfterBuild:
    """Marks a value that a build or push step will produce when it runs.

    Planning does not run steps, so step outputs are this marker; any value computed from one
    is unknown too. All instances are equal, so a deep copy still compares equal.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "(known after build)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KnownAfterBuild)

    def __hash__(self) -> int:
        return hash(KnownAfterBuild)

    def __reduce__(self) -> str:
        return "KNOWN_AFTER_BUILD"


KNOWN_AFTER_BUILD = KnownAfterBuild()


class TemplateError(ValueError):
    """A template that cannot be resolved. `path` says where in the template it sat."""

    def __init__(self, message: str, path: TemplatePath = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


# --- grammar -------------------------------------------------------------------------------


def _kind_of(name: str) -> PlaceholderKind:
    if name.startswith(_BLOCK_PREFIX):
        return PlaceholderKind.BLOCK
    if name.startswith(_VARIABLE_PREFIX):
        return PlaceholderKind.VARIABLE
    if name.startswith(_ENV_PREFIX):
        return PlaceholderKind.ENV
    return PlaceholderKind.STANDARD


def _placeholders_in(text: str) -> list[Placeholder]:
    """The distinct placeholders of `text`, in order of first appearance."""
    seen: dict[str, Placeholder] = {}
    for match in PLACEHOLDER_PATTERN.finditer(text):
        full_match, name = match.group(1), match.group(2)
        if full_match not in seen:
            seen[full_match] = Placeholder(full_match, name, _kind_of(name))
    return list(seen.values())


def _is_whole_value(text: str, placeholders: Sequence[Placeholder], kind: PlaceholderKind) -> bool:
    """True when `text` is exactly one placeholder of `kind`, with no text around it."""
    return (
        len(placeholders) == 1
        and placeholders[0].full_match == text
        and placeholders[0].kind is kind
    )


def _substitute_once(text: str, replacements: Mapping[str, str]) -> str:
    """Replace placeholders in one pass: inserted text is never scanned again."""
    return PLACEHOLDER_PATTERN.sub(lambda m: replacements.get(m.group(1), m.group(1)), text)


def _is_marker(value: object) -> bool:
    return isinstance(value, _NotSet | KnownAfterBuild)


def _key_for_path(key: object) -> str | int:
    return key if isinstance(key, str | int) else str(key)


def _unexpected_type(value: object, path: TemplatePath) -> TemplateError:
    return TemplateError(
        f"Cannot template a value of type {type(value).__name__!r}: expected text, a number, "
        "a boolean, null, a mapping or a list. Quote the value in YAML to keep it as text.",
        path,
    )


def untemplated(value: object) -> bool:
    """True when no templating pass can change `value` (nor fail on it): it holds only text
    without `{{`, numbers, booleans, nulls, mappings and lists. Checking costs less than a
    pass, which copies the value while looking for placeholders in every text."""
    if isinstance(value, str):
        return "{{" not in value
    if isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            if not untemplated(item):
                return False
        return True
    return value is None or isinstance(value, int | float)


def find_placeholders(template: object) -> set[Placeholder]:
    """Every placeholder in the values of `template` (mapping keys are never templated)."""
    return set(_walk_placeholders(template, ()))


def _walk_placeholders(template: object, path: TemplatePath) -> Iterator[Placeholder]:
    if template is None or isinstance(template, int | float) or _is_marker(template):
        return
    if isinstance(template, str):
        yield from _placeholders_in(template)
    elif isinstance(template, Mapping):
        for key, value in template.items():
            yield from _walk_placeholders(value, (*path, _key_for_path(key)))
    elif isinstance(template, list):
        for index, item in enumerate(template):
            yield from _walk_placeholders(item, (*path, index))
    else:
        raise _unexpected_type(template, path)


# --- key paths -----------------------------------------------------------------------------


def _split_key_path(key_path: str) -> list[str]:
    """`a.b[0].c` -> ["a", "b", "0", "c"]; brackets are only another way to write a dot."""
    return key_path.replace("[", ".").replace("]", "").split(".")


def _canonical_int(key: str | int) -> str | int:
    """Canonical integer text becomes an int ("1" -> 1, "-1" -> -1); "01" and "1.0" do not."""
    if isinstance(key, str):
        try:
            number = int(key)
        except ValueError:
            return key
        if str(number) == key:
            return number
    return key


def _step_into(container: Any, key: str | int) -> Any:
    """One step of a key path. Raises TypeError, KeyError or IndexError when it cannot."""
    if isinstance(container, Mapping):
        return container[key if key in container else _canonical_int(key)]
    try:
        index: str | int = int(key)
    except ValueError:
        index = key
    return container[index]


def get_from_dict(
    values: object, key_path: str | Sequence[str | int], default: object = None
) -> object:
    """The value at `key_path` inside `values`, or `default` when the path does not exist.

    A value met on the way that is KNOWN_AFTER_BUILD makes the whole result KNOWN_AFTER_BUILD.
    """
    keys = _split_key_path(key_path) if isinstance(key_path, str) else list(key_path)
    current: Any = values
    try:
        for key in keys:
            if isinstance(current, KnownAfterBuild):
                return KNOWN_AFTER_BUILD
            current = _step_into(current, key)
    except (TypeError, KeyError, IndexError):
        return default
    return current


def _contains_known_after_build(value: object) -> bool:
    if isinstance(value, KnownAfterBuild):
        return True
    if isinstance(value, Mapping):
        return any(_contains_known_after_build(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_contains_known_after_build(item) for item in value)
    return False


# --- apply_values --------------------------------------------------------------------------


def _ignore_missing(path: TemplatePath, name: str) -> None:
    """The default `on_missing`: unresolved placeholders are not reported."""


@dataclass(frozen=True)
class _ValueSubstitution:
    values: Mapping[str, Any]
    environ: Mapping[str, str]
    remove_notset: bool
    skip_prefixes: tuple[str, ...]
    on_missing: MissingCallback

    def apply(self, template: object, path: TemplatePath) -> Any:
        if template is None or isinstance(template, int | float) or _is_marker(template):
            return template
        if isinstance(template, str):
            return self._apply_text(template, path)
        if isinstance(template, Mapping):
            return self._apply_mapping(template, path)
        if isinstance(template, list):
            return self._apply_list(template, path)
        raise _unexpected_type(template, path)

    def _apply_mapping(self, template: Mapping[Any, Any], path: TemplatePath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key, value in template.items():
            updated = self.apply(value, (*path, _key_for_path(key)))
            if updated is not NOTSET:
                result[key] = updated
            elif not self.remove_notset:
                result[key] = value
        return result

    def _apply_list(self, template: list[Any], path: TemplatePath) -> list[Any]:
        result: list[Any] = []
        for index, item in enumerate(template):
            updated = self.apply(item, (*path, index))
            if updated is not NOTSET:
                result.append(updated)
            elif not self.remove_notset:
                result.append(item)
        return result

    def _apply_text(self, text: str, path: TemplatePath) -> Any:
        placeholders = [
            p for p in _placeholders_in(text) if not p.name.startswith(self.skip_prefixes)
        ]
        if not placeholders:
            return text
        if _is_whole_value(text, placeholders, PlaceholderKind.STANDARD):
            name = placeholders[0].name
            value = get_from_dict(self.values, name, NOTSET)
            if value is NOTSET:
                self.on_missing(path, name)
            return value
        return self._substitute_embedded(text, placeholders, path)

    def _substitute_embedded(
        self, text: str, placeholders: Sequence[Placeholder], path: TemplatePath
    ) -> str | KnownAfterBuild:
        replacements: dict[str, str] = {}
        reported: set[str] = set()
        unknown = False
        for placeholder in placeholders:
            if placeholder.kind not in (PlaceholderKind.STANDARD, PlaceholderKind.ENV):
                continue  # blocks and variables have their own passes
            value = self._lookup(placeholder)
            if value is NOTSET:
                if placeholder.name not in reported:
                    reported.add(placeholder.name)
                    self.on_missing(path, placeholder.name)
                if self.remove_notset:
                    replacements[placeholder.full_match] = ""
            elif _contains_known_after_build(value):
                unknown = True
            else:
                replacements[placeholder.full_match] = str(value)
        if unknown:
            return KNOWN_AFTER_BUILD
        return _substitute_once(text, replacements)

    def _lookup(self, placeholder: Placeholder) -> object:
        if placeholder.kind is PlaceholderKind.ENV:
            return self.environ.get(placeholder.name.lstrip(_ENV_PREFIX), NOTSET)
        return get_from_dict(self.values, placeholder.name, NOTSET)


def apply_values(
    template: object,
    values: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    remove_notset: bool = True,
    skip_prefixes: Sequence[str] = (),
    on_missing: MissingCallback | None = None,
) -> Any:
    """Substitute STANDARD placeholders from `values` and ENV ones from `environ`.

    A string that is exactly one STANDARD placeholder takes the value with its type; a missing
    one gives NOTSET, which drops the key or list item when `remove_notset` (otherwise the
    original text is kept). Embedded placeholders are replaced by `str(value)`, or by "" when
    missing and `remove_notset`. Block and variable placeholders, and those whose name starts
    with one of `skip_prefixes`, are left as written. `on_missing(path, name)` hears about each
    placeholder that did not resolve.
    """
    substitution = _ValueSubstitution(
        values=values,
        environ=environ,
        remove_notset=remove_notset,
        skip_prefixes=tuple(skip_prefixes),
        on_missing=on_missing or _ignore_missing,
    )
    return substitution.apply(template, ())


# --- variables and blocks ------------------------------------------------------------------


def _map_strings(
    template: object, path: TemplatePath, transform: Callable[[str, TemplatePath], Any]
) -> Any:
    """Apply `transform` to every string value; other values pass through unchanged."""
    if isinstance(template, str):
        return transform(template, path)
    if isinstance(template, Mapping):
        return {
            key: _map_strings(value, (*path, _key_for_path(key)), transform)
            for key, value in template.items()
        }
    if isinstance(template, list):
        return [
            _map_strings(item, (*path, index), transform) for index, item in enumerate(template)
        ]
    return template


def _variable_name(placeholder: Placeholder) -> str:
    """`prefect.variables.a.b` names the variable `a.b`: variables have no key paths."""
    return placeholder.name.replace(_VARIABLE_PREFIX, "")


def _variable_text(variables: Mapping[str, Any], placeholder: Placeholder) -> str:
    name = _variable_name(placeholder)
    return str(variables[name]) if name in variables else ""


def resolve_variables(template: object, variables: Mapping[str, Any]) -> Any:
    """Replace `{{ prefect.variables.NAME }}` with the variable's value; a missing one is ""."""

    def resolve_text(text: str, path: TemplatePath) -> Any:
        placeholders = _placeholders_in(text)
        wanted = [p for p in placeholders if p.kind is PlaceholderKind.VARIABLE]
        if not wanted:
            return text
        if _is_whole_value(text, placeholders, PlaceholderKind.VARIABLE):
            return copy.deepcopy(variables.get(_variable_name(wanted[0]), ""))
        replacements = {p.full_match: _variable_text(variables, p) for p in wanted}
        return _substitute_once(text, replacements)

    return _map_strings(template, (), resolve_text)


@dataclass(frozen=True)
class _BlockReference:
    slug: str
    name: str
    key_path: str | None

    @property
    def label(self) -> str:
        return f"{self.slug}/{self.name}"


def _parse_block_reference(placeholder: Placeholder) -> _BlockReference | None:
    """`prefect.blocks.slug.name.rest` -> its parts; None when slug or name is missing."""
    parts = placeholder.name.replace(_BLOCK_PREFIX, "").split(".", 2)
    if len(parts) < 2:
        return None
    return _BlockReference(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def _starts_inside_value(data: object, key_path: str | None) -> bool:
    """System blocks (secret, json, string...) hold only `value`: paths start inside it,
    unless the path itself begins with `value` ("values" is inside it too)."""
    if not (isinstance(data, Mapping) and len(data) == 1 and "value" in data):
        return False
    return key_path is None or not (
        key_path == "value" or key_path.startswith(("value.", "value["))
    )


def _describe_keys(data: object) -> str:
    """What a key path could have used, without showing any (possibly secret) value."""
    if isinstance(data, Mapping):
        keys = ", ".join(repr(key) for key in data) or "none"
        return f"its keys are: {keys}"
    return f"it is a {type(data).__name__}, not a mapping"


class _BlockResolver:
    def __init__(self, lookup: BlockLookup) -> None:
        self._lookup = lookup
        self._cache: dict[tuple[str, str], Any] = {}

    def resolve_text(self, text: str, path: TemplatePath) -> Any:
        placeholders = _placeholders_in(text)
        blocks = [p for p in placeholders if p.kind is PlaceholderKind.BLOCK]
        if not blocks:
            return text
        if _is_whole_value(text, placeholders, PlaceholderKind.BLOCK):
            return copy.deepcopy(self._value_of(blocks[0], path))
        replacements = {p.full_match: self._inline_text(p, path) for p in blocks}
        return _substitute_once(text, replacements)

    def _inline_text(self, placeholder: Placeholder, path: TemplatePath) -> str:
        value = self._value_of(placeholder, path)
        if isinstance(value, Mapping | list):
            raise TemplateError(
                f"Block placeholder {placeholder.full_match!r} resolves to a "
                f"{type(value).__name__}, which cannot be embedded in text. Use the placeholder "
                "as the whole value, or point it at a single field (for example '.value' or "
                "'.url').",
                path,
            )
        return str(value)

    def _value_of(self, placeholder: Placeholder, path: TemplatePath) -> Any:
        reference = _parse_block_reference(placeholder)
        if reference is None:
            raise TemplateError(
                f"Invalid block placeholder {placeholder.full_match!r}: expected "
                "'{{ prefect.blocks.<block-type-slug>.<block-document-name> }}', optionally "
                "followed by '.<key path>'.",
                path,
            )
        data = self._block_data(reference, placeholder, path)
        if _starts_inside_value(data, reference.key_path):
            data = data["value"]
        if reference.key_path is None:
            return data
        value = get_from_dict(data, reference.key_path, NOTSET)
        if value is NOTSET:
            raise TemplateError(
                f"Could not resolve the key path {reference.key_path!r} of "
                f"{placeholder.full_match!r} in block '{reference.label}': "
                f"{_describe_keys(data)}. Fix the key path in the placeholder.",
                path,
            )
        return value

    def _block_data(
        self, reference: _BlockReference, placeholder: Placeholder, path: TemplatePath
    ) -> Any:
        cache_key = (reference.slug, reference.name)
        if cache_key not in self._cache:
            data = self._lookup(reference.slug, reference.name)
            if data is None:
                raise TemplateError(
                    f"Block not found: '{reference.name}' of type '{reference.slug}', "
                    f"referenced by {placeholder.full_match!r}; define it with "
                    f"`reconcile secret set {reference.label}`.",
                    path,
                )
            self._cache[cache_key] = data
        return self._cache[cache_key]


def resolve_blocks(template: object, lookup: BlockLookup) -> Any:
    """Replace `{{ prefect.blocks.SLUG.NAME[.KEY.PATH] }}` with block data from `lookup`.

    `lookup(slug, name)` returns the block's data, or None when there is no such block. A whole
    value keeps its type; an embedded one is `str(value)` and must not be a mapping or list.
    """
    return _map_strings(template, (), _BlockResolver(lookup).resolve_text)


def _strings_in(template: object) -> Iterator[str]:
    if isinstance(template, str):
        yield template
    elif isinstance(template, Mapping):
        for value in template.values():
            yield from _strings_in(value)
    elif isinstance(template, list):
        for item in template:
            yield from _strings_in(item)


def references(template: object) -> tuple[set[str], set[tuple[str, str]]]:
    """The variable names and (block slug, block name) pairs that `template` refers to.

    Malformed block placeholders are left out: `resolve_blocks` reports them.
    """
    variables: set[str] = set()
    blocks: set[tuple[str, str]] = set()
    for text in _strings_in(template):
        for placeholder in _placeholders_in(text):
            if placeholder.kind is PlaceholderKind.VARIABLE:
                variables.add(_variable_name(placeholder))
            elif placeholder.kind is PlaceholderKind.BLOCK:
                reference = _parse_block_reference(placeholder)
                if reference is not None:
                    blocks.add((reference.slug, reference.name))
    return variables, blocks
