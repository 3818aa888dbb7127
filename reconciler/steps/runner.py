"""Run build, push and pull steps with Prefect's semantics (docs/design-notes.md#step-runner).

Steps run during apply, after the plan, never during a dry-run: planning only checks their
names. For each step, in order: its inputs are templated (upstream outputs, then blocks, then
variables, then the environment), its function is found (a registered step, or an importable
dotted name), called with the inputs as keyword arguments, and its output is kept under the
step's id and merged flat into the outputs of the run. The first failure stops the run with
`StepFailed`, which names the step's file:line, id and name, the exit code and the last lines
of its output, with every secret masked.

Step functions take keyword arguments. One that declares a keyword-only `context` parameter
gets the `StepContext`; any other runs with the process's working directory set to the
context's for the call, and what it prints becomes the step's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import inspect
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.core.diagnostics import Location
from reconciler.core.errors import UserError
from reconciler.core.masking import strings_in
from reconciler.model.specs import StepSpec
from reconciler.prefect_rules.templating import (
    BlockLookup,
    TemplateError,
    TemplatePath,
    apply_values,
    resolve_blocks,
    resolve_variables,
)
from reconciler.prefect_rules.validation import did_you_mean
from reconciler.prefect_rules.yamlload import Path as StepPath
from reconciler.steps.builtin import BUILTIN_FUNCTIONS
from reconciler.steps.context import StepContext, StepError
from reconciler.steps.pip import install_packages
from reconciler.steps.spec import (
    PlacedStep,
    is_dotted_name,
    is_prefect_step,
    prefect_name_problem,
)

StepFunction = Callable[..., Any]

_REGISTRY: dict[str, StepFunction] = dict(BUILTIN_FUNCTIONS)
_CONTEXT_PARAMETER = "context"


def register(name: str, function: StepFunction) -> None:
    """Run `function` for steps named `name` (a fully qualified name, such as
    `prefect_docker.deployments.steps.build_docker_image`)."""
    _REGISTRY[name] = function


def registered_steps() -> dict[str, StepFunction]:
    """A copy of the registry: every step name reconciler runs natively."""
    return dict(_REGISTRY)


def _no_blocks(slug: str, name: str) -> None:
    return None


@dataclass(frozen=True)
class TemplateValues:
    """Variables and blocks that step inputs may refer to, read from the store beforehand."""

    variables: Mapping[str, Any] = field(default_factory=dict)
    blocks: BlockLookup = _no_blocks


class Locator(Protocol):
    """Where a step (or a value inside it) was written: the loaded file at plan and apply
    time, the positions stored with a deployment on a worker (reconciler/worker/flow_code.py)."""

    def location(self, path: StepPath) -> Location: ...


class StepFailed(UserError):
    """A step failed: nothing after it ran. The message is already masked."""

    def __init__(
        self,
        *,
        location: Location,
        step: StepSpec,
        reason: str,
        exit_code: int | None = None,
        last_lines: Sequence[str] = (),
        hint: str | None = None,
    ) -> None:
        self.location = location
        self.step_name = step.name
        self.step_id = step.id
        self.reason = reason
        self.exit_code = exit_code
        self.last_lines = tuple(last_lines)
        super().__init__(
            _failure_message(location, step, reason, exit_code, self.last_lines),
            hint or "fix the step (or what it runs), then run reconcile again",
        )


def _failure_message(
    location: Location,
    step: StepSpec,
    reason: str,
    exit_code: int | None,
    last_lines: Sequence[str],
) -> str:
    who = f'"{step.id}" ({step.short_name})' if step.id else step.short_name
    code = f" with exit code {exit_code}" if exit_code is not None else ""
    text = f"{location}: step {who} failed{code}: {reason}"
    if last_lines:
        text += "\nlast lines of its output:\n" + "\n".join(f"  | {line}" for line in last_lines)
    return text


def render_inputs(
    step: StepSpec,
    outputs: Mapping[str, Any],
    values: TemplateValues,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """The step's keyword arguments, templated as Prefect's `run_step` does: upstream outputs
    (a missing whole-value placeholder drops its key), then blocks, then variables, then the
    environment. Raises TemplateError (a block that does not exist, a bad key path)."""
    rendered = apply_values(step.kwargs, outputs, environ=environ)
    rendered = resolve_blocks(rendered, values.blocks)
    rendered = resolve_variables(rendered, values.variables)
    rendered = apply_values(rendered, environ, environ=environ)
    result: dict[str, Any] = copy.deepcopy(rendered)
    return result


def merge_output(outputs: dict[str, Any], step: StepSpec, output: Mapping[str, Any] | None) -> None:
    """Keep `output` under the step's id, then merge it flat (a later step's `directory` or
    `image` replaces an earlier one), as Prefect does."""
    if output is None:
        return
    if step.id:
        outputs[step.id] = dict(output)
    outputs.update(output)


def run_steps(
    steps: Sequence[PlacedStep],
    document: Locator,
    context: StepContext,
    *,
    values: TemplateValues | None = None,
    outputs: Mapping[str, Any] | None = None,
    allow_install: bool = False,
    registry: Mapping[str, StepFunction] | None = None,
) -> dict[str, Any]:
    """Run `steps` (written where `document` says) in order; returns every output accumulated,
    including the initial `outputs`. Raises StepFailed at the first failure."""
    accumulated = dict(outputs or {})
    for placed in steps:
        output = run_step(
            placed,
            document,
            context,
            values=values,
            outputs=accumulated,
            allow_install=allow_install,
            registry=registry,
        )
        merge_output(accumulated, placed.step, output)
    return accumulated


def run_step(
    placed: PlacedStep,
    document: Locator,
    context: StepContext,
    *,
    values: TemplateValues | None = None,
    outputs: Mapping[str, Any],
    allow_install: bool = False,
    registry: Mapping[str, StepFunction] | None = None,
) -> dict[str, Any] | None:
    """Run one step; returns its own output (None when it returned no mapping)."""
    step = placed.step
    output = context.open_output(step.id or step.short_name)
    if not step.name.endswith(_SELF_REPORTING):  # these say what they did in one line
        output.note(f"> running {step.name}")
    try:
        inputs = render_inputs(step, outputs, _hiding_blocks(values, context), context.env)
    except TemplateError as exc:
        where = (*placed.path, step.name, *exc.path)
        raise _failure(placed, document, context, StepError(exc.message), where) from exc
    try:
        function = _function_for(step, registry or _REGISTRY, allow_install, context)
        output = _call(step, function, inputs, context)
    except StepError as exc:
        raise _failure(placed, document, context, exc) from exc
    except Exception as exc:
        reason = StepError(f"{type(exc).__name__}: {exc}")
        raise _failure(placed, document, context, reason) from exc
    return dict(output) if isinstance(output, Mapping) else None


def _hiding_blocks(values: TemplateValues | None, context: StepContext) -> TemplateValues:
    """The values, with every string of each block read from then on masked in the output."""
    values = values or TemplateValues()
    lookup = values.blocks

    def masked_lookup(slug: str, name: str) -> Any | None:
        data = lookup(slug, name)
        if data is not None:
            context.hide(*strings_in(data))
        return data

    return dataclasses.replace(values, blocks=masked_lookup)


_SELF_REPORTING = (".git_clone", ".agit_clone")


def _failure(
    placed: PlacedStep,
    document: Locator,
    context: StepContext,
    error: StepError,
    where: TemplatePath | None = None,
) -> StepFailed:
    return StepFailed(
        location=document.location(where or placed.path),
        step=placed.step,
        reason=context.mask(error.message),
        exit_code=error.exit_code,
        last_lines=context.output.last_lines(),
        hint=context.mask(error.hint) if error.hint else None,
    )


# --- finding the function ------------------------------------------------------------------


def _function_for(
    step: StepSpec,
    registry: Mapping[str, StepFunction],
    allow_install: bool,
    context: StepContext,
) -> StepFunction:
    """The step's function: ours for Prefect's exact names, else imported like any user step,
    after installing its `requires` when one of them (or the function) cannot be imported, as
    Prefect's `run_step` does."""
    if step.name in registry:
        return registry[step.name]
    if is_prefect_step(step.name):
        raise StepError(
            f'the step "{step.name}" is not supported yet',
            hint="copy the files with `run_shell_script` (for example with the provider's "
            "command line tool) or a custom step until reconciler supports it",
        )
    if not is_dotted_name(step.name):
        raise StepError(
            f'unknown step "{step.name}": a step is named by the dotted path of its function',
            hint=did_you_mean(step.name, registry),
        )
    problem = prefect_name_problem(step.name)
    if problem:
        raise StepError(problem.message, hint=problem.hint)
    missing = _missing_requirements(step.requires)
    if not missing:
        try:
            return _import_function(step.name)
        except ImportError as exc:
            if not step.requires:
                raise _import_failure(step, exc, registry) from exc
    return _install_then_import(step, allow_install, context, registry)


