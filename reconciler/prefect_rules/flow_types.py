"""Turn a flow's type annotations into JSON Schema as Prefect renders them, without imports.

Part of the desired-state stage, used by `flows.py` for a flow's parameter schema. Prefect
builds that schema with pydantic from the imported function; we read the same annotations
from the parsed file (`ast`) and give the same shapes: `Literal[...]` as `enum`/`const`,
`Enum` and pydantic `BaseModel` classes defined in the flow's file as `definitions` plus a
`$ref`, `date`/`datetime`/`UUID`/`Path` as formats, `Annotated[..., Field(ge=...)]` as bounds.

What cannot be resolved from the file alone (a class imported from elsewhere, an expression)
becomes `None` here; the caller renders it as `{}`, Prefect's schema for a type it cannot
describe, so it accepts any value rather than failing. Never raises.
"""

from __future__ import annotations

import ast
import enum
from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

# Qualified annotation name -> schema. Names from `typing`/`builtins` are looked up bare.
NAMED_TYPES: dict[str, Schema] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "bytes": {"type": "string", "format": "binary"},
    "None": {"type": "null"},
    "Any": {},
    "list": {"type": "array", "items": {}},
    "List": {"type": "array", "items": {}},
    "dict": {"type": "object", "additionalProperties": True},
    "Dict": {"type": "object", "additionalProperties": True},
    "datetime.date": {"type": "string", "format": "date"},
    "datetime.datetime": {"type": "string", "format": "date-time"},
    "datetime.time": {"type": "string", "format": "time"},
    "datetime.timedelta": {"type": "string", "format": "duration"},
    "uuid.UUID": {"type": "string", "format": "uuid"},
    "pathlib.Path": {"type": "string", "format": "path"},
}
LIST_TYPES = frozenset({"list", "List"})
SET_TYPES = frozenset({"set", "Set", "frozenset", "FrozenSet"})
TUPLE_TYPES = frozenset({"tuple", "Tuple"})
DICT_TYPES = frozenset({"dict", "Dict"})
UNION_TYPES = frozenset({"Optional", "Union"})
TRANSPARENT_MODULES = ("typing.", "typing_extensions.", "builtins.")
PYDANTIC_MODELS = frozenset({"pydantic.BaseModel", "pydantic.main.BaseModel"})
PYDANTIC_FIELDS = frozenset({"pydantic.Field", "pydantic.fields.Field"})
ENUM_BASES = frozenset(f"enum.{name}" for name in ("Enum", "IntEnum", "StrEnum", "Flag", "IntFlag"))
ENUM_MIXINS = {"str": str, "int": int, "float": float}
ENUM_AUTO = frozenset({"enum.auto"})
# `set()` as a default, dumped as JSON.
EMPTY_CONSTRUCTORS: dict[str, list[Any] | dict[str, Any]] = {
    "set": [],
    "frozenset": [],
    "list": [],
    "tuple": [],
    "dict": {},
}

# pydantic Field keyword -> JSON Schema keyword, by the schema's type ("*": any type).
CONSTRAINTS: dict[str, dict[str, str]] = {
    "ge": {"*": "minimum"},
    "le": {"*": "maximum"},
    "gt": {"*": "exclusiveMinimum"},
    "lt": {"*": "exclusiveMaximum"},
    "multiple_of": {"*": "multipleOf"},
    "pattern": {"*": "pattern"},
    "min_length": {"array": "minItems", "object": "minProperties", "*": "minLength"},
    "max_length": {"array": "maxItems", "object": "maxProperties", "*": "maxLength"},
}


class Unresolved(enum.Enum):
    """A value that cannot be worked out from the source alone."""

    VALUE = 0


@dataclass
class FieldInfo:
    """What a pydantic `Field(...)` call says, as far as it is literal."""

    constraints: Schema = field(default_factory=dict)
    title: str | None = None
    description: str | None = None
    default: Any = Unresolved.VALUE  # Unresolved: no default (or not a literal one)
    has_default: bool = False  # a default or a default_factory: the field is optional


