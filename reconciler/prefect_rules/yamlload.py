"""Load a YAML document into plain Python values while remembering where every value came from.

First stage of the pipeline. Uses the safe (and libyaml-backed, when available) composer, so
anchors, aliases and `<<` merge keys mean what they mean to `yaml.safe_load`, which Prefect
uses. What safe_load does not do, we do: a size limit, a bound on alias expansion (YAML
bombs), warnings for keys written twice in one mapping, and a map from each value's path to
its line and column so later stages can say `file:line:col`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.core.diagnostics import Diagnostic, Location, error, warning

MAX_FILE_BYTES = 10 * 1024 * 1024
MIN_EXPANSION_BUDGET = 100_000
EXPANSION_FACTOR = 40

Path = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
Position = tuple[int, int]  # 1-based line, 1-based column

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The safe loader, with the resolver hooks the composer calls for every node made cheaper.

    Safe loading has no path resolvers, so `descend_resolver` and `ascend_resolver` do nothing,
    a mapping or list always gets the default tag, so does a quoted scalar, and a plain
    scalar's tag depends only on its text: each distinct text is resolved once per file (keys
    and many values repeat in every deployment).
    """

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._plain_tags: dict[str, str] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if not implicit[0]:
                return _STR_TAG
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = self._plain_tags[value] = super().resolve(kind, value, implicit)
            return tag
        if kind is MappingNode:
            return _MAP_TAG
        if kind is SequenceNode:
            return _SEQ_TAG
        resolved: str = super().resolve(kind, value, implicit)
        return resolved

    def descend_resolver(self, current_node: Node | None, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


@dataclass
class LoadedDocument:
    """The values of one YAML file, and where each value (and each mapping key) was written.

    Positions are found on demand by walking the composed node graph along a path: only a
    diagnostic needs one, so a file with none pays nothing for them.
    """

    file: str
    data: Any
    root: Node | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    key_names: dict[int, str] = field(default_factory=dict)
    """Mapping keys that are not plain strings (`1:`, `true:`), by node id: as the values
    spell them."""
    content: bytes | None = None
    """The file's bytes, kept when the node graph is dropped (to send the document to another
    process): positions are then found by composing the file again, on demand."""

    def without_nodes(self) -> LoadedDocument:
        """A copy that is cheap to pickle: the node graph is recomposed if a position is asked."""
        return LoadedDocument(self.file, self.data, None, self.diagnostics, {}, self.content)

    def location(self, path: Path) -> Location:
        """Where the value at `path` was written; the nearest enclosing value when unknown."""
        found = self._walk(path)
        return _location(self.file, found[-1][1]) if found else Location(self.file)

    def key_location(self, path: Path) -> Location:
        """Where the key of the value at `path` was written (falls back to the value)."""
        found = self._walk(path)
        if len(found) == len(path) + 1 and found[-1][0] is not None:
            return _location(self.file, found[-1][0])
        return self.location(path)

    def _walk(self, path: Path) -> list[tuple[Node | None, Node]]:
        """(key node, value node) for the root and each step of `path` that exists."""
        if self.root is None and self.content is not None:
            again = load_yaml(self.content, self.file)
            self.root, self.key_names = again.root, again.key_names
        if self.root is None:
            return []
        steps: list[tuple[Node | None, Node]] = [(None, self.root)]
        node = self.root
        for part in path:
            child = self._child(node, part)
            if child is None:
                break
            steps.append(child)
            node = child[1]
        return steps

    def _child(self, node: Node, part: str | int) -> tuple[Node | None, Node] | None:
        if isinstance(node, SequenceNode) and isinstance(part, int):
            return (None, node.value[part]) if 0 <= part < len(node.value) else None
        if isinstance(node, MappingNode):
            match = None
            for key_node, value_node in node.value:  # the last one wins, as in the values
                if self.key_names.get(id(key_node), key_node.value) == part:
                    match = (key_node, value_node)
            return match
        return None


def _location(file: str, node: Node) -> Location:
    line, column = _position(node)
    return Location(file, line, column)


class YamlLoadError(Exception):
    """The file could not be read as YAML; `diagnostic` says where and why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def load_yaml(content: bytes, file: str) -> LoadedDocument:
    """Parse `content` (the bytes of `file`) into a LoadedDocument, or raise YamlLoadError."""
    if len(content) > MAX_FILE_BYTES:
        raise YamlLoadError(
            error(
                f"file is {len(content):,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes "
                f"({MAX_FILE_BYTES // 1_048_576} MB)",
                Location(file),
                "split the file, or move large data out of the configuration",
            )
        )
    loader = _Loader(content)
    try:
        node = loader.get_single_node()
        builder = _Builder(file, loader, content.count(b"\n") + 1)
        data = builder.build(node) if node is not None else None
    except _ExpansionLimit as exc:
        line, column = _position(exc.node)
        raise YamlLoadError(
            error(
                f"aliases expand to more than {exc.budget:,} values: this looks like a YAML "
                "bomb (anchors that reference anchors, multiplying at each level)",
                Location(file, line, column),
                "write the values out, or reference each anchor from fewer places",
            )
        ) from None
    except yaml.MarkedYAMLError as exc:
        raise YamlLoadError(_yaml_error(exc, file)) from None
    except yaml.YAMLError as exc:  # reader errors (bad encoding) carry a position too
        raise YamlLoadError(_reader_error(exc, file)) from None
    except RecursionError:
        raise YamlLoadError(error("the YAML nests too deeply to be read", Location(file))) from None
    finally:
        loader.dispose()
    document = LoadedDocument(file, data, node, builder.diagnostics, builder.key_names, content)
    document.diagnostics.extend(_unsafe_names(document, data, ()))
    return document


# Values that name something (deployments, flows, pools, queues, schedules, tags): printed by
# every listing, so they may not hold control or bidi characters (reconciler/core/terminal_text.py).
_NAME_KEYS = frozenset({"name", "flow_name", "work_queue_name", "slug", "tags"})


def _unsafe_names(document: LoadedDocument, value: object, path: Path) -> list[Diagnostic]:
    from reconciler.core.terminal_text import unsafe_characters

    found: list[Diagnostic] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_unsafe_names(document, item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_unsafe_names(document, item, (*path, index)))
    elif isinstance(value, str) and _is_name(path) and (bad := unsafe_characters(value)):
        found.append(
            error(
                f"`{_dotted(path)}` holds control or bidi characters ({', '.join(bad)}), "
                "which would garble or disguise it in terminals",
                document.location(path),
                "use printable characters only in names, tags and slugs",
            )
        )
    return found


_FREE_VALUES = frozenset({"parameters", "job_variables", "base_job_template", "variables"})


def _is_name(path: Path) -> bool:
    keys = [part for part in path if isinstance(part, str)]
    return bool(keys) and keys[-1] in _NAME_KEYS and not _FREE_VALUES.intersection(keys)


def _dotted(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


class _ExpansionLimit(Exception):
    def __init__(self, budget: int, node: Node) -> None:
        super().__init__(budget)
        self.budget = budget
        self.node = node


class _Builder:
    """Turns a composed node graph into values, expanding aliases within a budget."""

    def __init__(self, file: str, loader: yaml.SafeLoader, line_count: int) -> None:
        self.file = file
        self.loader = loader
        # A file's lines bound how many values it writes out; aliases may repeat some, but a
        # document expanding to far more values than it has lines is a bomb.
        self.budget = max(MIN_EXPANSION_BUDGET, EXPANSION_FACTOR * line_count)
        self.built = 0
        self.key_names: dict[int, str] = {}
        self.diagnostics: list[Diagnostic] = []
        self.active: set[int] = set()
        self.checked_for_duplicates: set[int] = set()

    def build(self, node: Node) -> Any:
        self.built += 1
        if self.built > self.budget:
            raise _ExpansionLimit(self.budget, node)
        if isinstance(node, ScalarNode):
            if node.tag == _STR_TAG:
                return node.value  # most scalars: skip the constructor machinery
            return _plain(self.loader.construct_object(node, deep=True))
        if id(node) in self.active:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to a value that contains it", node.start_mark
            )
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self._item(item) for item in node.value]
            if isinstance(node, MappingNode):
                return self._mapping(node)
        finally:
            self.active.discard(id(node))
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported YAML node {node.tag}", node.start_mark
        )

    def _item(self, node: Node) -> Any:
        """`build`, with the commonest node (a string scalar) handled without a further call."""
        if node.tag == _STR_TAG and type(node) is ScalarNode:
            self.built += 1
            if self.built > self.budget:
                raise _ExpansionLimit(self.budget, node)
            return node.value
        return self.build(node)

    def _mapping(self, node: MappingNode) -> dict[str, Any]:
        check_duplicates = True
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                self._warn_duplicates(node)  # before merging: merged keys may be overridden
                self.loader.flatten_mapping(node)  # resolves `<<` merge keys as safe_load does
                check_duplicates = False
                break
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _STR_TAG and isinstance(key_node, ScalarNode):
                key = key_node.value
            else:
                key = self._key(key_node)
                self.key_names[id(key_node)] = key
            if check_duplicates and key in result:
                self._duplicate(key, node, key_node)
            if value_node.tag == _STR_TAG and type(value_node) is ScalarNode:  # as `_item`
                self.built += 1
                if self.built > self.budget:
                    raise _ExpansionLimit(self.budget, value_node)
                result[key] = value_node.value
            else:
                result[key] = self.build(value_node)
        return result

    def _duplicate(self, key: str, node: MappingNode, second: Node) -> None:
        first = next(k for k, _ in node.value if isinstance(k, ScalarNode) and k.value == key)
        self._report_duplicate(key, first, second)

    def _key(self, key_node: Node) -> str:
        if isinstance(key_node, ScalarNode) and key_node.tag == _STR_TAG:
            return str(key_node.value)
        if not isinstance(key_node, ScalarNode):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a mapping key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
        key = self.loader.construct_object(key_node, deep=True)
        if isinstance(key, str):
            return key
        if isinstance(key, bool):
            return "true" if key else "false"
        if key is None:
            return "null"
        return str(key)

    def _warn_duplicates(self, node: MappingNode) -> None:
        if id(node) in self.checked_for_duplicates:  # an aliased mapping is checked once
            return
        self.checked_for_duplicates.add(id(node))
        seen: dict[Hashable, Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = key_node.value
            if key in seen:
                self._report_duplicate(key, seen[key], key_node)
            seen[key] = key_node

    def _report_duplicate(self, key: Hashable, first_node: Node, second: Node) -> None:
        first = _position(first_node)
        line, column = _position(second)
        self.diagnostics.append(
            warning(
                f'key "{key}" is written twice in this mapping (first at line '
                f"{first[0]}); the last one wins, as in Prefect",
                Location(self.file, line, column),
                "delete one of the two",
            )
        )


def _plain(value: Any) -> Any:
    """Scalars as safe_load gives them; bytes (!!binary) become text we can show."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _position(node: Node) -> Position:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    location = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
    parts = [p for p in (exc.context, exc.problem) if p]
    message = "not valid YAML: " + ("; ".join(parts) if parts else str(exc))
    return error(message, location, "fix the YAML syntax at that position")


def _reader_error(exc: yaml.YAMLError, file: str) -> Diagnostic:
    position = getattr(exc, "position", None)
    reason = getattr(exc, "reason", None) or str(exc)
    message = f"cannot read the file as text: {reason}"
    hint = "save the file as UTF-8"
    if position is not None:
        return error(f"{message} (byte {position})", Location(file), hint)
    return error(message, Location(file), hint)