def _missing_requirements(requires: Sequence[str]) -> list[str]:
    """The `requires` whose module (the name without its version, `-` read as `_`) is not
    importable: Prefect installs them all when any one is missing."""
    return [package for package in requires if package.strip() and not _importable(package)]


def _importable(requirement: str) -> bool:
    """Whether the requirement's module is importable; a requirement that names no module
    (a URL, a path) is not, so it gets installed, as in Prefect."""
    try:
        return importlib.util.find_spec(_module_of(requirement)) is not None
    except (ImportError, ValueError):
        return False


def _module_of(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].replace("-", "_")


def _import_function(name: str) -> StepFunction:
    module_name, _, attribute = name.rpartition(".")
    module = importlib.import_module(module_name)
    function = getattr(module, attribute, None)
    if function is None:
        raise ImportError(f"module {module_name!r} has no attribute {attribute!r}")
    if not callable(function):
        raise StepError(f'"{name}" is not a function, so it cannot be a step')
    return function  # type: ignore[no-any-return]


def _this_python() -> str:
    return f"{sys.executable} (Python {platform.python_version()})"


def _import_failure(
    step: StepSpec, exc: ImportError, registry: Mapping[str, StepFunction]
) -> StepError:
    module_name = step.name.rpartition(".")[0]
    return StepError(
        f'cannot import the step "{step.name}": module "{module_name}" cannot be imported by '
        f"{_this_python()}: {exc}",
        hint=did_you_mean(step.name, registry)
        or "install the package that provides it into that Python, or list it under `requires:`",
    )


