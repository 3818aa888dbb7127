"""Usage errors exit 1, never 2 (which --detailed-exitcode reserves for "the plan has changes")."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import CliResult

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dry-run", "--detailed-exitcode", "--bogus"], "No such option '--bogus'"),
        (["--output", "yaml", "--dry-run"], "Invalid value for '--output'"),
        (["deployment", "inspect"], "Missing argument"),
        (["work-pool", "frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_usage_errors_exit_1_with_the_reason(
    run_cli: Callable[..., CliResult], args: list[str], expected: str
) -> None:
    result = run_cli(*args)
    assert result.code == 1, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_help_and_version_exit_0(run_cli: Callable[..., CliResult]) -> None:
    assert run_cli("--help").code == 0
    version = run_cli("--version")
    assert version.code == 0 and "reconcile" in version.stdout
