"""Run one flow: the program a worker starts for each run (worker: inside the run's process).

    python -m reconciler.worker.flow_runner [--prefect-engine | --auto] ENTRYPOINT
    python /any/path/flow_runner.py [--prefect-engine | --auto] ENTRYPOINT   (in a container)

ENTRYPOINT is `path/to/file.py:function` (relative to the working directory) or
`package.module.function`. The parameters come as a JSON object in the file named by the
environment variable RECONCILER_FLOW_PARAMETERS_FILE (the environment cannot carry more than
128 KB in one variable); RECONCILER_FLOW_PARAMETERS, the JSON itself, is read when no file is
named. The function is called with them: a plain function works, and so
does a Prefect `@flow` when prefect is installed here (calling it runs it). A coroutine is run
to completion.

`--prefect-engine` (a Prefect flow in a container): Prefect's engine runs the run instead,
in this process (`python -m prefect.engine`, with PREFECT__FLOW_RUN_ID and the API in the
environment), when this Python can import prefect; otherwise the runner says so and exits
with EXIT_NO_PREFECT. Deciding here costs no second container to probe the image.
`--auto` (code built into the image, which the worker could not read): the entrypoint's file
is read with `ast` here (flow_kind.py, copied beside this file) and runs as one of the two.

Exit codes: 0 when the function returned; 1 when it raised (the traceback is printed); 2 when
the entrypoint cannot be loaded (the reason is printed); EXIT_NO_PREFECT when a Prefect flow
meets a Python without prefect; the engine's own code in engine mode. This file imports
nothing from reconciler, so a worker can copy it into any image that has Python.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

PARAMETERS_VARIABLE = "RECONCILER_FLOW_PARAMETERS"
PARAMETERS_FILE_VARIABLE = "RECONCILER_FLOW_PARAMETERS_FILE"
PARAMETERS_FILE_NAME = "parameters.json"
EXIT_FLOW_FAILED = 1
EXIT_CANNOT_LOAD = 2
EXIT_NO_PREFECT = 3
NO_PREFECT_MARKER = "reconciler: prefect cannot be imported"
"""The start of the line printed before EXIT_NO_PREFECT (the worker looks for both)."""
PLAIN_MARKER = "reconciler: not a Prefect flow, calling it as a plain function"
"""The line `--auto` prints when it runs the function itself (the worker takes it out)."""
ENGINE_MODULE = "prefect.engine"


class LoadError(Exception):
    pass


def load_entrypoint(entrypoint: str) -> Any:
    if ":" in entrypoint:
        path_text, _, name = entrypoint.rpartition(":")
        path = Path(path_text)
        if not path.is_file():
            raise LoadError(f"{path_text} does not exist in {Path.cwd()}")
        for directory in (str(Path.cwd()), str(path.resolve().parent)):
            if directory not in sys.path:
                sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location("__flow_module__", path)
        if spec is None or spec.loader is None:
            raise LoadError(f"{path_text} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules["__flow_module__"] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise LoadError(
                f"importing {path_text} failed: {type(exc).__name__}: {exc}\n"
                + traceback.format_exc()
            ) from exc
    else:
        module_name, _, name = entrypoint.rpartition(".")
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise LoadError(
                f"importing {module_name} failed: {type(exc).__name__}: {exc}\n"
                + traceback.format_exc()
            ) from exc
    function = getattr(module, name, None)
    if function is None:
        raise LoadError(f"{entrypoint}: the module has no {name!r}")
    if not callable(function):
        raise LoadError(f"{entrypoint}: {name!r} is not callable")
    return function


def read_parameters() -> dict[str, Any]:
    """The run's parameters: from the file the environment names, else from the environment."""
    path = os.environ.get(PARAMETERS_FILE_VARIABLE)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise LoadError(f"cannot read the parameters file {path}: {exc.strerror}") from exc
        where = path
    else:
        text, where = os.environ.get(PARAMETERS_VARIABLE) or "{}", PARAMETERS_VARIABLE
    parameters = json.loads(text)
    if not isinstance(parameters, dict):
        raise LoadError(f"{where} must hold a JSON object")
    return parameters


def main(argv: list[str]) -> int:
    mode = argv[0] if len(argv) == 2 and argv[0] in ("--prefect-engine", "--auto") else None
    if len(argv) != (1 if mode is None else 2):
        print("usage: flow_runner [--prefect-engine | --auto] ENTRYPOINT", file=sys.stderr)
        return EXIT_CANNOT_LOAD
    entrypoint = argv[-1]
    if mode == "--auto":
        if _is_prefect_flow(entrypoint):
            mode = "--prefect-engine"
        else:
            print(PLAIN_MARKER, flush=True)
    if mode == "--prefect-engine":
        return run_prefect_engine()
    return run_function(entrypoint)


def run_prefect_engine() -> int:
    """`python -m prefect.engine` in this process, or EXIT_NO_PREFECT with the reason."""
    if importlib.util.find_spec("prefect") is None:
        print(
            f"{NO_PREFECT_MARKER} by {sys.executable} (Python "
            f"{sys.version_info.major}.{sys.version_info.minor}), which runs this Prefect flow",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_NO_PREFECT
    sys.argv = [ENGINE_MODULE]
    sys.path[0] = os.getcwd()  # as `-m` sets it: the flow's directory, not this file's
    try:
        runpy.run_module(ENGINE_MODULE, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr, flush=True)
        return 1
    return 0


def _is_prefect_flow(entrypoint: str) -> bool:
    """Whether the entrypoint is a function decorated with Prefect's `@flow` (read with ast,
    not imported), by flow_kind.py: the package's, or the copy beside this file."""
    if __package__:
        kinds: Any = importlib.import_module(f"{__package__}.flow_kind")
    else:  # a copy, found by its path (sys.path may lack this directory: -P, PYTHONSAFEPATH)
        spec = importlib.util.spec_from_file_location(
            "flow_kind", Path(__file__).with_name("flow_kind.py")
        )
        if spec is None or spec.loader is None:
            raise LoadError("flow_kind.py is missing beside the runner")
        kinds = importlib.util.module_from_spec(spec)
        sys.modules["flow_kind"] = kinds  # dataclasses look their module up
        spec.loader.exec_module(kinds)
    info = kinds.inspect_entrypoint(entrypoint, Path.cwd())
    return bool(info.kind is kinds.FlowKind.PREFECT_FLOW)


def run_function(entrypoint: str) -> int:
    """Call the entrypoint's function with the run's parameters (reconciler's own runner)."""
    try:
        parameters = read_parameters()
        function = load_entrypoint(entrypoint)
    except (LoadError, ValueError) as exc:
        print(f"cannot load the flow: {exc}", file=sys.stderr, flush=True)
        return EXIT_CANNOT_LOAD
    try:
        result = function(**parameters)
        if inspect.isawaitable(result):
            asyncio.run(_wait(result))
    except BaseException as exc:  # the flow's own failure, whatever it is
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        traceback.print_exc()
        sys.stderr.flush()
        if isinstance(exc, SystemExit) and isinstance(exc.code, int):
            return exc.code
        return EXIT_FLOW_FAILED
    sys.stdout.flush()
    return 0


async def _wait(awaitable: Any) -> Any:
    return await awaitable


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
