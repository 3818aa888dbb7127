"""The Docker test environment works end to end on a real engine: the locally built base image
runs Python, an image built FROM it with the docker SDK goes to a local registry and comes
back, and the registry with basic auth accepts only the right credentials."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.images import Image

from tests.infra.docker_env import Registry

pytestmark = pytest.mark.docker


@pytest.fixture
def tagged(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """Image references a test created; removed from the engine afterwards."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(ref, force=True)


def build_hello_image(
    client: docker.DockerClient, base: str, context: Path, ref: str, text: str
) -> Image:
    """Build an image FROM `base` that adds /hello.txt containing `text`."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "hello.txt").write_text(text)
    (context / "Dockerfile").write_text(f"FROM {base}\nCOPY hello.txt /hello.txt\n")
    image, _logs = client.images.build(path=str(context), tag=ref, rm=True, forcerm=True)
    return image


def push(client: docker.DockerClient, ref: str, auth_config: dict[str, str] | None = None) -> str:
    """Push `ref`; return the engine's error message, or "" when the push succeeded. (The
    engine reports push failures inside the progress stream, not as an HTTP error.)"""
    repository, _, tag = ref.rpartition(":")
    events: Iterator[dict[str, Any]] = client.images.push(
        repository, tag=tag, auth_config=auth_config, stream=True, decode=True
    )
    errors = [str(event["error"]) for event in events if "error" in event]
    return "\n".join(errors)


def read_hello(client: docker.DockerClient, image: str) -> str:
    output: bytes = client.containers.run(image, ["cat", "/hello.txt"], remove=True)
    return output.decode()


def unique_ref(registry: Registry, name: str) -> str:
    return f"{registry.address}/reconciler-test/{name}:{uuid.uuid4().hex[:12]}"


def test_base_image_runs_python_in_an_auto_removed_container(
    docker_client: docker.DockerClient, base_image: str
) -> None:
    run_id = uuid.uuid4().hex

    output = docker_client.containers.run(
        base_image,
        ["python3", "-c", "print(42)"],
        labels={"org.reconciler.test-run": run_id},
        remove=True,
    )

    assert output == b"42\n"
    leftovers = docker_client.containers.list(
        all=True, filters={"label": f"org.reconciler.test-run={run_id}"}
    )
    assert leftovers == []


def test_base_image_defaults_to_python_and_stays_small(
    docker_client: docker.DockerClient, base_image: str
) -> None:
    image = docker_client.images.get(base_image)

    assert image.attrs["Config"]["Cmd"] == ["python3"]
    assert image.attrs["Size"] < 160 * 1024 * 1024, "trimming of the base rootfs regressed"


def test_image_built_from_base_is_pushed_and_pulled_back(
    docker_client: docker.DockerClient,
    base_image: str,
    registry: Registry,
    tmp_path: Path,
    tagged: list[str],
) -> None:
    ref = unique_ref(registry, "hello")
    tagged.append(ref)
    text = f"hello {ref}\n"
    built = build_hello_image(docker_client, base_image, tmp_path, ref, text)

    assert push(docker_client, ref) == ""
    docker_client.images.remove(ref)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(built.attrs["Id"])
    repository, _, tag = ref.rpartition(":")
    pulled = docker_client.images.pull(repository, tag=tag)

    assert pulled.id == built.id
    assert read_hello(docker_client, ref) == text


@pytest.fixture(scope="module")
def image_for_auth(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Image]:
    """A one-file image FROM scratch: auth does not depend on the content, and a fresh
    registry receives it in milliseconds (the base image's 115 MB layer takes seconds)."""
    ref = f"reconciler-test-auth:{uuid.uuid4().hex[:12]}"
    context = tmp_path_factory.mktemp("auth-image")
    image = build_hello_image(docker_client, "scratch", context, ref, f"hello {ref}\n")
    yield image
    docker_client.images.remove(image.attrs["Id"], force=True)


def test_auth_registry_refuses_a_push_without_credentials(
    docker_client: docker.DockerClient,
    auth_registry: Registry,
    image_for_auth: Image,
    tagged: list[str],
) -> None:
    ref = unique_ref(auth_registry, "private")
    image_for_auth.tag(ref)
    tagged.append(ref)

    assert "no basic auth credentials" in push(docker_client, ref)


def test_auth_registry_refuses_a_push_with_a_wrong_password(
    docker_client: docker.DockerClient,
    auth_registry: Registry,
    image_for_auth: Image,
    tagged: list[str],
) -> None:
    ref = unique_ref(auth_registry, "private")
    image_for_auth.tag(ref)
    tagged.append(ref)
    wrong = {"username": str(auth_registry.username), "password": "not-the-password"}

    assert "unauthorized" in push(docker_client, ref, wrong).lower()


def test_auth_registry_accepts_a_push_and_pull_with_credentials(
    docker_client: docker.DockerClient,
    auth_registry: Registry,
    image_for_auth: Image,
    tagged: list[str],
) -> None:
    ref = unique_ref(auth_registry, "private")
    image_for_auth.tag(ref)
    tagged.append(ref)

    assert push(docker_client, ref, auth_registry.auth_config) == ""
    docker_client.images.remove(ref)
    repository, _, tag = ref.rpartition(":")
    pulled = docker_client.images.pull(repository, tag=tag, auth_config=auth_registry.auth_config)

    assert pulled.id == image_for_auth.id
    assert ref in pulled.tags
