"""Fixtures for tests that need a real Docker engine (the build and push steps): a docker SDK
client, the locally built base image, and throwaway registries on 127.0.0.1.

With no engine reachable, or a Debian tool missing, these fixtures skip with the reason;
on CI (CI=true) they fail instead, since CI machines have an engine and install the tools.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from typing import NoReturn

import docker
import docker.errors
import pytest

from tests.infra.docker_env import (
    DockerEnvUnavailable,
    Registry,
    ensure_base_image,
    running_registry,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docker: needs a Docker engine, the test base image and local registries"
    )


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail on CI, where a missing engine is a broken setup."""
    if on_ci():
        pytest.fail(f"CI=true but the Docker tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        unavailable(
            f"no Docker engine is reachable ({exc}); start dockerd or set DOCKER_HOST to run "
            "the Docker tests"
        )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient, request: pytest.FixtureRequest) -> str:
    """`reconciler-test-base:bookworm` (Debian minbase + python3), built on first use."""
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")

    def show(message: str) -> None:
        """Tell the user at once why the run pauses (debootstrap takes a minute or two)."""
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"[docker tests] {message}")

    try:
        return ensure_base_image(progress=show)
    except DockerEnvUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def registry(docker_client: docker.DockerClient) -> Iterator[Registry]:
    """A registry without auth on 127.0.0.1; push `f"{registry.address}/name:tag"`."""
    yield from _registry(docker_client, auth=False)


@pytest.fixture(scope="session")
def auth_registry(docker_client: docker.DockerClient) -> Iterator[Registry]:
    """A registry that requires basic auth: `auth_registry.auth_config` for push/pull."""
    yield from _registry(docker_client, auth=True)


def _registry(client: docker.DockerClient, auth: bool) -> Iterator[Registry]:
    require_loopback_is_insecure(client)
    try:
        with running_registry(auth=auth) as running:
            yield running
    except DockerEnvUnavailable as exc:
        unavailable(str(exc))


def require_loopback_is_insecure(client: docker.DockerClient) -> None:
    """The engine speaks plain HTTP only to registries it lists as insecure; 127.0.0.0/8 is
    on that list by default, and the test registries rely on it."""
    cidrs = client.info().get("RegistryConfig", {}).get("InsecureRegistryCIDRs") or []
    loopback = ipaddress.ip_address("127.0.0.1")
    if not any(loopback in ipaddress.ip_network(cidr) for cidr in cidrs):
        pytest.fail(
            f"the Docker engine does not treat 127.0.0.1 registries as insecure (its insecure "
            f"ranges: {cidrs}); add 127.0.0.0/8 to `insecure-registries` in "
            "/etc/docker/daemon.json and restart dockerd",
            pytrace=False,
        )
