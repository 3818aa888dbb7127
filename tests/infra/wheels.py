"""Tiny real Python packages for the tests of custom steps: a wheel written by hand (a zip
with its dist-info, no build backend needed) that pip installs offline, with
`--no-index --find-links`, into a directory of the test (`--target`), never into the
virtualenv the suite runs in."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path


def write_wheel(directory: Path, name: str, files: Mapping[str, str], version: str = "0.1") -> Path:
    """A pure-Python wheel of distribution `name` holding `files` (paths inside the wheel)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{name.replace('-', '_')}-{version}"
    wheel = directory / f"{stem}-py3-none-any.whl"
    info = f"{stem}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def offline_pip_env(wheels: Path, target: Path) -> dict[str, str]:
    """pip's settings for a process that may install only from `wheels`, into `target`."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_TARGET": str(target),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def pip_install(wheels: Path, target: Path, *names: str) -> None:
    """Install `names` from `wheels` into `target` (put `target` on PYTHONPATH to use them)."""
    offline = ["--no-index", "--find-links", str(wheels), "--target", str(target)]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", *offline, *names],
        check=True,
        capture_output=True,
        timeout=120,
    )
