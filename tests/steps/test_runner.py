"""The step runner (docs/design-notes.md#step-runner): outputs, templating order, failures, masking
and how a step's function is found, with real processes and real imported modules."""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.errors import ReconcilerError
from reconciler.core.masking import MASK
from reconciler.steps import runner
from reconciler.steps.runner import StepFailed, TemplateValues, render_inputs
from tests.steps.conftest import Steps, line_of, load_steps

SHELL = "prefect.deployments.steps.run_shell_script"


# --- outputs -------------------------------------------------------------------------------


def test_outputs_are_kept_under_the_step_id_and_merged_flat(steps: Steps) -> None:
    outputs = steps.run(
        f"""
        build:
          - {SHELL}:
              id: first
              script: echo one
          - prefect.deployments.steps.utility.run_shell_script:
              script: echo two
        """,
        outputs={"initial": "kept"},
    )
    assert outputs == {
        "initial": "kept",
        "first": {"stdout": "one", "stderr": ""},
        "stdout": "two",  # the later step replaced the flat key
        "stderr": "",
    }


def test_a_later_step_reads_an_earlier_output_by_id(steps: Steps) -> None:
    outputs = steps.run(
        f"""
        build:
          - {SHELL}:
              id: get-sha
              script: echo abc123
          - {SHELL}:
              id: tag
              script: echo image:{{{{ get-sha.stdout }}}}
        """
    )
    assert outputs["tag"]["stdout"] == "image:abc123"


def test_output_lines_are_prefixed_with_the_step_id_or_its_short_name(steps: Steps) -> None:
    steps.run(
        f"""
        build:
          - {SHELL}:
              id: say-hello
              script: echo hello
          - {SHELL}:
              script: echo bye
        """
    )
    assert "[say-hello] hello" in steps.lines
    assert "[run_shell_script] bye" in steps.lines


def test_quiet_writes_nothing(steps: Steps) -> None:
    outputs = steps.run(f"build:\n  - {SHELL}:\n      script: echo hello\n", quiet=True)
    assert outputs["stdout"] == "hello"
    assert steps.lines == []


# --- templating order ----------------------------------------------------------------------

TEMPLATED = f"""
build:
  - {SHELL}:
      id: upstream
      script: echo from-upstream
  - {SHELL}:
      id: show
      script: "echo {{{{ upstream.stdout }}}} {{{{ $GREETING }}}} {{{{ prefect.variables.who }}}}"
"""


def test_inputs_take_upstream_outputs_environment_and_variables(steps: Steps) -> None:
    steps.env["GREETING"] = "hello$world"  # a `$` in a value is text, not a variable
    outputs = steps.run(TEMPLATED, values=TemplateValues(variables={"who": "team"}))
    assert outputs["show"]["stdout"] == "from-upstream hello$world team"


def test_a_plain_placeholder_is_not_read_from_the_environment(steps: Steps) -> None:
    # Prefect's first pass drops `{{ GREETING }}` (no upstream output has that name) before
    # the environment pass; only `{{ $GREETING }}` reads the environment.
    steps.env["GREETING"] = "hello"
    outputs = steps.run(f'build:\n  - {SHELL}:\n      script: "echo [{{{{ GREETING }}}}]"\n')
    assert outputs["stdout"] == "[]"


def test_environment_placeholders_inside_a_variable_are_resolved_last(steps: Steps) -> None:
    steps.env["GREETING"] = "hello"
    values = TemplateValues(variables={"message": "{{ GREETING }} and {{ $GREETING }}"})
    outputs = steps.run(
        f'build:\n  - {SHELL}:\n      script: "echo {{{{ prefect.variables.message }}}}"\n',
        values=values,
    )
    assert outputs["stdout"] == "hello and hello"


def test_a_missing_upstream_output_drops_the_argument(steps: Steps) -> None:
    (steps.cwd / "marker").write_text("")
    outputs = steps.run(
        f"""
        build:
          - {SHELL}:
              script: ls
              directory: "{{{{ nothing.directory }}}}"
        """
    )
    assert outputs["stdout"] == "marker"  # ran in the default directory


BLOCK_SECRET = "hunter2-very-secret"


