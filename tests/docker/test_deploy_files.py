"""The deployment files of deploy/ (docs/operations.md) are what they claim to be.

- The systemd units pass `systemd-analyze verify` (with the drop-in for docker pools), keep
  their hardening (`systemd-analyze security --offline`), and stop the way the daemon and the
  worker need. PID 1 here is not systemd, so the units are checked, not started.
- deploy/compose.yaml is valid for `docker-compose config`, publishes the daemon on 127.0.0.1
  only, and keeps the daemon's secrets away from the workers. No image can be pulled here, so
  it is not started.
- deploy/daemon.yaml loads with the daemon's own config reader, with the secrets of
  daemon.env.example.
- deploy/Dockerfile builds FROM the locally made test base image (build arg BASE_IMAGE), with
  the dependencies from a wheelhouse made on this machine (`pip download`) and installed with
  `--no-index`: containers here reach Debian's mirror but not PyPI (its TLS certificate is not
  one the base image trusts). The image then runs `reconcile --version`, a dry-run of a
  repository mounted into it, and the daemon as PID 1, stopped by `docker stop`.

The image is built once per session and kept between runs (tests/infra/reconciler_image.py,
shared with tests/docker/test_multi_host.py). Containers are labelled and removed.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import docker.utils.build
import pytest
import yaml
from docker.models.containers import Container

from reconciler import __version__
from reconciler.daemon.config import load_settings
from tests.conftest import GitRepo
from tests.infra.fixtures import unavailable
from tests.infra.reconciler_image import RUN_LABEL, dockerignore_patterns

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
INSTALLED_BINARY = "/usr/local/bin/reconcile"
DAEMON_STOP_PROMISE_S = 10.0

FLOW = """\
from prefect import flow


@flow
def ingest(days: int = 1) -> int:
    return days
"""
POOLS = "work_pools:\n  - name: etl\n    type: process\n"
PREFECT = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: {name: etl}
"""


# --- systemd ---------------------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with all its values in order (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(s|min)?", value)
    assert match, f"unexpected time span {value!r}"
    return float(match[1]) * (60 if match[2] == "min" else 1)


@pytest.fixture
def units_for_verify(tmp_path: Path) -> Path:
    """Copies of the units whose ExecStart runs the `reconcile` installed with these tests
    (verify refuses a binary that does not exist), and the docker drop-in in place for the
    instance `docker-shared`. Nothing else is changed."""
    binary = Path(sys.executable).with_name("reconcile")
    if not binary.is_file():
        binary = Path(shutil.which("reconcile") or "/bin/true")
    for unit in UNITS.glob("*.service"):
        text = unit.read_text()
        assert INSTALLED_BINARY in text
        (tmp_path / unit.name).write_text(text.replace(INSTALLED_BINARY, str(binary)))
    drop_ins = tmp_path / "reconciler-worker@docker-shared.service.d"
    drop_ins.mkdir()
    shutil.copy(UNITS / "docker-socket.conf", drop_ins)
    return tmp_path


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return found


UNIT_NAMES = (
    "reconciler-daemon.service",
    "reconciler-worker@etl.service",
    "reconciler-worker@docker-shared.service",
)


def test_systemd_units_pass_verify_without_a_warning(units_for_verify: Path) -> None:
    analyze = systemd_analyze()

    done = subprocess.run(
        [analyze, "verify", *(f"./{name}" for name in UNIT_NAMES)],
        cwd=units_for_verify,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # verify exits 0 on unknown keys and bad values alike, and only warns: any line about our
    # files is a mistake in them.
    ours = [line for line in done.stderr.splitlines() if "reconciler" in line]
    assert done.returncode == 0, done.stderr
    assert ours == []


@pytest.mark.parametrize(
    ("unit", "most"),
    [("reconciler-daemon.service", 2.5), ("reconciler-worker@etl.service", 4.5)],
)
def test_systemd_units_keep_their_hardening(units_for_verify: Path, unit: str, most: float) -> None:
    analyze = systemd_analyze()
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", f"./{unit}"],
        cwd=units_for_verify,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd < 250)")

    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)

    assert match, done.stdout + done.stderr
    # Without the hardening block the daemon scores 9.2 and the worker 9.2 ("UNSAFE").
    assert float(match[1]) <= most


def test_units_stop_the_way_the_daemon_and_worker_need() -> None:
    daemon = read_unit(UNITS / "reconciler-daemon.service")["Service"]
    worker = read_unit(UNITS / "reconciler-worker@.service")["Service"]

    for service in (daemon, worker):
        # SIGTERM to the main process alone: it stops its own children in order.
        assert service["KillMode"] == ["mixed"]
        assert service["Restart"] == ["on-failure"]
        assert service["User"] == ["reconciler"]
        assert service["StateDirectory"] == ["reconciler"]
        assert service["CacheDirectory"] == ["reconciler"]
        assert service["EnvironmentFile"][0] == "-/etc/reconciler/store.env"
    # The daemon exits within 10 s; the worker needs its runs' grace period (10 s) and more.
    assert seconds(daemon["TimeoutStopSec"][0]) > DAEMON_STOP_PROMISE_S
    assert seconds(worker["TimeoutStopSec"][0]) >= 10 + 20
    assert "-/etc/reconciler/daemon.env" in daemon["EnvironmentFile"]
    # Flows of a process pool inherit the worker's environment: no daemon secrets there.
    assert all("daemon.env" not in value for value in worker["EnvironmentFile"])
    assert "--pool %i" in worker["ExecStart"][0]
    assert "--name %H-%i" in worker["ExecStart"][0]


