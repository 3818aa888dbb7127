"""Test infrastructure: `reconciler-prefect-test:latest`, the test base image with Prefect 3.9
in a virtualenv at /opt/prefect, first on PATH (so `python`, `python3` and `prefect` are the
virtualenv's), for the tests that run Prefect flows in containers (the Docker backend).

How it is made, offline and without apt: a throwaway container of the base image, with no
network and the wheelhouse (wheelhouse.py: `pip download` on this machine for the image's
Python) mounted read-only, creates the virtualenv and installs Prefect with pip run from pip's
own wheel (`--no-index`); the container is then committed as the image. No wheel stays in a
layer, and no intermediate image is left behind.

The image is kept between runs. Its label `org.reconciler.test.prefect-inputs` hashes what it
was made from (this recipe, the base image's id, the requirement, the wheels); it is rebuilt
only when that changes, and a rebuild removes the previous image. A file lock keeps two test
runs from building at once. The session fixture `prefect_image` (tests/infra/fixtures.py)
ensures it once per session.

Run `python -m tests.infra.prefect_image` to build it ahead of a test run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
from docker.models.images import Image

from tests.infra.docker_env import (
    IMAGE_PATH,
    DockerEnvError,
    DockerEnvUnavailable,
    Progress,
    cache_dir,
    ensure_base_image,
)
from tests.infra.reconciler_image import IMAGE_LABEL, ImageBuildFailed
from tests.infra.wheelhouse import marker_environment, wheelhouse

IMAGE = "reconciler-prefect-test:latest"
REQUIREMENT = "prefect>=3.9,<3.10"
VENV = "/opt/prefect"
INPUTS_LABEL = "org.reconciler.test.prefect-inputs"
# Bump when the install below changes: the inputs label changes with it, forcing a rebuild.
RECIPE_VERSION = "1"
BUILD_TIMEOUT_S = 900

_log = logging.getLogger(__name__)


def ensure_prefect_image(
    client: docker.DockerClient, base_image: str, progress: Progress = _log.info
) -> str:
    """The tag of the Prefect test image FROM `base_image`, built first when the engine has
    none made from the current inputs. Raises DockerEnvUnavailable when the wheels cannot be
    downloaded, ImageBuildFailed when the install in the container fails."""
    markers = marker_environment(client, base_image)
    wheels = wheelhouse("prefect-wheels", [REQUIREMENT, "pip"], markers["python_version"], markers)
    inputs = inputs_digest(client, base_image, wheels)
    with _image_lock():
        previous = _image(client)
        if previous is not None and previous.labels.get(INPUTS_LABEL) == inputs:
            return IMAGE
        progress(f"building {IMAGE}: {REQUIREMENT} from {wheels} (about a minute)")
        _build(client, base_image, wheels, inputs)
        if previous is not None:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(str(previous.id))
    return IMAGE


def inputs_digest(client: docker.DockerClient, base_image: str, wheels: Path) -> str:
    """What the image is made from, hashed: recipe, base image id, requirement, wheel names."""
    base_id = str(client.images.get(base_image).id)
    names = sorted(wheel.name for wheel in wheels.glob("*.whl"))
    material = json.dumps([RECIPE_VERSION, base_id, REQUIREMENT, names])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def install_script(pip_wheel: str) -> str:
    """The shell commands run in the build container: a virtualenv without pip (Debian's
    python3 has no ensurepip), Prefect installed into it by pip run from its wheel, and an
    import that proves it loads (and leaves its bytecode compiled)."""
    python = f"{VENV}/bin/python"
    install = [
        python,
        f"/wheels/{pip_wheel}/pip",
        "install",
        "--no-index",
        "--find-links=/wheels",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--root-user-action=ignore",
        "--quiet",
        REQUIREMENT,
    ]
    return " && ".join(
        [
            "set -e",
            f"python3 -m venv --without-pip {VENV}",
            shlex.join(install),
            f"{python} -c 'import prefect, prefect.engine; print(prefect.__version__)'",
        ]
    )


def _build(client: docker.DockerClient, base_image: str, wheels: Path, inputs: str) -> None:
    pip_wheels = sorted(wheels.glob("pip-*.whl"))
    if not pip_wheels:
        raise ImageBuildFailed(f"the wheelhouse {wheels} has no pip wheel; delete it to refetch")
    container = client.containers.create(
        base_image,
        ["sh", "-c", install_script(pip_wheels[-1].name)],
        volumes={str(wheels): {"bind": "/wheels", "mode": "ro"}},
        network_mode="none",
        labels={IMAGE_LABEL: "prefect-image"},  # kept by the commit: the image's label
    )
    try:
        container.start()
        status = container.wait(timeout=BUILD_TIMEOUT_S).get("StatusCode")
        output = container.logs().decode(errors="replace")
        if status != 0:
            raise ImageBuildFailed(
                f"installing {REQUIREMENT} in a container of {base_image} exited with "
                f"{status}:\n{output[-4000:]}"
            )
        repository, _, tag = IMAGE.rpartition(":")
        container.commit(
            repository=repository,
            tag=tag,
            changes=[
                f"ENV PATH={VENV}/bin:{IMAGE_PATH}",
                f"ENV VIRTUAL_ENV={VENV}",
                'CMD ["python"]',
                f"LABEL {INPUTS_LABEL}={inputs}",
            ],
        )
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


def _image(client: docker.DockerClient) -> Image | None:
    try:
        return client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        return None


@contextlib.contextmanager
def _image_lock() -> Iterator[None]:
    with open(cache_dir() / "prefect-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    client = docker.from_env(timeout=120)
    try:
        sys.stdout.write(ensure_prefect_image(client, ensure_base_image()) + "\n")
    except (DockerEnvUnavailable, DockerEnvError, ImageBuildFailed) as exc:
        _log.error("%s", exc)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