def _secret_blocks(slug: str, name: str) -> Any | None:
    return {"value": BLOCK_SECRET} if (slug, name) == ("secret", "token") else None


def test_a_block_value_is_passed_to_the_step_but_never_shown(steps: Steps) -> None:
    outputs = steps.run(
        f'build:\n  - {SHELL}:\n      script: "echo token={{{{ prefect.blocks.secret.token }}}}"\n',
        values=TemplateValues(blocks=_secret_blocks),
    )
    assert outputs["stdout"] == f"token={BLOCK_SECRET}"  # the step really got it
    assert BLOCK_SECRET not in steps.output
    assert f"[run_shell_script] token={MASK}" in steps.lines


def test_a_block_value_is_masked_in_the_error_of_a_failing_step(steps: Steps) -> None:
    text = f"""
    build:
      - {SHELL}:
          id: leak
          script: "sh -c 'echo using $0; exit 4' {{{{ prefect.blocks.secret.token }}}}"
    """
    with pytest.raises(StepFailed) as caught:
        steps.run(text, values=TemplateValues(blocks=_secret_blocks))
    message = str(caught.value)
    assert f"using {MASK}" in message
    assert BLOCK_SECRET not in message
    assert BLOCK_SECRET not in repr(caught.value.last_lines)
    assert BLOCK_SECRET not in steps.output


def test_a_missing_block_names_the_step_and_the_placeholder(steps: Steps) -> None:
    text = f"""
    build:
      - {SHELL}:
          id: needs-block
          script: "echo {{{{ prefect.blocks.secret.absent }}}}"
    """
    with pytest.raises(StepFailed) as caught:
        steps.run(text)
    message = str(caught.value)
    script_line = line_of(text, "script: ")
    assert message.startswith(f"prefect.yaml:{script_line}:")
    assert '"needs-block" (run_shell_script)' in message
    assert "Block not found: 'absent' of type 'secret'" in message


def test_render_inputs_follows_prefects_order_without_running_anything() -> None:
    (placed,), _ = load_steps(
        """
        build:
          - x.y:
              id: s
              requires: pkg
              a: "{{ up.value }}"
              b: "{{ prefect.variables.v }}"
              c: "{{ $HOME }}"
              d: "{{ gone }}"
        """
    )
    step = placed.step
    rendered = render_inputs(
        step, {"up": {"value": 5}}, TemplateValues(variables={"v": [1]}), {"HOME": "/h"}
    )
    assert rendered == {"a": 5, "b": [1], "c": "/h"}
    # Blocks are resolved before variables: a block placeholder in a variable stays as written.
    later = TemplateValues(variables={"v": "{{ prefect.blocks.s.n }}"})
    assert render_inputs(step, {}, later, {})["b"] == "{{ prefect.blocks.s.n }}"


# --- failures ------------------------------------------------------------------------------

FAILING = f"""
build:
  - {SHELL}:
      id: ok
      script: echo fine
  - {SHELL}:
      id: count-and-fail
      script: "sh -c 'for i in $(seq 1 30); do echo line$i; done; exit 3'"
  - {SHELL}:
      script: touch after-failure
"""


def test_a_failing_command_stops_the_run_and_says_where_and_why(steps: Steps) -> None:
    with pytest.raises(StepFailed) as caught:
        steps.run(FAILING)
    failure = caught.value
    message = str(failure)
    assert isinstance(failure, ReconcilerError)
    assert message.startswith(f"prefect.yaml:{line_of(FAILING, 'count-and-fail') - 1}:")
    assert '"count-and-fail" (run_shell_script)' in message
    assert "exit code 3" in message
    assert failure.exit_code == 3
    assert "  | line30" in message and "  | line11" in message
    assert "  | line10" not in message  # only the last 20 lines
    assert not (steps.cwd / "after-failure").exists()


def test_an_exception_in_a_custom_step_is_a_step_failure(
    steps: Steps, write_module: Callable[[str, str], None]
) -> None:
    write_module("breaking_steps", "def fail():\n    raise ValueError('the custom step broke')\n")
    with pytest.raises(StepFailed) as caught:
        steps.run("build:\n  - breaking_steps.fail: {}\n")
    assert "ValueError: the custom step broke" in str(caught.value)
    assert caught.value.exit_code is None


