"""Test infrastructure: reconciler's own image, deploy/Dockerfile built FROM the locally made
test base image, for the tests that run reconciler in containers (tests/docker).

The dependencies come from a wheelhouse made on this machine (tests/infra/wheelhouse.py:
`pip download`, cached in ~/.cache/reconciler-tests/) and are installed with `--no-index`:
containers here reach Debian's mirror but not PyPI (its TLS certificate is not one the base
image trusts).

The image is kept between runs, labelled, as `reconciler-deploy-test:latest`, so that later
runs build from the engine's cache (the first build takes a minute or two, mostly apt-get;
later ones seconds); a build that changes it removes the previous one. A file lock keeps two
test runs from building at once. The session fixture `reconciler_image` (tests/infra/
fixtures.py) builds it once per session for every test that needs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import docker.utils.build

from tests.infra.docker_env import cache_dir
from tests.infra.package_sources import NoPackageSource, pip_index_url
from tests.infra.wheelhouse import wheelhouse

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "reconciler-deploy-test:latest"
BUILD_STAGE = "reconciler-deploy-test:build-stage"
IMAGE_LABEL = "org.reconciler.test"
RUN_LABEL = "org.reconciler.test-run"


class ImageBuildFailed(RuntimeError):
    """deploy/Dockerfile did not build: a failure of the tests, never a reason to skip."""


def image_python(client: docker.DockerClient, base_image: str) -> str:
    """The Python version (`3.11`) of `base_image`, asked of a throwaway container."""
    output: bytes = client.containers.run(
        base_image,
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        labels={RUN_LABEL: "deploy-python-version"},
        network_mode="none",
        remove=True,
    )
    return output.decode().strip()


def deploy_wheelhouse(python_version: str) -> Path:
    """The dependencies of pyproject.toml and its build backend as wheels for the image's
    Python, made once per dependency set with `pip download` and cached (wheelhouse.py).
    Raises DockerEnvUnavailable when pip cannot download them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [*project["build-system"]["requires"], *project["project"]["dependencies"]]
    return wheelhouse("deploy-wheels", requirements, python_version)


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def build_context(destination: Path, wheels: Path) -> Path:
    """What `docker build -f deploy/Dockerfile .` sends from the repository (its own
    .dockerignore decides), with the wheelhouse in deploy/wheels/."""
    for relative in docker.utils.build.exclude_paths(
        str(ROOT), dockerignore_patterns(), dockerfile="deploy/Dockerfile"
    ):
        source = ROOT / relative
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # reconciler/schemas -> ../schemas, as git checks it out
            target.symlink_to(os.readlink(source))
        elif source.is_file() and source.suffix != ".whl":
            shutil.copy2(source, target)
    (destination / "deploy" / "wheels").mkdir(parents=True, exist_ok=True)
    for wheel in wheels.glob("*.whl"):
        shutil.copy2(wheel, destination / "deploy" / "wheels" / wheel.name)
    return destination


@contextlib.contextmanager
def image_lock() -> Iterator[None]:
    with open(cache_dir() / "deploy-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def image_id(client: docker.DockerClient, reference: str) -> str | None:
    try:
        return str(client.images.get(reference).id)
    except docker.errors.ImageNotFound:
        return None


def build_args(base_image: str) -> dict[str, str]:
    """The Dockerfile's build arguments: offline from the wheelhouse, and this machine's pip
    index when it has one configured (none configured: pip's own default in the build)."""
    args = {"BASE_IMAGE": base_image, "PIP_INSTALL_OPTIONS": "--no-index"}
    with contextlib.suppress(NoPackageSource):
        args["PIP_INDEX_URL"] = pip_index_url()
    return args


def build_image(
    client: docker.DockerClient, context: Path, base_image: str, tag: str, target: str | None
) -> None:
    try:
        client.images.build(
            path=str(context),
            dockerfile="deploy/Dockerfile",
            tag=tag,
            target=target,
            buildargs=build_args(base_image),
            labels={IMAGE_LABEL: "deploy-image"},
            rm=True,
            forcerm=True,
            pull=False,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(part.get("stream", part.get("error", ""))) for part in exc.build_log)
        raise ImageBuildFailed(f"deploy/Dockerfile did not build: {exc}\n{log[-4000:]}") from exc


def ensure_reconciler_image(client: docker.DockerClient, base_image: str, scratch: Path) -> str:
    """Build (or refresh from the engine's cache) reconciler's image FROM `base_image`, offline
    from the wheelhouse, with `scratch` (an empty directory) as the build context; returns its
    tag."""
    wheels = deploy_wheelhouse(image_python(client, base_image))
    context = build_context(scratch, wheels)
    with image_lock():
        previous = {tag: image_id(client, tag) for tag in (IMAGE, BUILD_STAGE)}
        # The build stage is tagged too: the engine keeps an untagged stage as a dangling
        # image, which would pile up with every change of the sources.
        for target, tag in (("build", BUILD_STAGE), (None, IMAGE)):
            build_image(client, context, base_image, tag, target)
        for tag, old in previous.items():
            if old is not None and old != image_id(client, tag):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(old)
    return IMAGE
