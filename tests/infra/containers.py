"""Test infrastructure, outside the pipeline: small images and container clean-up for the
tests that run flows in containers (tests/docker/, the docker case of
tests/contract/test_worker_backend_contract.py).

Every image, container and network a test makes carries a label with the test's tag, so
`remove_labelled` finds all of it afterwards, whatever the test got to.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Mapping

import docker
import docker.errors
from docker.models.containers import Container

TEST_LABEL = "org.reconciler.test-worker-docker"
"""The label of what the worker tests make; its value is the test's (or module's) tag."""


def build_image(
    client: docker.DockerClient, ref: str, base: str, files: Mapping[str, str], tag: str
) -> None:
    """An image FROM `base` with `files` copied to their absolute paths, built from a tar
    context the way `docker build -` takes one, labelled with `tag`."""
    dockerfile = f"FROM {base}\n" + "".join(f"COPY f{i} {path}\n" for i, path in enumerate(files))
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in [("Dockerfile", dockerfile)] + [
            (f"f{i}", content) for i, content in enumerate(files.values())
        ]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(
        fileobj=context, custom_context=True, tag=ref, labels={TEST_LABEL: tag}, rm=True
    )


def containers_of(client: docker.DockerClient, run_id: str) -> list[Container]:
    """The containers the worker made for the flow run `run_id` (Prefect's run label)."""
    found: list[Container] = client.containers.list(
        all=True, filters={"label": f"io.prefect.flow-run-id={run_id}"}
    )
    return found


def remove_labelled(client: docker.DockerClient, tag: str, images: tuple[str, ...] = ()) -> None:
    """Remove the containers and networks labelled with `tag`, and `images`."""
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={tag}"}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    for network in client.networks.list(filters={"label": f"{TEST_LABEL}={tag}"}):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
    for image in images:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image, force=True)
