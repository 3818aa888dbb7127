"""Run one flow: the program a worker starts for each run (worker: inside the run's process).

    python -m reconciler.worker.flow_runner ENTRYPOINT
    python /any/path/flow_runner.py ENTRYPOINT        (inside a container: no package needed)

ENTRYPOINT is `path/to/file.py:function` (relative to the working directory) or
`package.module.function`. The parameters come as a JSON object in the file named by the
environment variable RECONCILER_FLOW_PARAMETERS_FILE (the environment cannot carry more than
128 KB in one variable); RECONCILER_FLOW_PARAMETERS, the JSON itself, is read when no file is
named. The function is called with them: a plain function works, and so
does a Prefect `@flow` when prefect is installed here (calling it runs it). A coroutine is run
to completion.

Exit codes: 0 when the function returned; 1 when it raised (the traceback is printed); 2 when
the entrypoint cannot be loaded (the reason is printed). This file imports nothing from
reconciler, so a worker can mount it into any image that has Python.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

PARAMETERS_VARIABLE = "RECONCILER_FLOW_PARAMETERS"
PARAMETERS_FILE_VARIABLE = "RECONCILER_FLOW_PARAMETERS_FILE"
PARAMETERS_FILE_NAME = "parameters.json"
EXIT_FLOW_FAILED = 1
EXIT_CANNOT_LOAD = 2


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
    if len(argv) != 1:
        print("usage: flow_runner ENTRYPOINT", file=sys.stderr)
        return EXIT_CANNOT_LOAD
    try:
        parameters = read_parameters()
        function = load_entrypoint(argv[0])
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
