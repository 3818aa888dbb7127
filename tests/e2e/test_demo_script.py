"""Issue 15: `examples/demo.sh` runs on its own, as after `pip install -e .`: `reconcile` on the
PATH, nothing else (no make), in a directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GIT_ENV

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.sh"


def test_the_demo_runs_on_its_own(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "reconcile").exists(), "the package is installed with its script"
    env = {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "RECONCILER_DEMO_DIR": str(tmp_path / "demo"),
        "HOME": str(tmp_path),
    }
    env.pop("RECONCILER_STORE", None)
    done = subprocess.run(
        ["bash", str(DEMO)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Valid: " in output
    assert "Apply complete! Resources: 1 added, 1 changed, 1 destroyed." in output
    assert "COMPLETED" in output
    assert "Traceback" not in output


def test_the_demo_says_what_is_missing_without_reconcile(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(DEMO)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "pip install -e ." in done.stderr
