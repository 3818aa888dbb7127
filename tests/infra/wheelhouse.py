"""Test infrastructure: offline wheelhouses for the test images. Containers here reach Debian's
mirror but not PyPI, so the images install Python packages with `pip install --no-index` from
wheels that `pip download` fetched on this machine for the image's Python and platform.

A wheelhouse is cached in ~/.cache/reconciler-tests/ (or $RECONCILER_TEST_CACHE) under a
name that hashes what it holds (requirements, Python version, platform), so it is downloaded
once per set of requirements; a file lock keeps two test runs from downloading the same one at
once, and a download that fails or is killed leaves only a `.partial` directory behind.

`pip download --python-version` picks wheels for the image's Python but evaluates environment
markers with the Python running it: a dependency the image needs and this machine does not
(`async-timeout; python_full_version < "3.11.3"` for an image with 3.11.2 under a host with
3.11.7) would be missing. Given the image's marker environment (`marker_environment()`, asked
of the image), `wheelhouse` adds such dependencies until every requirement the image's pip
will see has a wheel.
"""

from __future__ import annotations

import contextlib
import email.parser
import fcntl
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import docker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.infra.docker_env import DockerEnvUnavailable, cache_dir

DOWNLOAD_TIMEOUT_S = 900
MARKER_ROUNDS = 5
"""`pip download` rounds for dependencies only the image's markers select (one is typical)."""
KERNEL_MARKERS = ("platform_release", "platform_version")

# PEP 508's marker variables, as the image's own python3 (stdlib only) reports them.
MARKER_ENVIRONMENT_SCRIPT = """
import json, os, platform, sys
v = sys.implementation.version
level = "" if v.releaselevel == "final" else v.releaselevel[0] + str(v.serial)
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": f"{v.major}.{v.minor}.{v.micro}{level}",
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}))
"""


def marker_environment(client: docker.DockerClient, image: str) -> dict[str, str]:
    """The environment markers of `image`'s python3, asked of a throwaway container."""
    output: bytes = client.containers.run(
        image, ["python3", "-c", MARKER_ENVIRONMENT_SCRIPT], network_mode="none", remove=True
    )
    environment: dict[str, str] = json.loads(output)
    return environment


def wheel_platform() -> str:
    """The wheel platform tag of this machine's architecture that Debian bookworm's glibc
    runs (`manylinux2014_x86_64`); pip also accepts the older manylinux tags with it."""
    return f"manylinux2014_{platform.machine()}"


def wheelhouse(
    name: str,
    requirements: Sequence[str],
    python_version: str,
    markers: Mapping[str, str] | None = None,
) -> Path:
    """A directory of wheels for `requirements` and all they depend on, for CPython
    `python_version` (`3.11`) on `wheel_platform()`, completed for the image's environment
    `markers` when given; `name` prefixes its cache directory (`deploy-wheels`,
    `prefect-wheels`). Raises DockerEnvUnavailable when pip cannot download them (no index
    reachable, no wheel for this platform)."""
    material: list[object] = [list(requirements), python_version, wheel_platform()]
    if markers is not None:  # the kernel's release and build do not pick wheels: not keyed
        material.append({k: v for k, v in sorted(markers.items()) if k not in KERNEL_MARKERS})
    key = hashlib.sha256(json.dumps(material).encode()).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}"
    if target.is_dir():
        return target
    with _download_lock(f"{name}-{key}"):
        if target.is_dir():  # another test run downloaded it while this one waited
            return target
        partial = cache_dir() / f"{name}-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _pip_download(partial, requirements, python_version)
        if markers is not None:
            _complete_for_markers(partial, requirements, python_version, markers)
        partial.rename(target)
    return target


def _pip_download(destination: Path, requirements: Sequence[str], python_version: str) -> None:
    args = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(destination),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--platform",
        wheel_platform(),
        *requirements,
    ]
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DockerEnvUnavailable(
            f"`pip download` of {', '.join(requirements)} did not finish in "
            f"{DOWNLOAD_TIMEOUT_S}s; is the package index reachable from this machine?"
        ) from exc
    if done.returncode != 0:
        raise DockerEnvUnavailable(
            f"`pip download` of {', '.join(requirements)} for Python {python_version} "
            f"failed:\n{done.stderr[-2000:]}"
        )


def _complete_for_markers(
    directory: Path, requirements: Sequence[str], python_version: str, markers: Mapping[str, str]
) -> None:
    for _ in range(MARKER_ROUNDS):
        missing = unmet_requirements(directory, requirements, markers)
        if not missing:
            return
        _pip_download(directory, missing, python_version)
    raise DockerEnvUnavailable(
        f"the wheelhouse {directory} still lacks {', '.join(missing)} after "
        f"{MARKER_ROUNDS} rounds of `pip download`"
    )


def unmet_requirements(
    directory: Path, requirements: Sequence[str], markers: Mapping[str, str]
) -> list[str]:
    """The requirements, with the dependencies they bring under `markers` (and the extras
    asked for), that no wheel in `directory` satisfies; without their markers, for
    `pip download`."""
    wheels: dict[str, list[tuple[Version, Path]]] = {}
    for wheel in directory.glob("*.whl"):
        project, version, _build, _tags = parse_wheel_filename(wheel.name)
        wheels.setdefault(project, []).append((version, wheel))
    missing: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(text) for text in requirements]
    while pending:
        requirement = pending.pop()
        project = canonicalize_name(requirement.name)
        if (project, frozenset(requirement.extras)) in seen:
            continue
        seen.add((project, frozenset(requirement.extras)))
        matching = sorted(
            (
                candidate
                for candidate in wheels.get(project, [])
                if requirement.specifier.contains(candidate[0], prereleases=True)
            ),
            reverse=True,
        )
        if not matching:
            requirement.marker = None
            missing.append(str(requirement))
            continue
        extras = ["", *requirement.extras]
        for text in _requires_dist(matching[0][1]):
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(
                marker.evaluate({**markers, "extra": extra}) for extra in extras
            ):
                pending.append(dependency)
    return sorted(set(missing))


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        message = email.parser.BytesParser().parsebytes(archive.read(metadata), headersonly=True)
    return list(message.get_all("Requires-Dist") or [])


@contextlib.contextmanager
def _download_lock(name: str) -> Iterator[None]:
    with open(cache_dir() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