def _install_then_import(
    step: StepSpec,
    allow_install: bool,
    context: StepContext,
    registry: Mapping[str, StepFunction],
) -> StepFunction:
    packages = ", ".join(step.requires)
    if not allow_install:
        raise StepError(
            f'the step "{step.name}" (or what it requires) cannot be imported by '
            f"{_this_python()}; it requires {packages}, which reconcile installs only when asked",
            hint="install them yourself, or pass --allow-install to let reconcile install them "
            "with pip",
        )
    context.output.note(f"cannot import {step.name} or its requirements: installing {packages}")
    install_failed: StepError | None = None
    try:
        install_packages(step.requires, context)
    except StepError as exc:  # as Prefect: the step may still import
        install_failed = exc
        context.output.note(f"{exc.message}; trying to import {step.name} all the same")
    importlib.invalidate_caches()
    try:
        return _import_function(step.name)
    except ImportError as exc:
        failure = _import_failure(step, exc, registry)
        if install_failed is not None:
            raise StepError(
                f"{install_failed.message}, so {failure.message}",
                exit_code=install_failed.exit_code,
                hint=install_failed.hint,
            ) from exc
        raise StepError(
            f"installed {packages}, but {failure.message}",
            hint="check the step's name and that `requires` names the package providing it",
        ) from exc


# --- calling it ----------------------------------------------------------------------------


def _takes_context(function: StepFunction) -> bool:
    parameter = (_parameters(function) or {}).get(_CONTEXT_PARAMETER)
    return parameter is not None and parameter.kind is inspect.Parameter.KEYWORD_ONLY


def _parameters(function: StepFunction) -> Mapping[str, inspect.Parameter] | None:
    """None when the callable has no signature to read (some built-in callables)."""
    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None


def _call(
    step: StepSpec, function: StepFunction, inputs: dict[str, Any], context: StepContext
) -> Any:
    if _takes_context(function):
        _check_arguments(step, function, inputs, hidden=_CONTEXT_PARAMETER)
        return _finish(function(**inputs, context=context))
    _check_arguments(step, function, inputs, hidden=None)
    stream = context.output.as_file()
    with (
        contextlib.chdir(context.cwd),
        contextlib.redirect_stdout(stream),
        contextlib.redirect_stderr(stream),
    ):
        try:
            return _finish(function(**inputs))
        finally:
            stream.flush()


def _finish(result: Any) -> Any:
    """Async step functions are run to completion, as Prefect supports both kinds."""
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def _check_arguments(
    step: StepSpec, function: StepFunction, inputs: Mapping[str, Any], hidden: str | None
) -> None:
    parameters = _parameters(function)
    if parameters is None:
        return
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [name for name, p in parameters.items() if p.kind in kinds and name != hidden]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [
        name for name in inputs if name == hidden or (name not in accepted and not takes_any)
    ]
    missing = [
        name
        for name in accepted
        if parameters[name].default is inspect.Parameter.empty and name not in inputs
    ]
    listing = ", ".join(accepted) or "no arguments"
    if unknown:
        raise StepError(
            f"{step.short_name} does not take {_names(unknown)}; it accepts: {listing}",
            hint=did_you_mean(unknown[0], accepted),
        )
    if missing:
        raise StepError(f"{step.short_name} needs {_names(missing)}; it accepts: {listing}")


def _names(names: Sequence[str]) -> str:
    quoted = ", ".join(f'"{name}"' for name in names)
    return f"the argument{'s' if len(names) > 1 else ''} {quoted}"
