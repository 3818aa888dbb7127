"""Our ast-read parameter schemas against Prefect's own `parameter_schema()`.

A set of flow files covering Literal, Enum, date/datetime/UUID/Path, Annotated Field bounds,
pydantic models (nested, Optional, list of, dict of, self-referencing, inherited), Optional,
unions, collections and unresolvable types is written to a temporary directory. Prefect 3.9
imports each file in a subprocess and prints `parameter_schema(fn).model_dump_for_openapi()`;
we read the same files with `ast` (reconciler.project.flows) and the two must be equal.

Deliberate differences, normalised before comparing:
- we always write `required` and `definitions`, even empty (Prefect leaves out an empty
  `required`); a validator reads both the same.
Deliberate differences not covered by these files (asserted in test_flows.py instead):
- a class imported from another module is unknown to us and gives `{}` (any value); Prefect
  imports it and may describe it fully (a pydantic model, an Enum);
- a default that is not a literal (a call, a name) is left out; Prefect shows its value;
- under `from __future__ import annotations`, one annotation Prefect cannot evaluate makes
  Prefect drop the types of every parameter of that flow; we keep the ones we can read.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from reconciler.project.flows import read_flow
from reconciler.sources.base import MemorySnapshot

if find_spec("prefect") is None:
    pytest.skip(
        "prefect is not installed in this environment: pip install -e '.[test]'",
        allow_module_level=True,
    )

HEADER = """
import datetime
import enum
import pathlib
import uuid
from datetime import date
from datetime import datetime as DateTime
from enum import Enum, IntEnum, StrEnum, auto
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union
from uuid import UUID

import pydantic
from pydantic import BaseModel, Field
from prefect import flow
"""

FLOW_FILES: dict[str, str] = {
    "literals.py": """
        @flow
        def literals(
            mode: Literal["fast", "slow"] = "fast",
            level: Literal[1, 2, 3] = 1,
            only: Literal["x"] = "x",
            mixed: Literal["a", 1] = "a",
            nothing: Literal[None] = None,
            flag: Literal[True] = True,
            ratio: Literal[1.5, 2.5] = 1.5,
            maybe: Optional[Literal["a", "b"]] = None,
            piped: Literal["a"] | None = None,
        ):
            pass
        """,
    "enums.py": """
        class Color(str, Enum):
            RED = "red"
            BLUE = "blue"

        class Level(enum.IntEnum):
            LOW = 1
            HIGH = 2

        class Plain(Enum):
            A = "a"
            B = 2

        class Documented(Enum):
            \"\"\"Some colours.\"\"\"
            A = "a"
            B = "b"

        class Counted(Enum):
            X = auto()
            Y = auto()

        class Named(StrEnum):
            FOO = auto()
            BAR = "bar"

        class Half(float, Enum):
            H = 0.5
            O = 1.0

        @flow
        def enums(
            color: Color = Color.RED,
            level: Level = Level.LOW,
            plain: Plain = Plain.A,
            maybe: Optional[Color] = None,
            documented: Documented = Documented.B,
            counted: Counted = Counted.X,
            named: Named = Named.FOO,
            half: Half = Half.H,
            colors: list[Color] = [],
        ):
            pass

        @flow
        def required_enum(color: Color, level: Level | None = None):
            pass
        """,
    "formats.py": """
        @flow
        def formats(
            when: date,
            at: DateTime,
            run_id: UUID,
            where: Path,
            when2: datetime.date,
            run_id2: uuid.UUID,
            where2: pathlib.Path,
            at2: datetime.datetime,
            every: datetime.timedelta,
            clock: datetime.time,
            maybe_when: Optional[date] = None,
            dates: list[date] = [],
            raw: bytes = b"",
        ):
            pass
        """,
    "bounds.py": """
        @flow
        def bounds(
            count: Annotated[int, Field(ge=0, le=10)] = 5,
            ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5,
            name: Annotated[str, Field(min_length=1, max_length=5, title="N")] = "x",
            tagged: Annotated[int, "just metadata"] = 1,
            maybe: Optional[Annotated[int, Field(ge=0)]] = None,
            outer: Annotated[Optional[int], Field(ge=0)] = None,
            some: Annotated[list[int], Field(min_length=1)] = [1],
            step: Annotated[int, Field(multiple_of=5)] = 10,
            code: Annotated[str, Field(pattern="^[A-Z]+$")] = "AB",
        ):
            pass
        """,
    "models.py": """
        class Color(str, Enum):
            RED = "red"
            BLUE = "blue"

        class Inner(BaseModel):
            x: int = 1
            tags: list[str] = []

        class Config(BaseModel):
            \"\"\"How to run.\"\"\"
            retries: int = 3
            name: str
            inner: Inner = Inner()
            inners: list[Inner] = []
            maybe: Optional[Inner] = None
            ratio: float = Field(0.5, ge=0, le=1, description="the ratio")
            color: Color = Color.RED
            when: Optional[date] = None

        class Base(BaseModel):
            a: int = 1

        class Child(Base):
            b: str = "x"
            c: Annotated[int, Field(ge=0)] = 2
            d: list[int] = Field(default_factory=list)
            e: Optional[Color] = None
            g: dict[str, Any] = {}
            h: Literal["p", "q"] = "p"
            my_field: float = Field(default=1.5, gt=0, title="Custom")

        class Tree(BaseModel):
            name: str
            children: list["Tree"] = []

        @flow
        def models(
            config: Config,
            optional: Optional[Config] = None,
            many: list[Inner] = [],
            by_name: dict[str, Inner] = {},
        ):
            pass

        @flow
        def model_defaults(
            child: Child = Child(),
            other: Child = Child(a=5, b="y", e=Color.BLUE),
            tree: Optional[Tree] = None,
            inner: Inner = Inner(x=2),
        ):
            pass
        """,
    "collections.py": """
        class Widget:
            pass

        @flow
        def collections(
            numbers: list[int],
            counts: dict[str, int],
            names: Optional[list[str]] = None,
            number: int | None = None,
            pair: tuple[int, str] = (1, "a"),
            unique: set[int] = set(),
            anything: Any = None,
            bare_list: list = [],
            bare_dict: dict = {},
            nested: dict[str, list[int]] = {},
            rows: list[dict[str, int]] = [],
            many: tuple[int, ...] = (),
            either: Union[int, str] = 1,
            untyped=3,
            widget: Widget = None,
            maybe_widget: Optional[Widget] = None,
            widgets: list[Widget] = [],
            quoted: "int" = 1,
            number_as_int: float = 1,
        ):
            pass

        @flow
        def variadic(first: int, *args, flag: bool = False, **kwargs):
            pass
        """,
    "more.py": """
        class Color(Enum):
            RED = "red"
            GREEN = "green"

        class Point(BaseModel):
            x: Annotated[float, Field(ge=-1, le=1)] = 0
            y: float = 0.0
            label: Optional[str] = Field(None, max_length=10)

        class Shape(BaseModel):
            points: list[Point]
            color: Color = Color.GREEN
            palette: dict[str, Color] = {}

        @flow
        async def async_flow(shape: Shape, scale: Annotated[float, Field(gt=0)] = 1.0):
            pass

        @flow
        def positional_and_keyword(a: int, /, b: str = "b", *, c: date, d: list[Point] = []):
            pass

        @flow
        def optional_lists(
            shapes: Optional[list[Shape]] = None,
            colors: dict[str, Color] = {},
            either: Union[date, int] = 1,
            ids: list[UUID] = [],
        ):
            pass

        @flow(name="named-flow", description="from the decorator")
        def decorated(point: Point = Point(x=0.5, label="p"), when: Optional[DateTime] = None):
            pass

        @flow
        def no_parameters():
            pass
        """,
    "future.py": """
        from __future__ import annotations
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from not_installed_anywhere import Gadget

        @flow
        def unresolvable(gadget: Gadget = None, count=1):
            pass

        @flow
        def postponed(when: date, levels: list[int] | None = None, mode: Literal["a"] = "a"):
            pass
        """,
}

PREFECT_SIDE = """
import importlib.util, json, sys
from prefect.utilities.callables import parameter_schema