# --- finding the step ----------------------------------------------------------------------


def test_an_unknown_step_is_refused_with_a_suggestion(steps: Steps) -> None:
    with pytest.raises(StepFailed) as caught:
        steps.run("build:\n  - prefect.deployments.steps.run_shel_script:\n      script: ls\n")
    assert 'unknown step "prefect.deployments.steps.run_shel_script"' in str(caught.value)
    assert caught.value.hint == f'did you mean "{SHELL}"?'


def test_a_name_without_a_module_is_not_a_step(steps: Steps) -> None:
    with pytest.raises(StepFailed, match="a step is named by the dotted path of its function"):
        steps.run("build:\n  - run_shell_script:\n      script: ls\n")


def test_wrong_arguments_list_the_accepted_ones(steps: Steps) -> None:
    with pytest.raises(StepFailed) as caught:
        steps.run(f"build:\n  - {SHELL}:\n      scrpit: ls\n")
    message = str(caught.value)
    assert 'does not take the argument "scrpit"' in message
    assert "it accepts: script, directory, env, stream_output, expand_env_vars, shell" in message
    assert caught.value.hint == 'did you mean "script"?'


def test_a_missing_required_argument_is_named(steps: Steps) -> None:
    with pytest.raises(StepFailed, match='needs the argument "script"'):
        steps.run(f"build:\n  - {SHELL}:\n      directory: .\n")


def test_the_context_cannot_be_set_from_yaml(steps: Steps) -> None:
    with pytest.raises(StepFailed, match='does not take the argument "context"'):
        steps.run(f"build:\n  - {SHELL}:\n      script: ls\n      context: x\n")


@pytest.mark.parametrize(
    "name",
    [
        "prefect_aws.deployments.steps.push_to_s3",
        "prefect_gcp.deployments.steps.pull_from_gcs",
        "prefect_azure.deployments.steps.push_to_azure_blob_storage",
    ],
)
def test_cloud_storage_steps_are_not_supported_yet(steps: Steps, name: str) -> None:
    with pytest.raises(StepFailed, match=f'the step "{name}" is not supported yet'):
        steps.run(f"build:\n  - {name}:\n      bucket: b\n")


def test_a_custom_importable_step_runs_in_the_step_directory(
    steps: Steps, write_module: Callable[[str, str], None]
) -> None:
    write_module(
        "custom_steps",
        """
        import os

        def greet(name, punctuation="!"):
            print(f"greeting {name}")
            return {"greeting": f"hello {name}{punctuation}", "cwd": os.getcwd()}
        """,
    )
    (steps.cwd / "sub").mkdir()
    outputs = steps.run(
        """
        build:
          - prefect.deployments.steps.set_working_directory:
              directory: sub
          - custom_steps.greet:
              id: hi
              name: world
        """
    )
    assert outputs["hi"] == {"greeting": "hello world!", "cwd": str(steps.cwd / "sub")}
    assert "[hi] greeting world" in steps.lines
    assert os.getcwd() != str(steps.cwd / "sub")  # the reconciler's own cwd is unchanged


def test_an_async_custom_step_is_awaited(
    steps: Steps, write_module: Callable[[str, str], None]
) -> None:
    write_module("async_steps", "async def later(value):\n    return {'later': value * 2}\n")
    assert steps.run("build:\n  - async_steps.later:\n      value: 21\n")["later"] == 42


def test_a_custom_step_returning_no_mapping_adds_no_output(
    steps: Steps, write_module: Callable[[str, str], None]
) -> None:
    write_module("plain_steps", "def nothing():\n    return 'ignored'\n")
    assert steps.run("build:\n  - plain_steps.nothing:\n      id: n\n") == {}


def test_a_custom_step_is_checked_against_its_own_signature(
    steps: Steps, write_module: Callable[[str, str], None]
) -> None:
    write_module("strict_steps", "def run():\n    return {}\n")
    with pytest.raises(StepFailed, match='take the argument "extra"; it accepts: no arguments'):
        steps.run("build:\n  - strict_steps.run:\n      extra: 1\n")


