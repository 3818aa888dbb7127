"""`run_shell_script`, `set_working_directory` and `pip_install_requirements` (design notes:
docs/design-notes.md#builtin-steps), run for real: no shell unless asked, one process per line, pip
offline."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from reconciler.steps.runner import StepFailed
from tests.steps.conftest import Steps

SHELL = "prefect.deployments.steps.run_shell_script"


def shell_step(script: str, **options: str) -> str:
    extra = "".join(f"\n      {key}: {value}" for key, value in options.items())
    return f"build:\n  - {SHELL}:\n      id: sh\n      script: {script}{extra}\n"


# --- run_shell_script ----------------------------------------------------------------------


def test_without_shell_a_semicolon_is_an_argument_not_a_command(steps: Steps) -> None:
    outputs = steps.run(shell_step("'echo hello; touch pwned'"))
    assert outputs["stdout"] == "hello; touch pwned"
    assert not (steps.cwd / "pwned").exists()


def test_without_shell_command_substitution_is_passed_literally(steps: Steps) -> None:
    outputs = steps.run(shell_step("'echo $(touch pwned) `touch pwned2`'"))
    assert outputs["stdout"] == "$(touch pwned) `touch pwned2`"
    assert not (steps.cwd / "pwned").exists()
    assert not (steps.cwd / "pwned2").exists()


def test_a_templated_value_never_reaches_a_shell(steps: Steps) -> None:
    steps.env["BRANCH"] = "main; touch pwned"
    outputs = steps.run(shell_step('"echo {{ $BRANCH }}"'))
    assert outputs["stdout"] == "main; touch pwned"
    assert not (steps.cwd / "pwned").exists()


def test_shell_true_runs_the_line_in_a_shell(steps: Steps) -> None:
    outputs = steps.run(shell_step("'echo one && touch created'", shell="true"))
    assert outputs["stdout"] == "one"
    assert (steps.cwd / "created").exists()


def test_each_line_is_its_own_process(steps: Steps) -> None:
    script = '|\n        export A=set\n        echo "[$A]"\n        echo second'
    outputs = steps.run(shell_step(script, shell="true"))
    assert outputs["stdout"] == "[]\nsecond"


def test_expand_env_vars_uses_the_step_env(steps: Steps) -> None:
    expanded = steps.run(
        shell_step("'echo $NAME-${NAME}'", expand_env_vars="true", env="{NAME: world}")
    )
    assert expanded["stdout"] == "world-world"
    literal = steps.run(shell_step("'echo $NAME'", env="{NAME: world}"))
    assert literal["stdout"] == "$NAME"


def test_env_reaches_the_process_and_stderr_is_captured(steps: Steps) -> None:
    outputs = steps.run(shell_step("'sh -c \"echo $COLOR >&2\"'", env="{COLOR: blue}"))
    assert outputs == {"sh": {"stdout": "", "stderr": "blue"}, "stdout": "", "stderr": "blue"}
    assert "[sh] blue" in steps.lines


def test_directory_is_relative_to_the_working_directory(steps: Steps) -> None:
    (steps.cwd / "sub").mkdir()
    (steps.cwd / "sub" / "inside").write_text("")
    assert steps.run(shell_step("ls", directory="sub"))["stdout"] == "inside"


def test_stream_output_false_hides_lines_but_errors_still_quote_them(steps: Steps) -> None:
    with pytest.raises(StepFailed) as caught:
        steps.run(shell_step("\"sh -c 'echo quiet-line; exit 2'\"", stream_output="false"))
    assert not any("quiet-line" in line for line in steps.lines)
    assert "  | quiet-line" in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_program_that_does_not_exist_is_named(steps: Steps) -> None:
    with pytest.raises(StepFailed, match="cannot run 'no-such-program-here'"):
        steps.run(shell_step("no-such-program-here --flag"))


def test_unbalanced_quotes_suggest_shell_true(steps: Steps) -> None:
    with pytest.raises(StepFailed, match="cannot split the command") as caught:
        steps.run(shell_step("'echo \"open'"))
    assert "shell: true" in (caught.value.hint or "")


# --- set_working_directory -----------------------------------------------------------------


def test_set_working_directory_moves_later_steps_not_the_reconciler(steps: Steps) -> None:
    (steps.cwd / "a" / "b").mkdir(parents=True)
    outputs = steps.run(
        f"""
        build:
          - prefect.deployments.steps.set_working_directory:
              directory: a
          - prefect.deployments.steps.pull.set_working_directory:
              id: where
              directory: b
          - {SHELL}:
              script: pwd
        """
    )
    target = str(steps.cwd / "a" / "b")
    assert outputs["where"] == {"directory": target}
    assert outputs["directory"] == target
    assert outputs["stdout"] == target
    assert os.getcwd() != target


def test_set_working_directory_to_a_missing_directory_fails(steps: Steps) -> None:
    text = "build:\n  - prefect.deployments.steps.set_working_directory:\n      directory: nope\n"
    with pytest.raises(StepFailed, match="cannot change the working directory to 'nope'"):
        steps.run(text)


# --- pip_install_requirements --------------------------------------------------------------

PIP = "prefect.deployments.steps.pip_install_requirements"


@pytest.fixture
def offline_pip(steps: Steps, tmp_path: Path) -> Path:
    """pip never reaches a network index, and installs into a directory of the test."""
    target = tmp_path / "site"
    steps.env.update(PIP_NO_INDEX="1", PIP_TARGET=str(target), PIP_DISABLE_PIP_VERSION_CHECK="1")
    return target


def test_a_requirement_that_does_not_exist_fails_with_pips_reason(
    steps: Steps, offline_pip: Path
) -> None:
    (steps.cwd / "requirements.txt").write_text("surely-not-a-package-zz9\n")
    with pytest.raises(StepFailed) as caught:
        steps.run(f"build:\n  - {PIP}:\n      id: deps\n")
    message = str(caught.value)
    assert '"deps" (pip_install_requirements) failed with exit code 1' in message
    assert "No matching distribution found for surely-not-a-package-zz9" in message


def test_a_local_package_is_installed_from_the_requirements_file(
    steps: Steps, offline_pip: Path
) -> None:
    project = steps.cwd / "project"
    project.mkdir()
    with zipfile.ZipFile(project / "localdep-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("localdep.py", "VALUE = 1\n")
        wheel.writestr(
            "localdep-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: localdep\nVersion: 1.0\n",
        )
        wheel.writestr(
            "localdep-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr("localdep-1.0.dist-info/RECORD", "")
    (project / "deps.txt").write_text("./localdep-1.0-py3-none-any.whl\n")
    outputs = steps.run(
        f"build:\n  - {PIP}:\n      directory: project\n      requirements_file: deps.txt\n"
    )
    assert "Successfully installed localdep-1.0" in outputs["stdout"]
    assert (offline_pip / "localdep.py").read_text() == "VALUE = 1\n"


def test_a_missing_requirements_file_is_reported_before_pip_runs(steps: Steps) -> None:
    with pytest.raises(StepFailed, match=r"the requirements file 'requirements\.txt' does not"):
        steps.run(f"build:\n  - {PIP}: {{}}\n")
    assert not any("$ " in line for line in steps.lines)
