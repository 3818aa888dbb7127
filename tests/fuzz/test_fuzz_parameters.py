"""Generated `deployment run --param/--params` values: in the parser, through the CLI in-process
against a real store (a run with strict-JSON parameters, or exit 1 and the store unchanged),
and a few through the CLI as a subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from reconciler.cli.main import cli
from tests.conftest import CliResult, store_dump
from tests.e2e.helpers import apply_in_process, new_repo, project
from tests.fuzz import strategies as gen
from tests.fuzz.checks import check_run_parameters, strict_json

pytestmark = pytest.mark.fuzz

# Any parameter name is accepted (**extra), so generated values reach the store.
OPEN_FLOW = """\
from prefect import flow


@flow
def ingest(days: int = 1, region: str = "eu", **extra):
    return days
"""

NAMES = st.one_of(st.sampled_from(["days", "region", "ratio", "x", "", "a=b"]), st.text(max_size=6))
ASSIGNMENTS = st.lists(
    st.builds(lambda name, value: f"{name}={value}", NAMES, gen.JSON_TEXTS) | st.text(max_size=10),
    max_size=3,
)


@gen.bounded(150)
@given(ASSIGNMENTS, st.one_of(st.none(), gen.JSON_TEXTS))
def test_parameter_parsing(params: list[str], params_json: str | None) -> None:
    check_run_parameters(params, params_json)


@pytest.fixture(scope="module")
def applied_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("fuzz-params")
    repo = new_repo(root / "repo", project({"flows/etl.py": OPEN_FLOW}))
    url = f"sqlite:///{root / 'state.db'}"
    apply_in_process(url, repo)
    return url


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # what the CLI would print as a traceback
    return result.exit_code, result.output


@gen.bounded(40)
@given(ASSIGNMENTS, st.one_of(st.none(), gen.JSON_TEXTS))
def test_deployment_run_in_process(
    applied_store: str, params: list[str], params_json: str | None
) -> None:
    before = store_dump(applied_store)
    args = ["deployment", "run", "ingest/nightly", "--store", applied_store]
    args += [f"--param={p}" for p in params]
    if params_json is not None:
        args.append(f"--params={params_json}")
    code, output = _invoke(*args)
    assert "Traceback" not in output
    if code != 0:
        assert code == 1 and "error" in output.lower(), output
        assert store_dump(applied_store) == before
        return
    listed_code, listed = _invoke("flow-run", "ls", "-o", "json", "--store", applied_store)
    assert listed_code == 0, listed
    strict_json(listed)


@gen.bounded(3)
@given(st.sampled_from(["ratio=Infinity", "x=-1e999", "x=NaN", "days=" + "[" * 1000]))
def test_deployment_run_as_a_subprocess(
    applied_store: str, run_cli_module: Callable[..., CliResult], param: str
) -> None:
    before = store_dump(applied_store)
    result = run_cli_module(
        "deployment",
        "run",
        "ingest/nightly",
        "--store",
        applied_store,
        "--param",
        param,
        "--params",
        json.dumps({"region": "eu"}),
    )
    assert "Traceback" not in result.output
    if result.code != 0:
        assert result.code == 1, result.output
        assert store_dump(applied_store) == before


@pytest.fixture(scope="module")
def run_cli_module(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., CliResult]:
    """The `run_cli` fixture for module scope (Hypothesis runs many examples per call)."""
    import os
    import subprocess
    import sys

    from tests.conftest import GIT_ENV

    cwd: Path = tmp_path_factory.mktemp("fuzz-cli")

    def run(*args: str) -> CliResult:
        env = {**os.environ, **GIT_ENV, "NO_COLOR": "1"}
        env.pop("RECONCILER_STORE", None)
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    return run
