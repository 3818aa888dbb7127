"""Fixtures for tests that need real servers on 127.0.0.1.

Git servers (`tests/infra/git_servers.py`): `git_daemon` and `git_http_server` (smart HTTP
behind basic auth), one of each per session, and `make_remote(server)` for a fresh repository
on one of them that a test can commit to, force-push and delete branches of.

A real Docker engine (the build and push steps): a docker SDK client, the locally built base
image, reconciler's own image built from it (`reconciler_image`), an image with Prefect
installed (`prefect_image`), and throwaway registries.
With no engine reachable, or a Debian tool missing, these fixtures skip with the reason; on CI
(CI=true) they fail instead, since CI machines have an engine and install the tools.

A real PostgreSQL server (`tests/infra/postgres_env.py`), one per session, started on first
use: `postgres_url` is a fresh database on it for one test. Without PostgreSQL's programs
these skip, or fail on CI, in the same way.

A real Prefect server (`tests/infra/prefect_server.py`, `prefect` from the test extra), one
per session, started on first use: `prefect_server`. Without `prefect` installed it skips,
or fails on CI, in the same way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
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
from tests.infra.git_servers import (
    GitDaemon,
    GitServer,
    HttpGitServer,
    Remote,
    running_git_daemon,
    running_http_server,
)
from tests.infra.postgres_env import PostgresServer, PostgresUnavailable, running_postgres
from tests.infra.prefect_image import ensure_prefect_image
from tests.infra.prefect_server import PrefectServer, PrefectUnavailable, running_prefect_server
from tests.infra.reconciler_image import ImageBuildFailed, ensure_reconciler_image

GIT_HTTP_USER = "reconciler-test"


@pytest.fixture(scope="session")
def git_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitDaemon]:
    """`git daemon` on git://127.0.0.1:PORT/ (pushes enabled), for the whole session."""
    with running_git_daemon(tmp_path_factory.mktemp("git-daemon")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def git_http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpGitServer]:
    """Smart HTTP (`git http-backend`) on http://127.0.0.1:PORT/ behind basic auth: only
    `username`/`password` get in. The password holds characters that need quoting in URLs."""
    password = f"pw-{secrets.token_hex(8)}@:/%"
    base = tmp_path_factory.mktemp("git-http")
    with running_http_server(base, GIT_HTTP_USER, password) as server:
        yield server


_remote_numbers = itertools.count(1)


@pytest.fixture
def make_remote(request: pytest.FixtureRequest) -> Iterator[Callable[..., Remote]]:
    """`make_remote(server, files=None, branch="main")`: a new repository on `server` (a
    fixture above), named after the test, with one pushed commit of `files` if given."""
    made: list[Remote] = []
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]

    def make(
        server: GitServer, files: Mapping[str, str | bytes] | None = None, branch: str = "main"
    ) -> Remote:
        remote = Remote(server, f"{stem}-{next(_remote_numbers)}.git", branch)
        made.append(remote)
        if files is not None:
            remote.commit(files, "initial")
        return remote

    yield make
    for remote in made:
        remote.remove()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docker: needs a Docker engine, the test base image and local registries"
    )


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str, tests: str = "the Docker tests") -> NoReturn:
    """Skip on a developer's machine; fail on CI, where a missing engine is a broken setup."""
    if on_ci():
        pytest.fail(f"CI=true but {tests} cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for the whole session (see postgres_env.py)."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        unavailable(str(exc), "the PostgreSQL tests")


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """`postgresql://...` of a new, empty database for this test, dropped afterwards."""
    url = postgres_server.create_database(request.node.name)
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1 for the whole session, with its own PREFECT_HOME
    (see prefect_server.py); `prefect_server.env()` points any Prefect program at it."""
    try:
        with running_prefect_server() as server:
            yield server
    except PrefectUnavailable as exc:
        unavailable(str(exc), "the Prefect tests")


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


def progress_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Write a line to the terminal at once, through pytest's capture: why the run pauses
    while an image is built."""
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")

    def show(message: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"[docker tests] {message}")

    return show


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient, request: pytest.FixtureRequest) -> str:
    """`reconciler-test-base:bookworm` (Debian minbase + python3), built on first use."""
    try:
        return ensure_base_image(progress=progress_line(request))
    except DockerEnvUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def reconciler_image(
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """reconciler's own image (deploy/Dockerfile FROM the test base image, see
    reconciler_image.py), built once per session; its tag."""
    try:
        return ensure_reconciler_image(
            docker_client, base_image, tmp_path_factory.mktemp("image-context")
        )
    except DockerEnvUnavailable as exc:
        unavailable(str(exc))
    except ImageBuildFailed as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def prefect_image(
    docker_client: docker.DockerClient, base_image: str, request: pytest.FixtureRequest
) -> str:
    """The test base image with Prefect 3.9 in /opt/prefect, first on PATH (see
    prefect_image.py), built when its inputs changed; its tag."""
    try:
        return ensure_prefect_image(docker_client, base_image, progress=progress_line(request))
    except DockerEnvUnavailable as exc:
        unavailable(str(exc))
    except ImageBuildFailed as exc:
        pytest.fail(str(exc), pytrace=False)


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