results = {}
for path, names in json.loads(sys.argv[1]).items():
    spec = importlib.util.spec_from_file_location(path.removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    for name in names:
        schema = parameter_schema(getattr(module, name).fn)
        results[f"{path}:{name}"] = schema.model_dump_for_openapi()
print(json.dumps(results))
"""


def flow_source(body: str) -> str:
    text = textwrap.dedent(body).strip("\n")
    if text.startswith("from __future__"):
        first, rest = text.split("\n", 1)
        return f"{first}\n{HEADER}\n{rest}\n"
    return f"{HEADER}\n{text}\n"


def flow_names(body: str) -> list[str]:
    lines = textwrap.dedent(body).splitlines()
    return [
        re.sub(r"^(async )?def (\w+).*", r"\2", line.strip())
        for previous, line in itertools.pairwise(lines)
        if previous.strip().startswith("@flow")
    ]


def prefect_schemas(directory: Path) -> dict[str, Any]:
    """Prefect's schemas, computed by Prefect itself, with no server anywhere."""
    wanted = {path: flow_names(body) for path, body in FLOW_FILES.items()}
    env = {
        **os.environ,
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
        "PREFECT_HOME": str(directory / ".prefect"),
    }
    done = subprocess.run(
        [sys.executable, "-c", PREFECT_SIDE, json.dumps(wanted)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    directory = tmp_path_factory.mktemp("flows")
    files = {path: flow_source(body) for path, body in FLOW_FILES.items()}
    for path, text in files.items():
        (directory / path).write_text(text)
    theirs = prefect_schemas(directory)
    snapshot = MemorySnapshot(dict(files))
    ours = {key: read_flow(snapshot, "", key).parameter_schema for key in theirs}
    return {key: (ours[key], theirs[key]) for key in theirs}


def normalised(schema: dict[str, Any]) -> dict[str, Any]:
    """Without an empty `required` or `definitions` (the one deliberate difference)."""
    return {k: v for k, v in schema.items() if not (k in ("required", "definitions") and not v)}


def test_the_set_covers_enough_signatures(schemas: dict[str, tuple[Any, Any]]) -> None:
    assert len(schemas) >= 15
    assert sum(len(theirs["properties"]) for _, theirs in schemas.values()) >= 60


@pytest.mark.parametrize(
    "key",
    [f"{path}:{name}" for path, body in FLOW_FILES.items() for name in flow_names(body)],
)
def test_schema_equals_prefects(schemas: dict[str, tuple[Any, Any]], key: str) -> None:
    ours, theirs = schemas[key]
    for name in theirs["properties"]:
        assert ours["properties"].get(name) == theirs["properties"][name], name
    assert normalised(ours) == normalised(theirs)