def test_requires_are_not_installed_without_allow_install(steps: Steps) -> None:
    text = """
    build:
      - not_installed_anywhere.steps.go:
          requires: not-installed-anywhere>=1.0
    """
    with pytest.raises(StepFailed) as caught:
        steps.run(text)
    assert "it requires not-installed-anywhere>=1.0" in str(caught.value)
    assert "--allow-install" in (caught.value.hint or "")


def _write_wheel(directory: Path) -> None:
    """A tiny wheel providing `tinystep.steps.shout`, for pip to install offline."""
    with zipfile.ZipFile(directory / "tinystep-0.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("tinystep/__init__.py", "")
        wheel.writestr(
            "tinystep/steps.py", "def shout(text):\n    return {'shout': text.upper()}\n"
        )
        info = "tinystep-0.1.dist-info"
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: tinystep\nVersion: 0.1\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")


def test_allow_install_installs_requires_then_runs_the_step(
    steps: Steps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    target.mkdir()
    _write_wheel(wheels)
    steps.env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_TARGET=str(target))
    monkeypatch.syspath_prepend(str(target))
    monkeypatch.delitem(sys.modules, "tinystep", raising=False)
    monkeypatch.delitem(sys.modules, "tinystep.steps", raising=False)
    outputs = steps.run(
        "build:\n  - tinystep.steps.shout:\n      requires: tinystep\n      text: hey\n",
        allow_install=True,
    )
    assert outputs == {"shout": "HEY"}
    assert any("Successfully installed tinystep-0.1" in line for line in steps.lines)
    sys.modules.pop("tinystep.steps", None)
    sys.modules.pop("tinystep", None)


def test_a_registered_step_takes_precedence_and_gets_the_context(
    steps: Steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def build_image(image_name: str, *, context: Any) -> dict[str, str]:
        seen["cwd"] = context.cwd
        context.output.line("building")
        return {"image": f"{image_name}:latest"}

    monkeypatch.setattr(runner, "_REGISTRY", runner.registered_steps())
    runner.register("prefect_docker.deployments.steps.build_docker_image", build_image)
    outputs = steps.run(
        """
        build:
          - prefect_docker.deployments.steps.build_docker_image:
              id: build-image
              requires: prefect-docker>=0.3
              image_name: app
        """
    )
    assert outputs["build-image"] == {"image": "app:latest"}
    assert seen["cwd"] == steps.cwd
    assert "[build-image] building" in steps.lines


def test_a_missing_requirement_is_installed_even_when_the_step_itself_imports(
    steps: Steps,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    write_module: Callable[[str, str], None],
) -> None:
    """As Prefect's `run_step`: every module of `requires` is imported first, and all of
    `requires` is installed when one of them is missing."""
    write_module(
        "uses_tinystep",
        "def run():\n    import tinystep.steps\n    return tinystep.steps.shout(text='ok')\n",
    )
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    target.mkdir()
    _write_wheel(wheels)
    steps.env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_TARGET=str(target))
    monkeypatch.syspath_prepend(str(target))
    monkeypatch.delitem(sys.modules, "tinystep", raising=False)
    monkeypatch.delitem(sys.modules, "tinystep.steps", raising=False)
    outputs = steps.run(
        "build:\n  - uses_tinystep.run:\n      requires: [tinystep>=0.1]\n", allow_install=True
    )
    assert outputs == {"shout": "OK"}
    assert any("Successfully installed tinystep-0.1" in line for line in steps.lines)
    sys.modules.pop("tinystep.steps", None)
    sys.modules.pop("tinystep", None)


def test_a_step_that_cannot_be_imported_names_the_module_and_the_python(steps: Steps) -> None:
    with pytest.raises(StepFailed) as caught:
        steps.run("build:\n  - absent_package_xyz.steps.go: {}\n")
    message = str(caught.value)
    assert 'module "absent_package_xyz.steps" cannot be imported by ' in message
    assert f"{sys.executable} (Python {sys.version.split()[0]})" in message
    assert "No module named 'absent_package_xyz'" in message