# --- compose and the daemon config -----------------------------------------------------------


def compose_command() -> list[str]:
    """`docker-compose` (v1, Debian's package) or `docker compose` (v2)."""
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    docker_cli = shutil.which("docker")
    if docker_cli:
        probe = subprocess.run([docker_cli, "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return [docker_cli, "compose"]
    unavailable("neither docker-compose nor `docker compose` is installed (.ci/system-deps)")


def published(ports: list[Any]) -> list[tuple[str, str]]:
    """(host address, host port) of each published port, from either compose's output."""
    pairs = []
    for port in ports:
        if isinstance(port, str):  # v1: "127.0.0.1:8420:8420/tcp"
            host_ip, host_port, _container = port.split(":")
            pairs.append((host_ip, host_port))
        else:  # v2: {"host_ip": ..., "published": ..., "target": ...}
            pairs.append((str(port.get("host_ip", "")), str(port["published"])))
    return pairs


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """deploy/ as a user prepares it: the example env files copied to their real names."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("*.whl", "*.env"))
    for example in copy.glob("*.env.example"):
        shutil.copy(example, copy / example.name.removesuffix(".example"))
    return copy


def compose_config(deploy: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "-f", str(deploy / "compose.yaml"), "config"],
        cwd=deploy,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def test_compose_file_is_valid_and_keeps_the_daemon_on_loopback(deploy_copy: Path) -> None:
    done = compose_config(deploy_copy)

    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "daemon", "worker-etl-1", "worker-etl-2"}
    assert services["postgres"]["image"] == "postgres:16"
    assert "healthcheck" in services["postgres"]
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    daemon = services["daemon"]
    assert published(daemon["ports"]) == [("127.0.0.1", "8420")]
    assert daemon["environment"]["RECONCILER_LISTEN"] == "0.0.0.0:8420"
    assert any(v.endswith(":/etc/reconciler/daemon.yaml:ro") for v in daemon["volumes"])
    assert daemon["depends_on"]["postgres"]["condition"] == "service_healthy"
    secrets = set(env_file(deploy_copy / "daemon.env"))
    assert secrets <= set(daemon["environment"])
    for name in ("worker-etl-1", "worker-etl-2"):
        worker = services[name]
        assert worker["environment"]["RECONCILER_STORE"].startswith("postgresql://")
        assert secrets.isdisjoint(worker["environment"]), f"{name} gets the daemon's secrets"
        assert "--pool" in worker["command"]
    workers = [services[name]["command"] for name in services if name.startswith("worker")]
    names = {command[command.index("--name") + 1] for command in workers}
    assert len(names) == 2


def test_compose_file_refuses_to_start_without_its_env_files(deploy_copy: Path) -> None:
    (deploy_copy / "store.env").unlink()

    done = compose_config(deploy_copy)

    assert done.returncode != 0
    assert "store.env" in done.stderr


def test_example_daemon_config_loads_with_the_example_secrets() -> None:
    environ = env_file(DEPLOY / "daemon.env.example")

    settings = load_settings(str(DEPLOY / "daemon.yaml"), environ)

    assert [r.name for r in settings.repositories] == ["data-flows"]
    # Every variable the config names is in the example, and nothing else is.
    config = yaml.safe_load((DEPLOY / "daemon.yaml").read_text())
    named = {
        value["env"]
        for repository in config["repositories"]
        for value in repository.values()
        if isinstance(value, dict) and "env" in value
    }
    assert named == set(environ)


# --- the image -------------------------------------------------------------------------------


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    sent = docker.utils.build.exclude_paths(
        str(ROOT), dockerignore_patterns(), dockerfile="deploy/Dockerfile"
    )

    assert {
        "pyproject.toml",
        "README.md",
        "reconciler/cli/main.py",
        "schemas/work-pools.schema.json",  # reconciler/schemas links to it
        "deploy/Dockerfile",
    } <= sent
    assert {p.split("/")[0] for p in sent} <= {
        "pyproject.toml",
        "README.md",
        "reconciler",
        "schemas",
        "deploy",
        ".dockerignore",
    }
    assert not any("__pycache__" in p or p.startswith("deploy/systemd") for p in sent)


@pytest.fixture(scope="module")
def deploy_image(reconciler_image: str) -> str:
    """deploy/Dockerfile built FROM the test base image, offline from the wheelhouse (the
    session's build, tests/infra/reconciler_image.py)."""
    return reconciler_image


@contextlib.contextmanager
def container(client: docker.DockerClient, image: str, **options: Any) -> Iterator[Container]:
    """A detached container with this test's label, removed (and killed if need be) after."""
    run_id = uuid.uuid4().hex
    created: Container = client.containers.run(
        image, detach=True, labels={RUN_LABEL: run_id}, network_mode="none", **options
    )
    try:
        yield created
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            created.remove(force=True)
        assert client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}) == []


def run_to_end(
    client: docker.DockerClient, image: str, command: list[str], **options: Any
) -> tuple[int, str]:
    with container(client, image, command=command, **options) as running:
        code = int(running.wait(timeout=120)["StatusCode"])
        return code, running.logs().decode()


def exec_in(running: Container, command: list[str]) -> tuple[int, str]:
    """Exit code and standard output of `command` run in the container (stderr apart)."""
    result = running.exec_run(command, demux=True)
    stdout, _stderr = cast(tuple[bytes | None, bytes | None], result.output)
    assert result.exit_code is not None
    return result.exit_code, (stdout or b"").decode()


@pytest.mark.docker
def test_image_runs_reconcile_as_an_unprivileged_user_with_git(
    docker_client: docker.DockerClient, deploy_image: str
) -> None:
    code, version = run_to_end(docker_client, deploy_image, ["--version"])
    assert (code, version.strip()) == (0, f"reconcile, version {__version__}")

    code, who = run_to_end(
        docker_client,
        deploy_image,
        ["-c", "id -u; git --version; test -w /var/lib/reconciler && echo state-writable"],
        entrypoint=["sh"],
    )
    uid, git_version, writable = who.split("\n")[:3]
    assert code == 0, who
    assert uid == "10001"
    assert git_version.startswith("git version ")
    assert writable == "state-writable"


@pytest.fixture
def flows_repo(tmp_path: Path) -> GitRepo:
    """A small valid repository, owned by this test's user (not the image's: git must still
    read it)."""
    path = tmp_path / "flows"
    path.mkdir()
    repo = GitRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.commit({"flows/etl.py": FLOW, "work-pools.yaml": POOLS, "prefect.yaml": PREFECT})
    return repo


@pytest.mark.docker
def test_image_plans_a_mounted_repository(
    docker_client: docker.DockerClient, deploy_image: str, flows_repo: GitRepo
) -> None:
    code, output = run_to_end(
        docker_client,
        deploy_image,
        ["--dry-run", "--no-color", "--detailed-exitcode", "/repo"],
        volumes={str(flows_repo.path): {"bind": "/repo", "mode": "ro"}},
    )

    assert code == 2, output  # a plan with changes
    assert '# work-pool "etl" will be created (owner: /repo:work-pools.yaml)' in output
    assert '# deployment "ingest/nightly" will be created (owner: /repo:prefect.yaml)' in output
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in output


@pytest.mark.docker
def test_image_runs_the_daemon_as_pid_1_and_stops_on_docker_stop(
    docker_client: docker.DockerClient,
    deploy_image: str,
    flows_repo: GitRepo,
    tmp_path: Path,
) -> None:
    config = tmp_path / "daemon.yaml"
    config.write_text("repositories:\n  - name: flows\n    path: /repo\n")
    config.chmod(0o644)
    head = flows_repo.git("rev-parse", "HEAD")
    healthcheck = compose_healthcheck("daemon")

    with container(
        docker_client,
        deploy_image,
        command=["daemon", "--config", "/etc/reconciler/daemon.yaml"],
        environment={"RECONCILER_LISTEN": "0.0.0.0:8420"},
        volumes={
            str(flows_repo.path): {"bind": "/repo", "mode": "ro"},
            str(config): {"bind": "/etc/reconciler/daemon.yaml", "mode": "ro"},
        },
    ) as daemon:
        statuses = wait_for_applied(daemon, head)
        health_code, health = exec_in(daemon, healthcheck)
        started = time.monotonic()
        daemon.stop(timeout=int(DAEMON_STOP_PROMISE_S * 2))
        stopped_after = time.monotonic() - started
        exit_code = int(daemon.wait(timeout=30)["StatusCode"])
        logs = daemon.logs().decode()

    assert statuses[0]["state"] == "Synced", statuses
    assert (health_code, health) == (0, ""), health
    assert exit_code == 0, logs
    assert "received SIGTERM" in logs
    assert stopped_after < DAEMON_STOP_PROMISE_S, logs


def compose_healthcheck(service: str) -> list[str]:
    """The healthcheck command of `service` in deploy/compose.yaml (its CMD form)."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    test = compose["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return [str(part) for part in test[1:]]


def wait_for_applied(daemon: Container, commit: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The daemon's status once it has applied `commit` (read with `reconcile status` in the
    container, as an operator would)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        daemon.reload()
        if daemon.status == "exited":
            pytest.fail(f"the daemon exited:\n{daemon.logs().decode()}", pytrace=False)
        code, last = exec_in(daemon, ["reconcile", "status", "-o", "json"])
        if code == 0:
            statuses: list[dict[str, Any]] = json.loads(last)
            if statuses and statuses[0].get("applied_commit") == commit:
                return statuses
        time.sleep(0.5)
    pytest.fail(
        f"the daemon did not apply {commit} in {timeout} s: {last}\n{daemon.logs().decode()}"
    )