class TypeReader:
    """Annotations of one module to JSON Schema; `definitions` collects the classes used."""

    def __init__(self, module: ast.Module, imports: dict[str, str]) -> None:
        self.imports = imports
        self.classes: dict[str, ast.ClassDef] = {
            stmt.name: stmt for stmt in module.body if isinstance(stmt, ast.ClassDef)
        }
        self.definitions: dict[str, Schema] = {}
        self._failed: set[str] = set()

    # --- annotations ---------------------------------------------------------------------------

    def schema(self, annotation: ast.expr) -> Schema | None:
        """The JSON Schema of an annotation; None when it cannot be resolved from the file."""
        try:
            return self._schema(annotation)
        except (RecursionError, MemoryError):
            return None

    def _schema(self, annotation: ast.expr) -> Schema | None:
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            return self._string_annotation(annotation.value)
        if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
            return self._union([annotation.left, annotation.right])
        if isinstance(annotation, ast.Subscript):
            return self._generic(annotation)
        name = self.type_name(annotation)
        if name is None:
            return None
        if name in NAMED_TYPES:
            return dict(NAMED_TYPES[name])
        if name in self.classes:
            return self._class_schema(self.classes[name])
        return None

    def _string_annotation(self, text: str) -> Schema | None:
        try:
            return self._schema(ast.parse(text.strip(), mode="eval").body)
        except (SyntaxError, ValueError):
            return None

    def _generic(self, annotation: ast.Subscript) -> Schema | None:
        name = self.type_name(annotation.value)
        slice_ = annotation.slice
        args = list(slice_.elts) if isinstance(slice_, ast.Tuple) else [slice_]
        if name == "Optional":
            return self._union([*args, ast.Constant(None)])
        if name in UNION_TYPES:
            return self._union(args)
        if name == "Literal":
            return _literal_schema(args)
        if name == "Annotated":
            return self._annotated(args)
        if name in LIST_TYPES or name in SET_TYPES:
            # Items of a type we cannot resolve: any item, as for a bare `list`.
            items = (self._schema(args[0]) if len(args) == 1 else None) or {}
            schema: Schema = {"type": "array", "items": items}
            return {**schema, "uniqueItems": True} if name in SET_TYPES else schema
        if name in TUPLE_TYPES:
            return self._tuple(args)
        if name in DICT_TYPES:
            return self._mapping(args)
        return None

    def _annotated(self, args: list[ast.expr]) -> Schema | None:
        schema = self._schema(args[0])
        if schema is None:
            return None
        for extra in args[1:]:
            info = self.field_call(extra)
            if info is not None:
                schema = apply_constraints(schema, info.constraints)
        return schema

    def _tuple(self, args: list[ast.expr]) -> Schema | None:
        if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
            items = self._schema(args[0])
            return None if items is None else {"type": "array", "items": items}
        members = [self._schema(arg) for arg in args]
        if any(member is None for member in members):
            return None
        return {
            "type": "array",
            "prefixItems": members,
            "minItems": len(members),
            "maxItems": len(members),
        }

    def _mapping(self, args: list[ast.expr]) -> Schema | None:
        if len(args) != 2 or self.type_name(args[0]) != "str":
            return dict(NAMED_TYPES["dict"])
        values = self._schema(args[1])
        return {"type": "object", "additionalProperties": values or True}

    def _union(self, members: list[ast.expr]) -> Schema | None:
        """`anyOf` of the members (nested unions flattened); None if any member is unknown."""
        schemas: list[Schema] = []
        for member in members:
            schema = self._schema(member)
            if schema is None:
                return None
            for option in schema.get("anyOf", [schema]) if len(schema) == 1 else [schema]:
                if option not in schemas:
                    schemas.append(option)
        return {"anyOf": schemas} if len(schemas) > 1 else schemas[0]

    def type_name(self, expr: ast.expr) -> str | None:
        """`int`, `typing.List`, `dt.date` -> `int`, `List`, `datetime.date`; None: no name."""
        if isinstance(expr, ast.Constant) and expr.value is None:
            return "None"
        name = qualified_name(expr, self.imports)
        if name is None:
            return None
        for module in TRANSPARENT_MODULES:
            if name.startswith(module):
                return name.removeprefix(module)
        return name

    # --- classes of the file: enums and pydantic models -----------------------------------------

    def _class_schema(self, node: ast.ClassDef) -> Schema | None:
        kind = self._class_kind(node)
        if kind is None:
            return {}  # a plain class: Prefect renders arbitrary types as {}
        if node.name in self._failed:
            return None
        if node.name not in self.definitions:
            self.definitions[node.name] = {}  # placeholder: a model may refer to itself
            body = self._enum_definition(node) if kind == "enum" else self._model_definition(node)
            if body is None:
                del self.definitions[node.name]
                self._failed.add(node.name)
                return None
            self.definitions[node.name] = body
        return {"$ref": f"#/definitions/{node.name}"}

    def _class_kind(self, node: ast.ClassDef) -> str | None:
        """ "enum", "model", or None for a class that is neither (as far as the file says)."""
        for base in node.bases:
            name = qualified_name(base, self.imports)
            if name in ENUM_BASES:
                return "enum"
            if name in PYDANTIC_MODELS:
                return "model"
            if name in self.classes and name != node.name:
                inherited = self.classes[name]
                if inherited.lineno < node.lineno:
                    kind = self._class_kind(inherited)
                    if kind is not None:
                        return kind
        return None

    def enum_values(self, node: ast.ClassDef) -> dict[str, Any] | None:
        """Member name -> value, in definition order; None if a value is not a literal."""
        mixin = next(
            (
                ENUM_MIXINS[name]
                for base in node.bases
                if (name := qualified_name(base, self.imports) or "") in ENUM_MIXINS
            ),
            None,
        )
        is_str_enum = any(qualified_name(b, self.imports) == "enum.StrEnum" for b in node.bases)
        values: dict[str, Any] = {}
        for stmt in node.body:
            if not (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                continue
            member = stmt.targets[0].id
            if member.startswith("_"):
                continue
            value = self._enum_value(stmt.value, member, list(values.values()), is_str_enum)
            if value is Unresolved.VALUE:
                return None
            if mixin is not None and not isinstance(value, mixin | bool):
                try:
                    value = mixin(value)
                except (TypeError, ValueError):
                    return None
            if value not in values.values():  # a repeated value is an alias
                values[member] = value
        return values or None

    def _enum_value(self, expr: ast.expr, member: str, earlier: list[Any], str_enum: bool) -> Any:
        if (
            isinstance(expr, ast.Call)
            and not expr.args
            and qualified_name(expr.func, self.imports) in ENUM_AUTO
        ):
            if str_enum:
                return member.lower()
            last = earlier[-1] if earlier else 0
            return last + 1 if isinstance(last, int) and not isinstance(last, bool) else None
        value = literal_value(expr)
        return value if _is_json(value) else Unresolved.VALUE

    def _enum_definition(self, node: ast.ClassDef) -> Schema | None:
        values = self.enum_values(node)
        if values is None:
            return None
        definition: Schema = {"title": node.name}
        docstring = ast.get_docstring(node)
        if docstring:
            definition["description"] = docstring
        definition["enum"] = list(values.values())
        json_type = _common_json_type(definition["enum"])
        if json_type is not None:
            definition["type"] = json_type
        return definition

    def _model_fields(self, node: ast.ClassDef) -> list[tuple[str, ast.expr, ast.expr | None]]:
        """(name, annotation, value) of each field, inherited ones first."""
        fields: dict[str, tuple[str, ast.expr, ast.expr | None]] = {}
        for base in node.bases:
            name = qualified_name(base, self.imports)
            if name in self.classes and name != node.name:
                for found in self._model_fields(self.classes[name]):
                    fields[found[0]] = found
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            name = stmt.target.id
            annotation_name = self.type_name(
                stmt.annotation.value
                if isinstance(stmt.annotation, ast.Subscript)
                else stmt.annotation
            )
            if name.startswith("_") or annotation_name == "ClassVar":
                continue
            fields[name] = (name, stmt.annotation, stmt.value)
        return list(fields.values())

    def _model_definition(self, node: ast.ClassDef) -> Schema | None:
        properties: Schema = {}
        required: list[str] = []
        for name, annotation, value in self._model_fields(node):
            schema = self.schema(annotation)
            prop: Schema = dict(schema or {})
            info = self._field_info(annotation, value)
            if not _refers_only(prop):
                prop["title"] = info.title or name.title().replace("_", " ").strip()
            elif info.title:
                prop["title"] = info.title
            if info.description:
                prop["description"] = info.description
            prop = apply_constraints(prop, info.constraints)
            if info.default is not Unresolved.VALUE:
                prop["default"] = info.default
            if not info.has_default:
                required.append(name)
            properties[name] = prop
        definition: Schema = {"title": node.name, "type": "object", "properties": properties}
        docstring = ast.get_docstring(node)
        if docstring:
            definition["description"] = docstring
        if required:
            definition["required"] = required
        return definition

    def _field_info(self, annotation: ast.expr, value: ast.expr | None) -> FieldInfo:
        """The Field() of a model field (from its value or its Annotated), and its default."""
        info = FieldInfo()
        if isinstance(annotation, ast.Subscript) and self.type_name(annotation.value) == (
            "Annotated"
        ):
            slice_ = annotation.slice
            for extra in slice_.elts[1:] if isinstance(slice_, ast.Tuple) else []:
                found = self.field_call(extra)
                if found is not None:
                    info = found
        if value is None:
            return info
        call = self.field_call(value)
        if call is not None:
            call.constraints = {**info.constraints, **call.constraints}
            return call
        info.has_default = True
        info.default = self.default_value(value)
        return info

    def field_call(self, expr: ast.expr) -> FieldInfo | None:
        """A `Field(...)` call read as FieldInfo; None if `expr` is not one."""
        if not isinstance(expr, ast.Call):
            return None
        if qualified_name(expr.func, self.imports) not in PYDANTIC_FIELDS:
            return None
        info = FieldInfo()
        given: dict[str, ast.expr] = {kw.arg: kw.value for kw in expr.keywords if kw.arg}
        if expr.args:
            given["default"] = expr.args[0]
        if "default" in given and not _is_ellipsis(given["default"]):
            info.has_default = True
            info.default = self.default_value(given["default"])
        if "default_factory" in given:
            info.has_default = True
        for keyword, value in given.items():
            literal = literal_value(value)
            if keyword in CONSTRAINTS and _is_json(literal):
                info.constraints[keyword] = literal
            elif keyword == "title" and isinstance(literal, str):
                info.title = literal
            elif keyword == "description" and isinstance(literal, str):
                info.description = literal
        return info

    # --- defaults ------------------------------------------------------------------------------

    def default_value(self, expr: ast.expr) -> Any:
        """A default as JSON data, as pydantic dumps it; Unresolved.VALUE if not literal."""
        try:
            return self._default_value(expr)
        except (RecursionError, MemoryError):
            return Unresolved.VALUE

    def _default_value(self, expr: ast.expr) -> Any:
        value = literal_value(expr)
        if value is not Unresolved.VALUE:
            return as_json(value)
        if isinstance(expr, ast.List | ast.Tuple):
            items = [self._default_value(item) for item in expr.elts]
            return Unresolved.VALUE if Unresolved.VALUE in items else items
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            node = self.classes.get(qualified_name(expr.value, self.imports) or "")
            if node is not None and self._class_kind(node) == "enum":
                values = self.enum_values(node)
                if values is not None and expr.attr in values:
                    return values[expr.attr]
        if isinstance(expr, ast.Call) and not expr.args and not expr.keywords:
            empty = EMPTY_CONSTRUCTORS.get(qualified_name(expr.func, self.imports) or "")
            if empty is not None:
                return list(empty) if isinstance(empty, list) else dict(empty)
        if isinstance(expr, ast.Call) and not expr.args:
            node = self.classes.get(qualified_name(expr.func, self.imports) or "")
            if node is not None and self._class_kind(node) == "model":
                return self._model_instance(node, expr)
        return Unresolved.VALUE

    def _model_instance(self, node: ast.ClassDef, call: ast.Call) -> Any:
        """`Model(a=1)` dumped: every field, given or defaulted; Unresolved if not literal."""
        given = {kw.arg: kw.value for kw in call.keywords}
        if None in given:
            return Unresolved.VALUE  # **kwargs
        dumped: dict[str, Any] = {}
        for name, annotation, value in self._model_fields(node):
            if name in given:
                dumped[name] = self._default_value(given[name])
                continue
            info = self._field_info(annotation, value)
            if info.default is Unresolved.VALUE:
                factory = _factory_value(value, self.imports)
                if factory is Unresolved.VALUE:
                    return Unresolved.VALUE
                dumped[name] = factory
            else:
                dumped[name] = info.default
        if Unresolved.VALUE in dumped.values():
            return Unresolved.VALUE
        return dumped


# --- helpers -------------------------------------------------------------------------------------


def qualified_name(expr: ast.expr, imports: dict[str, str]) -> str | None:
    """`f` -> `prefect.flow` when imported so; `prefect.flow` -> itself; None if not a name."""
    if isinstance(expr, ast.Name):
        return imports.get(expr.id, expr.id)
    if isinstance(expr, ast.Attribute):
        owner = qualified_name(expr.value, imports)
        return f"{owner}.{expr.attr}" if owner else None
    return None


def literal_value(expr: ast.expr) -> Any:
    """The value of a Python literal, or Unresolved.VALUE."""
    try:
        return ast.literal_eval(expr)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return Unresolved.VALUE


def as_json(value: Any) -> Any:
    """A literal as JSON data (tuples as lists), or Unresolved.VALUE (sets, complex, ...)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes):  # pydantic dumps bytes as UTF-8 text
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return Unresolved.VALUE
    if isinstance(value, float):
        return (
            value
            if value == value and value not in (float("inf"), float("-inf"))
            else (Unresolved.VALUE)
        )
    if isinstance(
        value, list | tuple | set | frozenset
    ):  # a set's order is Python's, as in pydantic
        items = [as_json(item) for item in value]
        return Unresolved.VALUE if Unresolved.VALUE in items else items
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        entries = {key: as_json(item) for key, item in value.items()}
        return Unresolved.VALUE if Unresolved.VALUE in entries.values() else entries
    return Unresolved.VALUE


def apply_constraints(schema: Schema, constraints: Schema) -> Schema:
    """Field(ge=..., max_length=...) on a schema; on `X | None`, on its X (as pydantic does)."""
    if not constraints:
        return schema
    if "anyOf" in schema:
        options = [
            option if option.get("type") == "null" else apply_constraints(option, constraints)
            for option in schema["anyOf"]
        ]
        return {**schema, "anyOf": options}
    result = dict(schema)
    for keyword, value in constraints.items():
        by_type = CONSTRAINTS[keyword]
        result[by_type.get(str(schema.get("type")), by_type["*"])] = value
    return result


def _literal_schema(args: list[ast.expr]) -> Schema | None:
    values = [literal_value(arg) for arg in args]
    if any(not _is_json(value) or isinstance(value, list | dict) for value in values):
        return None
    schema: Schema = {"const": values[0]} if len(values) == 1 else {"enum": values}
    json_type = _common_json_type(values)
    if json_type is not None:
        schema["type"] = json_type
    return schema


def _common_json_type(values: list[Any]) -> str | None:
    """The JSON type all values share, as pydantic names it for an enum or a Literal."""
    types = {type(value) for value in values}
    for python_type, json_type in (
        (str, "string"),
        (int, "integer"),
        (float, "number"),
        (bool, "boolean"),
        (list, "array"),
        (type(None), "null"),
    ):
        if types == {python_type}:
            return json_type
    return None


def _is_json(value: Any) -> bool:
    return value is not Unresolved.VALUE and as_json(value) is not Unresolved.VALUE


def _is_ellipsis(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is Ellipsis


def _refers_only(schema: Schema) -> bool:
    """A `$ref`, or `$ref | None`: pydantic gives such a model field no title of its own."""
    if "$ref" in schema:
        return True
    options = schema.get("anyOf", [])
    return (
        len(options) == 2
        and {"type": "null"} in options
        and any("$ref" in option for option in options)
    )


def _factory_value(value: ast.expr | None, imports: dict[str, str]) -> Any:
    """What `Field(default_factory=list|dict|set|tuple)` makes, as JSON; else Unresolved."""
    if not isinstance(value, ast.Call):
        return Unresolved.VALUE
    for keyword in value.keywords:
        if keyword.arg == "default_factory":
            name = qualified_name(keyword.value, imports)
            if name in ("list", "set", "tuple"):
                return []
            if name == "dict":
                return {}
    return Unresolved.VALUE
