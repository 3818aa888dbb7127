"""Test infrastructure, outside the pipeline: what the Docker tests (build and push steps) need
on a machine where no image can be pulled from any registry.

- `ensure_base_image()` makes `reconciler-test-base:bookworm` from Debian packages: debootstrap
  (minbase + python3) from the machine's Debian mirror, trimmed, imported with `docker import`.
  The root filesystem tarball is cached under ~/.cache/reconciler-tests/ (or
  $RECONCILER_TEST_CACHE), so a removed image is re-imported in seconds; the image itself is
  reused while `docker image inspect` finds it with the current recipe label.
- `running_registry(auth=False)` runs Debian's `docker-registry` (distribution v2) on a free
  127.0.0.1 port with its storage in a temporary directory, optionally behind htpasswd basic
  auth, and stops it afterwards. The Docker engine allows plain HTTP to 127.0.0.0/8 by default.

Run `python -m tests.infra.docker_env base-image` to build the image ahead of a test run, or
`python -m tests.infra.docker_env registry [--auth]` to keep a registry up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.infra.package_sources import APT_DIR, NoPackageSource, apt_mirror

BASE_IMAGE = "reconciler-test-base:bookworm"
SUITE = "bookworm"
# Bump when the rootfs recipe changes: a new tarball name and image label force a rebuild.
RECIPE_VERSION = "1"
RECIPE_LABEL = "org.reconciler.test-base.recipe"
SCRATCH_PREFIX = "rootfs-build-"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBOOTSTRAP_TIMEOUT_S = 1200
REGISTRY_START_TIMEOUT_S = 20.0
REGISTRY_USER = "reconciler-test"
DOCKER_CLI_HINT = "it comes with the Docker engine (Debian package docker.io)"
HTPASSWD_HINT = "run `bash .ci/system-deps` (installs the Debian package apache2-utils)"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

# Directories of the root filesystem whose contents the image does not need. /dev too: the
# engine mounts its own, and device nodes in a layer only get in the way.
TRIMMED_DIRS = (
    "dev",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "tmp",
    "var/tmp",
)
# Host details debootstrap copies in; Docker provides its own at run time.
EMPTIED_FILES = ("etc/hostname", "etc/resolv.conf")

Progress = Callable[[str], None]
_log = logging.getLogger(__name__)


class DockerEnvUnavailable(RuntimeError):
    """A tool the Docker tests need is missing (engine, debootstrap, docker-registry,
    htpasswd): tests skip on this, except on CI where it is a failure."""


class DockerEnvError(RuntimeError):
    """A tool was present but failed (mirror unreachable, import refused, registry crashed)."""


@dataclass(frozen=True)
class Registry:
    """A registry running on this machine. `address` is HOST:PORT, the prefix of image names
    pushed to it; `username`/`password` are set when it requires basic auth."""

    address: str
    username: str | None = None
    password: str | None = None

    @property
    def auth_config(self) -> dict[str, str] | None:
        """Credentials in the shape the docker SDK's push/pull `auth_config` takes."""
        if self.username is None or self.password is None:
            return None
        return {"username": self.username, "password": self.password}


def cache_dir() -> Path:
    override = os.environ.get("RECONCILER_TEST_CACHE")
    base = Path(override) if override else Path.home() / ".cache" / "reconciler-tests"
    base.mkdir(parents=True, exist_ok=True)
    return base


def rootfs_tarball() -> Path:
    return cache_dir() / f"{SUITE}-minbase-python3-r{RECIPE_VERSION}.tar"


# --- tools -------------------------------------------------------------------------------


