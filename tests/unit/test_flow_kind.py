"""Which entrypoints Prefect's engine runs (a function decorated with Prefect's @flow), read
with ast from the file the worker fetched, and whether the file can do without prefect."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.worker.flow_kind import FlowKind, inspect_entrypoint


@pytest.mark.parametrize(
    ("source", "kind", "imports", "optional"),
    [
        ("from prefect import flow\n\n@flow\ndef main(): ...\n", "prefect", 1, 0),
        ("from prefect import flow\n\n@flow(name='x')\ndef main(): ...\n", "prefect", 1, 0),
        ("from prefect import flow as f\n\n@f(retries=2)\ndef main(): ...\n", "prefect", 1, 0),
        ("import prefect\n\n@prefect.flow\ndef main(): ...\n", "prefect", 1, 0),
        ("import prefect as pf\n\n@pf.flow()\ndef main(): ...\n", "prefect", 1, 0),
        ("from prefect.flows import flow\n\n@flow\ndef main(): ...\n", "prefect", 1, 0),
        ("async def main(): ...\n", "plain", 0, 0),
        ("from prefect import task\n\ndef main(): ...\n", "plain", 1, 0),
        ("from prefect import flow\n\n@flow\ndef other(): ...\n\ndef main(): ...\n", "plain", 1, 0),
        ("def flow(f): return f\n\n@flow\ndef main(): ...\n", "plain", 0, 0),
        (
            "try:\n    from prefect import flow\nexcept ImportError:\n"
            "    def flow(f): return f\n\n@flow\ndef main(): ...\n",
            "prefect",
            1,
            1,
        ),
        (
            "try:\n    from prefect import flow\nexcept (ModuleNotFoundError, OSError):\n"
            "    flow = None\nimport prefect.variables\n\n@flow\ndef main(): ...\n",
            "prefect",
            1,
            0,
        ),
        ("this is not python(\n", "plain", 0, 0),
    ],
)
def test_the_kind_of_an_entrypoint(
    tmp_path: Path, source: str, kind: str, imports: int, optional: int
) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "main.py").write_text(source)
    info = inspect_entrypoint("flows/main.py:main", tmp_path)
    assert info.kind is FlowKind(kind)
    assert info.imports_prefect is bool(imports)
    assert info.prefect_optional is bool(optional)


def test_module_path_entrypoints_are_found_under_the_flow_directory(tmp_path: Path) -> None:
    package = tmp_path / "pkg" / "jobs"
    package.mkdir(parents=True)
    (package / "nightly.py").write_text("from prefect import flow\n\n@flow\ndef run(): ...\n")
    (tmp_path / "pkg" / "__init__.py").write_text("")
    assert inspect_entrypoint("pkg.jobs.nightly.run", tmp_path).kind is FlowKind.PREFECT_FLOW
    missing = inspect_entrypoint("installed.module.run", tmp_path)
    assert missing.kind is FlowKind.PLAIN and missing.source is None
