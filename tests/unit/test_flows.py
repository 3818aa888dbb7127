"""Reading flows from entrypoints by parsing committed source (reconciler.project.flows)."""

from __future__ import annotations

import textwrap

import pytest

from reconciler.project.flows import MAX_FLOW_FILE_BYTES, EntrypointError, FlowInfo, read_flow
from reconciler.sources.base import MemorySnapshot, PathKind


def source(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def read(files: dict[str, str | bytes], entrypoint: str, base_dir: str = "") -> FlowInfo:
    return read_flow(MemorySnapshot(files), base_dir, entrypoint)


def read_one(text: str, function: str = "main") -> FlowInfo:
    return read({"flows/main.py": source(text)}, f"flows/main.py:{function}")


def refused(
    files: dict[str, str | bytes],
    entrypoint: str,
    base_dir: str = "",
    symlinks: dict[str, str] | None = None,
) -> EntrypointError:
    snapshot = MemorySnapshot(files, symlinks=symlinks)
    with pytest.raises(EntrypointError) as caught:
        read_flow(snapshot, base_dir, entrypoint)
    return caught.value


FLOW = source(
    """
    from prefect import flow

    @flow
    def main():
        pass
    """
)


# --- decorators, names, descriptions -------------------------------------------------------------


def test_bare_flow_decorator_gives_name_from_function_with_dashes() -> None:
    info = read_one(
        """
        from prefect import flow

        @flow
        def load_daily_sales():
            pass
        """,
        "load_daily_sales",
    )
    assert info.name == "load-daily-sales"
    assert info.function_name == "load_daily_sales"
    assert info.path == "flows/main.py"
    assert info.is_flow
    assert info.description is None
    assert info.version is None


def test_called_flow_decorator_without_arguments_is_a_flow() -> None:
    info = read_one(
        """
        from prefect import flow

        @flow()
        def my_flow():
            pass
        """,
        "my_flow",
    )
    assert info.is_flow
    assert info.name == "my-flow"


def test_prefect_dot_flow_with_literal_name() -> None:
    info = read_one(
        """
        import prefect

        @prefect.flow(name="x")
        def main():
            pass
        """
    )
    assert info.is_flow
    assert info.name == "x"


def test_flow_imported_under_an_alias() -> None:
    info = read_one(
        """
        from prefect import flow as f

        @f(name="nightly etl", version="2.1", description="Loads everything.")
        def main():
            '''Docstring loses to the decorator's description.'''
        """
    )
    assert info.is_flow
    assert info.name == "nightly etl"
    assert info.version == "2.1"
    assert info.description == "Loads everything."


def test_prefect_module_imported_under_an_alias() -> None:
    info = read_one(
        """
        import prefect as pf

        @pf.flow(name="aliased")
        def main():
            pass
        """
    )
    assert (info.is_flow, info.name) == (True, "aliased")


def test_flow_decorator_among_other_decorators() -> None:
    info = read_one(
        """
        import functools
        from prefect import flow

        @flow(name="wrapped")
        @functools.cache
        def main():
            pass
        """
    )
    assert (info.is_flow, info.name) == (True, "wrapped")


def test_non_literal_name_falls_back_to_function_name() -> None:
    info = read_one(
        """
        from prefect import flow
        NAME = "computed"

        @flow(name=NAME, version=f"{NAME}-1")
        def daily_run():
            pass
        """,
        "daily_run",
    )
    assert info.name == "daily-run"
    assert info.version is None


def test_empty_literal_name_falls_back_like_prefect() -> None:
    info = read_one(
        """
        from prefect import flow

        @flow(name="", description="")
        def a_b():
            '''From the docstring.'''
        """,
        "a_b",
    )
    assert info.name == "a-b"
    assert info.description == "From the docstring."


def test_async_def_is_read() -> None:
    info = read_one(
        """
        from prefect import flow

        @flow
        async def main(x: int):
            pass
        """
    )
    assert info.is_flow
    assert info.parameter_schema["required"] == ["x"]


def test_docstring_becomes_description_cleaned_like_inspect_getdoc() -> None:
    info = read_one(
        '''
        from prefect import flow

        @flow
        def main():
            """Summary line.

            Details:
                indented more.
            """
        '''
    )
    assert info.description == "Summary line.\n\nDetails:\n    indented more."


def test_undecorated_function_is_returned_as_not_a_flow() -> None:
    info = read_one(
        """
        def main():
            pass
        """
    )
    assert not info.is_flow
    assert info.name == "main"


def test_flow_named_decorator_from_another_library_is_not_a_prefect_flow() -> None:
    info = read_one(
        """
        from metaflow import flow

        @flow(name="other")
        def main():
            pass
        """
    )
    assert not info.is_flow
    assert info.name == "main"


def test_name_flow_without_import_counts_as_the_flow_decorator() -> None:
    info = read_one(
        """
        from prefect import *

        @flow(name="star")
        def main():
            pass
        """
    )
    assert (info.is_flow, info.name) == (True, "star")


# --- where the function may be defined -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        """
        import sys
        if sys.version_info >= (3, 11):
            pass
        else:
            @flow
            def main():
                pass
        """,
        """
        try:
            import pandas
        except ImportError:
            @flow
            def main():
                pass
        """,
        """
        with open(__file__):
            @flow
            async def main():
                pass
        """,
        """
        for _ in range(1):
            @flow
            def main():
                pass
        """,
        """
        while False:
            pass
        else:
            @flow
            def main():
                pass
        """,
        """
        match 1:
            case 1:
                @flow
                def main():
                    pass
        """,
    ],
    ids=["if-else", "try-except", "with", "for", "while-else", "match"],
)
def test_functions_in_module_level_blocks_count(text: str) -> None:
    info = read_one("from prefect import flow\n" + textwrap.dedent(text))
    assert info.is_flow


def test_later_definition_wins() -> None:
    info = read_one(
        """
        from prefect import flow

        def main():
            pass

        @flow(name="second")
        def main():
            pass
        """
    )
    assert info.name == "second"


def test_methods_and_nested_functions_are_not_top_level() -> None:
    error = refused(
        {
            "f.py": source(
                """
                class Jobs:
                    def main(self):
                        pass

                def outer():
                    def main():
                        pass
                """
            )
        },
        "f.py:main",
    )
    assert "'main' not found at the top level of 'f.py'" in error.message
    assert error.hint == "functions defined in that file: outer"


# --- entrypoint forms and base_dir ---------------------------------------------------------------


def test_nested_base_dir_is_prefixed_to_the_path() -> None:
    files = {"projects/etl/flows/main.py": FLOW, "flows/main.py": "def other(): pass\n"}
    info = read(files, "flows/main.py:main", base_dir="projects/etl")
    assert info.path == "projects/etl/flows/main.py"
    assert info.is_flow


def test_dot_segments_inside_the_repository_are_normalised() -> None:
    files = {"shared/flows.py": FLOW}
    info = read(files, "./../shared//flows.py:main", base_dir="projects/etl/..")
    assert info.path == "shared/flows.py"


def test_backslashes_are_path_separators() -> None:
    info = read({"flows/main.py": FLOW}, "flows\\main.py:main")
    assert info.path == "flows/main.py"


def test_split_on_the_last_colon() -> None:
    info = read({"odd:dir/main.py": FLOW}, "odd:dir/main.py:main")
    assert info.path == "odd:dir/main.py"


def test_module_style_entrypoint_reads_module_file() -> None:
    info = read({"etl/pkg/jobs.py": FLOW}, "pkg.jobs.main", base_dir="etl")
    assert info.path == "etl/pkg/jobs.py"
    assert info.is_flow


def test_module_style_entrypoint_reads_package_init() -> None:
    info = read({"pkg/jobs/__init__.py": FLOW}, "pkg.jobs.main")
    assert info.path == "pkg/jobs/__init__.py"


def test_module_style_prefers_the_package_like_python_imports() -> None:
    files = {"pkg/jobs/__init__.py": FLOW, "pkg/jobs.py": "def main(): pass\n"}
    assert read(files, "pkg.jobs.main").path == "pkg/jobs/__init__.py"


def test_single_module_at_the_root() -> None:
    assert read({"jobs.py": FLOW}, "jobs.main").path == "jobs.py"


# --- entrypoint errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("entrypoint", ["", "   "])
def test_empty_entrypoint(entrypoint: str) -> None:
    error = refused({"flows/main.py": FLOW}, entrypoint)
    assert error.message == "the entrypoint is empty"
    assert error.hint is not None and "path/to/file.py:flow_function" in error.hint


@pytest.mark.parametrize(
    ("entrypoint", "reason"),
    [
        ("flows/main.py:", "the function name is missing"),
        (":main", "the file path before ':' is missing"),
        ("flows/main.py:my-flow", "'my-flow' is not a Python function name"),
        ("flows/main.py:Jobs.run", "'Jobs.run' is not a Python function name"),
        ("flows/main.py:class", "'class' is not a Python function name"),
        ("flows/main.py", "it names a file but not the function inside it"),
        ("main", "neither 'file.py:function' nor 'module.function'"),
        ("flows/main.run", "neither 'file.py:function' nor 'module.function'"),
        ("pkg..main", "neither 'file.py:function' nor 'module.function'"),
        ("pkg.main.", "the function name is missing"),
    ],
)
def test_malformed_entrypoints(entrypoint: str, reason: str) -> None:
    error = refused({"flows/main.py": FLOW}, entrypoint)
    assert error.message.startswith(f"entrypoint '{entrypoint}' is malformed")
    assert reason in error.message


@pytest.mark.parametrize("entrypoint", ["/srv/flows/main.py:main", "C:\\flows\\main.py:main"])
def test_absolute_paths_are_refused(entrypoint: str) -> None:
    error = refused({"flows/main.py": FLOW}, entrypoint)
    assert "absolute path" in error.message
    assert error.hint is not None and "relative" in error.hint


@pytest.mark.parametrize(
    ("base_dir", "entrypoint"),
    [("", "../main.py:main"), ("a/b", "../../../main.py:main"), ("a", "x/../../../y.py:main")],
)
def test_paths_escaping_the_repository_are_refused(base_dir: str, entrypoint: str) -> None:
    error = refused({"a/b/main.py": FLOW}, entrypoint, base_dir=base_dir)
    assert "escapes the repository" in error.message


def test_symlinked_file_is_refused() -> None:
    error = refused(
        {"real.py": FLOW}, "flows/main.py:main", symlinks={"flows/main.py": "../real.py"}
    )
    assert "symbolic link 'flows/main.py'" in error.message
    assert error.hint is not None and "do not follow links" in error.hint


def test_symlinked_directory_on_the_path_is_refused() -> None:
    error = refused(
        {"real/main.py": FLOW}, "etl/flows/main.py:main", symlinks={"etl/flows": "../real"}
    )
    assert "symbolic link 'etl/flows'" in error.message


def test_symlinked_directory_left_by_dot_dot_is_still_refused() -> None:
    error = refused({"main.py": FLOW}, "link/../main.py:main", symlinks={"link": "elsewhere/deep"})
    assert "symbolic link 'link'" in error.message


def test_symlink_in_module_style_is_refused() -> None:
    error = refused({"real/jobs.py": FLOW}, "pkg.jobs.main", symlinks={"pkg": "real"})
    assert "symbolic link 'pkg'" in error.message


def test_missing_file_names_the_repository_path_looked_for() -> None:
    error = refused({"etl/flows/other.py": FLOW}, "flows/main.py:main", base_dir="etl")
    assert error.message == "entrypoint file 'etl/flows/main.py' not found in the repository"
    assert error.hint is not None and "'etl'" in error.hint


def test_missing_module_names_both_candidates() -> None:
    error = refused({"x.py": FLOW}, "pkg.jobs.main")
    assert "'pkg/jobs/__init__.py' or 'pkg/jobs.py' not found" in error.message
    assert error.hint is not None and "repository root" in error.hint


class SubmoduleSnapshot(MemorySnapshot):
    """A snapshot where `vendor` is a submodule, as a git tree can have."""

    def kind(self, path: str) -> PathKind | None:
        return PathKind.OTHER if path == "vendor" else super().kind(path)


def test_submodule_is_refused() -> None:
    with pytest.raises(EntrypointError) as caught:
        read_flow(SubmoduleSnapshot({}), "", "vendor:main")
    assert "'vendor' is not a regular committed file" in caught.value.message


def test_directory_is_refused() -> None:
    error = refused({"flows/main.py/inner.py": FLOW}, "flows/main.py:main")
    assert error.message == "entrypoint file 'flows/main.py' is a directory, not a Python file"


# --- file content errors -------------------------------------------------------------------------


def test_invalid_utf8_is_refused_with_its_line() -> None:
    error = refused({"f.py": b"x = 1\ny = '\xff'\n"}, "f.py:main")
    assert error.message == "flow file 'f.py' is not valid UTF-8 (first bad byte on line 2)"


def test_utf8_byte_order_mark_is_accepted() -> None:
    info = read({"f.py": b"\xef\xbb\xbf" + FLOW.encode()}, "f.py:main")
    assert info.is_flow


def test_syntax_error_reports_line_and_parser_message() -> None:
    error = refused({"f.py": "from prefect import flow\n\ndef main(:\n    pass\n"}, "f.py:main")
    assert error.message.startswith("flow file 'f.py' has a Python syntax error on line 3: ")
    assert "invalid syntax" in error.message


def test_null_bytes_are_refused() -> None:
    error = refused({"f.py": b"def main():\x00 pass\n"}, "f.py:main")
    assert error.message.startswith("flow file 'f.py' ")


@pytest.mark.parametrize(
    "expression", ["-" * 100_000 + "1", "+".join(["1"] * 200_000)], ids=["nested", "long"]
)
def test_expressions_the_parser_cannot_handle_are_refused(expression: str) -> None:
    error = refused({"f.py": f"x = {expression}\n"}, "f.py:main")
    # The parser's limits differ between Python versions; either way the user gets a message.
    assert error.message.startswith("flow file 'f.py' ")


def test_oversized_file_is_refused() -> None:
    big = FLOW + "#" * MAX_FLOW_FILE_BYTES
    error = refused({"f.py": big}, "f.py:main")
    assert "the limit is 5242880 bytes" in error.message


# --- the named object ----------------------------------------------------------------------------


def test_missing_function_suggests_a_close_name() -> None:
    error = refused({"f.py": FLOW + "\ndef helper():\n    pass\n"}, "f.py:mian")
    assert error.message == "function 'mian' not found at the top level of 'f.py'"
    assert error.hint == "did you mean 'main'?"


def test_file_without_functions_says_so() -> None:
    error = refused({"f.py": "x = 1\n"}, "f.py:main")
    assert error.hint == "that file defines no top-level functions"


def test_class_is_refused() -> None:
    error = refused({"f.py": "class main:\n    pass\n"}, "f.py:main")
    assert error.message == "'main' in 'f.py' is a class, not a function"


@pytest.mark.parametrize(
    "assignment",
    ["main = flow(run)", "main: object = flow(run)", "main, other = flow(run), 1", "main += 1"],
)
def test_variable_is_refused(assignment: str) -> None:
    text = f"from prefect import flow\n\ndef run():\n    pass\n\n{assignment}\n"
    error = refused({"f.py": text}, "f.py:main")
    assert error.message == "'main' in 'f.py' is a variable, not a function defined with 'def'"
    assert error.hint is not None and "x = flow(fn)" in error.hint


def test_imported_name_is_refused() -> None:
    error = refused({"f.py": "from .jobs import main\n"}, "f.py:main")
    assert "'main' is imported into 'f.py' from another module" in error.message


# --- parameter schema ----------------------------------------------------------------------------


def test_parameter_schema_shape_for_a_sample_signature() -> None:
    info = read_one(
        """
        from typing import List, Optional
        from prefect import flow

        @flow
        def main(source: str, retries: int = 3, ratio: float = 0.5, dry_run: bool = False,
                 tags: List[str] = ["a"], options: dict = {"k": 1}, limit: Optional[int] = None,
                 anything=None):
            pass
        """
    )
    assert info.parameter_schema == {
        "title": "Parameters",
        "type": "object",
        "properties": {
            "source": {"title": "source", "position": 0, "type": "string"},
            "retries": {"title": "retries", "position": 1, "type": "integer", "default": 3},
            "ratio": {"title": "ratio", "position": 2, "type": "number", "default": 0.5},
            "dry_run": {"title": "dry_run", "position": 3, "type": "boolean", "default": False},
            "tags": {
                "title": "tags",
                "position": 4,
                "type": "array",
                "items": {"type": "string"},
                "default": ["a"],
            },
            "options": {
                "title": "options",
                "position": 5,
                "type": "object",
                "additionalProperties": True,
                "default": {"k": 1},
            },
            "limit": {
                "title": "limit",
                "position": 6,
                "anyOf": [{"type": "integer"}, {"type": "null"}],
                "default": None,
            },
            "anything": {"title": "anything", "position": 7, "default": None},
        },
        "required": ["source"],
        "definitions": {},
    }
    assert not info.accepts_any_parameter


def test_required_covers_positional_only_regular_and_keyword_only() -> None:
    info = read_one(
        """
        def main(a, b=1, /, c=2, d=3, *, e, f=4):
            pass
        """
    )
    schema = info.parameter_schema
    assert schema["required"] == ["a", "e"]
    assert {name: prop.get("default") for name, prop in schema["properties"].items()} == {
        "a": None,
        "b": 1,
        "c": 2,
        "d": 3,
        "e": None,
        "f": 4,
    }


def test_variadic_parameters_are_listed_as_optional_list_and_mapping() -> None:
    """As Prefect's schema does: *args an array defaulting to [], **kwargs an open object."""
    info = read_one(
        """
        def main(a, *args, b, **kwargs):
            pass
        """
    )
    properties = info.parameter_schema["properties"]
    assert {name: prop["position"] for name, prop in properties.items()} == {
        "a": 0,
        "args": 1,
        "b": 2,
        "kwargs": 3,
    }
    assert properties["args"] == {
        "title": "args",
        "position": 1,
        "type": "array",
        "items": {},
        "default": [],
    }
    assert properties["kwargs"] == {
        "title": "kwargs",
        "position": 3,
        "type": "object",
        "additionalProperties": True,
        "default": {},
    }
    assert info.parameter_schema["required"] == ["a", "b"]
    assert info.accepts_any_parameter


def test_self_is_skipped() -> None:
    info = read_one(
        """
        def main(self, x: int):
            pass
        """
    )
    assert info.parameter_schema["properties"] == {
        "x": {"title": "x", "position": 0, "type": "integer"}
    }
    assert info.parameter_schema["required"] == ["x"]


def test_non_literal_default_is_omitted_but_not_required() -> None:
    info = read_one(
        """
        import datetime

        def main(when: str = datetime.date.today().isoformat(), items=(1, 2), raw=b"x",
                 unique={1, 2}, keyed={1: "a"}, nested=[b"x"]):
            pass
        """
    )
    props = info.parameter_schema["properties"]
    assert props["when"] == {"title": "when", "position": 0, "type": "string"}
    assert props["items"]["default"] == [1, 2]
    # As pydantic dumps them: bytes as UTF-8 text, a set as a list.
    assert props["raw"]["default"] == "x" and props["nested"]["default"] == ["x"]
    assert props["unique"]["default"] == [1, 2]
    assert "default" not in props["keyed"]  # a mapping with non-string keys
    assert info.parameter_schema["required"] == []


def test_negative_and_nested_literals_are_defaults() -> None:
    info = read_one(
        """
        def main(offset: int = -1, config: dict = {"a": [1, (2, 3)], "b": None}):
            pass
        """
    )
    props = info.parameter_schema["properties"]
    assert props["offset"]["default"] == -1
    assert props["config"]["default"] == {"a": [1, [2, 3]], "b": None}


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("int", {"type": "integer"}),
        ("list", {"type": "array", "items": {}}),
        ("list[int]", {"type": "array", "items": {"type": "integer"}}),
        ("list[Widget]", {"type": "array", "items": {}}),
        ("typing.List[bool]", {"type": "array", "items": {"type": "boolean"}}),
        ("t.Dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
        (
            "dict[str, list[int]]",
            {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "integer"}},
            },
        ),
        ("dict[str, Widget]", {"type": "object", "additionalProperties": True}),
        ("t.Optional[str]", {"anyOf": [{"type": "string"}, {"type": "null"}]}),
        ("int | None", {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        ("None | int", {"anyOf": [{"type": "null"}, {"type": "integer"}]}),
        (
            "Union[int, str, None]",
            {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        ),
        (
            "Optional[int | str]",
            {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        ),
        (
            "list[Optional[int]]",
            {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
        ),
        ("'int'", {"type": "integer"}),
        ("'Optional[float]'", {"anyOf": [{"type": "number"}, {"type": "null"}]}),
        ("'not valid ['", {}),
        ("Widget", {}),
        ("Optional[Widget]", {}),
        ("Widget | None", {}),
        ("datetime.date", {"type": "string", "format": "date"}),
        ("mytypes.List[int]", {}),
        ("mytypes.Date", {}),
        ("Literal['a', 'b']", {"type": "string", "enum": ["a", "b"]}),
    ],
)
def test_annotation_mapping(annotation: str, expected: dict[str, object]) -> None:
    info = read_one(
        f"""
        import typing
        import typing as t
        import datetime
        import mytypes
        from typing import Literal, Optional, Union

        def main(x: {annotation}):
            pass
        """
    )
    assert info.parameter_schema["properties"]["x"] == {"title": "x", "position": 0, **expected}


def test_no_parameters_gives_an_empty_schema() -> None:
    info = read_one(
        """
        def main():
            pass
        """
    )
    assert info.parameter_schema == {
        "title": "Parameters",
        "type": "object",
        "properties": {},
        "required": [],
        "definitions": {},
    }


def test_reading_does_not_execute_the_file() -> None:
    info = read_one(
        """
        raise SystemExit("this must never run")

        def main(x: int = 1):
            pass
        """
    )
    assert info.parameter_schema["properties"]["x"]["default"] == 1


def test_classes_imported_from_elsewhere_accept_anything() -> None:
    """A deliberate difference: Prefect imports such a class and may describe it; we do not
    import, so the parameter takes any value (Prefect's schema for a type it cannot describe)."""
    info = read_one(
        """
        from mypackage.models import Settings, Mode

        def main(settings: Settings, mode: Mode = Mode.FAST, many: list[Settings] = []):
            pass
        """
    )
    props = info.parameter_schema["properties"]
    assert props["settings"] == {"title": "settings", "position": 0}
    assert props["mode"] == {"title": "mode", "position": 1}
    assert props["many"] == {
        "title": "many",
        "position": 2,
        "type": "array",
        "items": {},
        "default": [],
    }
    assert info.parameter_schema["definitions"] == {}