def require_tool(name: str, install_hint: str | None = None) -> str:
    """Absolute path of `name`, looking in the sbin directories too (debootstrap lives there
    and non-root PATHs often lack them). `install_hint` says how to get it; by default, the
    Debian package of the same name through .ci/system-deps."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=search)
    if found is None:
        hint = install_hint or f"run `bash .ci/system-deps` (installs the Debian package {name})"
        raise DockerEnvUnavailable(f"`{name}` is not installed; the Docker tests need it: {hint}.")
    return found


def run_tool(
    args: list[str], what: str, timeout: float = 300, stdin_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise DockerEnvError quoting the command and its output."""
    try:
        done = subprocess.run(
            args, input=stdin_text, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DockerEnvError(f"{what}: `{' '.join(args)}` did not finish in {timeout}s") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        raise DockerEnvError(
            f"{what}: `{' '.join(args)}` exited with {done.returncode}:\n{output[-2000:]}"
        )
    return done


# --- base image ---------------------------------------------------------------------------


def debian_mirror(apt_dir: Path = APT_DIR) -> str:
    """The Debian mirror this machine's apt uses for SUITE; DockerEnvError when it has none."""
    try:
        return apt_mirror(SUITE, apt_dir)
    except NoPackageSource as missing:
        raise DockerEnvError(f"building {BASE_IMAGE}: {missing}") from None


def ensure_base_image(progress: Progress = _log.info) -> str:
    """Name of the test base image, building it first when the engine lacks it. Safe to call
    from several processes at once: a lock file serialises the build."""
    docker = require_tool("docker", DOCKER_CLI_HINT)
    with _build_lock():
        if _image_is_current(docker):
            return BASE_IMAGE
        tarball = rootfs_tarball()
        if not tarball.is_file():
            _remove_abandoned_builds()
            _build_rootfs_tarball(tarball, progress)
        _import_tarball(docker, tarball, progress)
    return BASE_IMAGE


def _import_tarball(docker: str, tarball: Path, progress: Progress) -> None:
    progress(f"importing {tarball} as {BASE_IMAGE}")
    changes = [
        'CMD ["python3"]',
        f"ENV PATH={IMAGE_PATH}",
        "ENV LANG=C.UTF-8",
        f"LABEL {RECIPE_LABEL}={RECIPE_VERSION}",
    ]
    args = [docker, "import", *(f"--change={change}" for change in changes)]
    try:
        run_tool([*args, str(tarball), BASE_IMAGE], "importing the test base image")
    except DockerEnvError as exc:
        raise DockerEnvError(f"{exc}\nIf {tarball} is damaged, delete it to rebuild it.") from exc


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    with open(cache_dir() / "base-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _image_is_current(docker: str) -> bool:
    """True when the engine has BASE_IMAGE with this RECIPE_VERSION's label."""
    label = f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}'
    done = subprocess.run(
        [docker, "image", "inspect", "--format", label, BASE_IMAGE],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0 and "no such image" not in done.stderr.lower():
        raise DockerEnvUnavailable(
            f"`docker image inspect` could not ask the Docker engine: {done.stderr.strip()}"
        )
    return done.returncode == 0 and done.stdout.strip() == RECIPE_VERSION


def _remove_abandoned_builds() -> None:
    """Scratch directories of builds that were killed; only called under the build lock, so
    no other build is using them."""
    for scratch in cache_dir().glob(f"{SCRATCH_PREFIX}*"):
        _unmount_below(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _build_rootfs_tarball(tarball: Path, progress: Progress) -> None:
    """debootstrap into a scratch directory beside the cache, trim it, and tar it to `tarball`
    (written under a temporary name, then renamed, so a crash never leaves half a tarball)."""
    debootstrap = require_tool("debootstrap")
    if os.geteuid() != 0:
        raise DockerEnvUnavailable(
            "building the test base image runs debootstrap, which needs root; run "
            "`sudo python -m tests.infra.docker_env base-image` once, then the tests."
        )
    mirror = debian_mirror()
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=cache_dir()))
    rootfs = scratch / "rootfs"
    log_file = cache_dir() / "debootstrap.log"
    try:
        progress(
            f"building {BASE_IMAGE}: debootstrap {SUITE} from {mirror} "
            f"(first run only, about a minute or two; log: {log_file})"
        )
        _run_debootstrap(debootstrap, rootfs, mirror, log_file)
        trim_rootfs(rootfs)
        partial = scratch / "rootfs.tar"
        run_tool(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
            "archiving the test root filesystem",
        )
        partial.replace(tarball)
    finally:
        _unmount_below(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _run_debootstrap(debootstrap: str, rootfs: Path, mirror: str, log_file: Path) -> None:
    args = [
        debootstrap,
        "--variant=minbase",
        "--include=python3",
        SUITE,
        str(rootfs),
        mirror,
    ]
    with open(log_file, "w") as log:
        try:
            done = subprocess.run(
                args, stdout=log, stderr=subprocess.STDOUT, timeout=DEBOOTSTRAP_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise DockerEnvError(
                f"`{' '.join(args)}` did not finish in {DEBOOTSTRAP_TIMEOUT_S}s; is the mirror "
                f"{mirror} slow or unreachable? Log: {log_file}"
            ) from exc
    if done.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
        raise DockerEnvError(
            f"`{' '.join(args)}` exited with {done.returncode}. Check that this machine reaches "
            f"the Debian mirror {mirror}. Last lines of {log_file}:\n{tail}"
        )


def trim_rootfs(rootfs: Path) -> None:
    """Drop what a test image never reads (apt lists and caches, docs, man pages, locales,
    logs, device nodes) and the host details debootstrap copied in; keeps the image near
    120 MB."""
    for relative in TRIMMED_DIRS:
        directory = rootfs / relative
        if directory.is_dir() and not directory.is_symlink():
            _empty_directory(directory)
    for relative in EMPTIED_FILES:
        target = rootfs / relative
        if target.is_file() and not target.is_symlink():
            target.write_text("")


def _empty_directory(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _unmount_below(directory: Path) -> None:
    """Unmount anything a failed debootstrap left mounted inside `directory` (/proc, /sys),
    deepest first, so removing the directory cannot reach into the host."""
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        mount_points = [line.split()[1] for line in mounts]
    points = [point for point in mount_points if point.startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


# --- registry -----------------------------------------------------------------------------


@contextlib.contextmanager
def running_registry(auth: bool = False) -> Iterator[Registry]:
    """A docker-registry on 127.0.0.1 with its storage in a temporary directory; with
    `auth=True` it accepts only basic auth with the yielded username/password. Stopped and
    its storage removed on exit."""
    binary = require_tool("docker-registry")
    htpasswd = require_tool("htpasswd", HTPASSWD_HINT) if auth else None
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-registry-"))
    try:
        username = password = None
        if htpasswd is not None:
            username, password = REGISTRY_USER, secrets.token_urlsafe(18)
            _write_htpasswd(htpasswd, workdir / "htpasswd", username, password)
        process, address = _start_on_a_free_port(binary, workdir, auth)
        try:
            yield Registry(address, username, password)
        finally:
            _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start_on_a_free_port(
    binary: str, workdir: Path, auth: bool, attempts: int = 3
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the registry on a port the kernel just called free; another process may take it
    between the check and the registry's bind, so try a few ports."""
    for _ in range(attempts - 1):
        try:
            return _start_and_wait(binary, workdir, auth)
        except DockerEnvError as exc:
            if "address already in use" not in str(exc):
                raise
    return _start_and_wait(binary, workdir, auth)


def _start_and_wait(binary: str, workdir: Path, auth: bool) -> tuple[subprocess.Popen[bytes], str]:
    address = f"127.0.0.1:{free_port()}"
    config = workdir / "config.yml"
    config.write_text(yaml.safe_dump(registry_config(address, workdir, auth)))
    process = _start_registry(binary, config, workdir / "registry.log")
    try:
        _wait_until_serving(address, process, workdir / "registry.log")
    except DockerEnvError:
        _stop(process)
        raise
    return process, address


def registry_config(address: str, workdir: Path, auth: bool) -> dict[str, object]:
    """The registry's config.yml: Debian's default (/etc/docker/registry/config.yml) bound to
    loopback, storage in `workdir`, quiet logs, and htpasswd auth only when asked."""
    config: dict[str, object] = {
        "version": 0.1,
        "log": {
            "level": "warn",
            "accesslog": {"disabled": True},
            "fields": {"service": "reconciler-test-registry"},
        },
        "storage": {
            "cache": {"blobdescriptor": "inmemory"},
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
        },
        "http": {
            "addr": address,
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }
    if auth:
        config["auth"] = {
            "htpasswd": {"realm": "reconciler-test", "path": str(workdir / "htpasswd")}
        }
    return config


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_htpasswd(htpasswd: str, path: Path, username: str, password: str) -> None:
    # bcrypt (-B) is the only hash the registry accepts; -i reads the password from stdin so
    # it never shows in a process listing.
    done = run_tool(
        [htpasswd, "-Bin", username], "hashing the registry password", stdin_text=password
    )
    path.write_text(done.stdout)


def _start_registry(binary: str, config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    # REGISTRY_* variables override the config file; keep the environment's out of it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def _die_with_parent() -> None:
    """In the child before exec: have Linux send SIGTERM when the thread that started it
    ends, so a killed test run leaves no registry behind (prctl PR_SET_PDEATHSIG). Hence
    `running_registry` belongs in a long-lived thread, as pytest's main thread is."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _wait_until_serving(address: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll GET /v2/ until the registry answers (200, or 401 behind auth)."""
    deadline = time.monotonic() + REGISTRY_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DockerEnvError(
                f"docker-registry exited with {process.returncode} while starting on "
                f"{address}:\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise DockerEnvError(
        f"docker-registry did not answer on http://{address}/v2/ within "
        f"{REGISTRY_START_TIMEOUT_S}s:\n{log_path.read_text(errors='replace')[-2000:]}"
    )


# --- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.infra.docker_env", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("base-image", help=f"build {BASE_IMAGE} if missing; print its name")
    registry = commands.add_parser("registry", help="run a test registry until Ctrl-C")
    registry.add_argument("--auth", action="store_true", help="require basic auth")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "base-image":
            sys.stdout.write(ensure_base_image() + "\n")
        else:
            _serve_until_interrupted(auth=args.auth)
    except (DockerEnvUnavailable, DockerEnvError) as exc:
        _log.error("%s", exc)
        return 1
    return 0


def _serve_until_interrupted(auth: bool) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it cleanly too
    with running_registry(auth=auth) as registry:
        credentials = f" user={registry.username} password={registry.password}" if auth else ""
        sys.stdout.write(f"registry {registry.address}{credentials} (Ctrl-C stops it)\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    sys.exit(main())
