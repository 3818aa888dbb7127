"""Which Python runs a flow, and whether it can import Prefect (worker: before a run starts).

The rule, in order:
1. the `command` job variable of the run, deployment or pool (Prefect's own way to choose
   what a process worker starts): its first word is the program;
2. `reconcile worker start --python PATH`;
3. the worker's own interpreter.

Whether an interpreter can import `prefect` is asked once per interpreter (a subprocess for
any other than the worker's own) and remembered while the file does not change.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

_PROBE = (
    "import importlib.util, sys\n"
    "spec = importlib.util.find_spec('prefect')\n"
    "if spec is None: sys.exit(3)\n"
    "from importlib.metadata import version\n"
    "print(version('prefect'))\n"
)


@dataclass(frozen=True)
class PrefectProbe:
    python: str
    version: str | None
    """Prefect's version importable by `python`, or None when it is not importable."""
    error: str | None = None
    """Why the interpreter could not be asked (it does not exist, it failed)."""


_cache: dict[tuple[str, float], PrefectProbe] = {}
_lock = threading.Lock()


def resolve_python(python: str) -> str:
    """An interpreter named on PATH (`python3.12`) or by path, as an absolute path when it
    can be found (the name as given otherwise: starting it reports the error)."""
    if os.sep in python:
        return str(Path(python).absolute())
    return shutil.which(python) or python


def probe_prefect(python: str) -> PrefectProbe:
    """Whether `python` can import prefect, and which version."""
    if python == sys.executable:
        if importlib.util.find_spec("prefect") is None:
            return PrefectProbe(python, None)
        from importlib.metadata import version

        return PrefectProbe(python, version("prefect"))
    try:
        stamp = Path(python).stat().st_mtime
    except OSError as exc:
        return PrefectProbe(python, None, f"{python}: {exc.strerror or exc}")
    key = (python, stamp)
    with _lock:
        if key in _cache:
            return _cache[key]
    try:
        done = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return PrefectProbe(python, None, f"{python} could not be started: {exc}")
    if done.returncode == 3:
        probe = PrefectProbe(python, None)
    elif done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        probe = PrefectProbe(python, None, f"{python} failed: {tail[0]}")
    else:
        probe = PrefectProbe(python, done.stdout.strip() or "unknown")
    with _lock:
        _cache[key] = probe
    return probe


def missing_prefect_message(python: str, probe: PrefectProbe) -> str:
    """What to do when a flow imports prefect and its Python cannot."""
    if probe.error:
        return (
            f"the flow imports prefect, but its Python could not be checked ({probe.error}); "
            "set the `command` job variable of the pool or deployment, or "
            "`reconcile worker start --python`, to an interpreter that has prefect"
        )
    return (
        f"the flow imports prefect, but {python} cannot import it: install it there "
        f"({python} -m pip install 'prefect>=3,<4'), or run the flow with another Python: "
        "set the `command` job variable of the pool or deployment "
        "(e.g. `/path/to/venv/bin/python -m prefect.engine`) or start the worker with "
        "`--python /path/to/venv/bin/python`"
    )
