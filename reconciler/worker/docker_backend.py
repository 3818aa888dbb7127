"""Worker backend `docker`: each run is a container (worker: execute).

`start_container` turns a prepared `DockerJob` (reconciler/worker/job_config.py) into a running
container, as prefect-docker 0.7.4's worker does (docs/design-notes.md#docker-runs):

1. The engine: `docker.from_env()`, checked with a ping.
2. The image, by the job's pull policy: `Never` uses the engine's copy only, `IfNotPresent`
   pulls when the engine has none, `Always` pulls, `IfPossible` pulls and falls back to the
   engine's copy. Registry credentials log in just before a pull.
3. The container is created with the job's command, environment (plus
   RECONCILER_FLOW_PARAMETERS_FILE, the path of the run's parameters), labels, name
   (`name-1`, `name-2`, ... when taken), volumes,
   networks or network mode, memory limits, privileges and extra create arguments; never
   with the engine's auto-remove, so the exit code and output survive the run: with
   `auto_remove` the container is removed after it ends.
4. Our flow runner (reconciler/worker/flow_runner.py, with flow_kind.py and Prefect's logging
   settings beside it) and the flow code fetched on the host (`code_dir`, e.g. a git clone)
   are copied into the container before it starts, at /opt/reconciler/flow_runner.py and
   /opt/reconciler/code (the working directory). A copy,
   not a bind mount: it works with an engine on another machine (DOCKER_HOST), the flow can
   write where it works, and nothing the container writes ends up on the worker's disk (a
   read-only root filesystem cannot take the copy: such a job needs its code in the image and
   its own `command`). Code built into the image (`working_dir`, from
   `set_working_directory` pull steps) is used in place; with neither, the image's WORKDIR
   applies.
5. The output is read from the container's attached stdout and stderr, line by line, on a
   thread, and handed to `on_line(stream, line)`.

Anything that stops the container from starting raises `StartError` with the reason (the run
is CRASHED with it); registry passwords never appear in those reasons.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import docker
import docker.errors
from docker.models.containers import Container
from docker.utils import parse_repository_tag

from reconciler.core.masking import Masker
from reconciler.worker import flow_kind, flow_runner
from reconciler.worker.docker_rules import LOCAL_API_HOSTS
from reconciler.worker.job_config import DockerJob
from reconciler.worker.prefect_runtime import LOGGING_CONFIG
from reconciler.worker.process_backend import StartError

LineSink = Callable[[str, str], None]

RUNNER_PATH: Final = "/opt/reconciler/flow_runner.py"
RUNNER_FILES: Final = {
    RUNNER_PATH: Path(flow_runner.__file__),
    "/opt/reconciler/flow_kind.py": Path(flow_kind.__file__),
    "/opt/reconciler/prefect_logging.yml": LOGGING_CONFIG,
}
"""What the runner needs in the container: itself, the entrypoint reader for code in the
image, and the logging settings of Prefect's engine (reconciler/worker/docker_flows.py)."""
PARAMETERS_PATH: Final = "/opt/reconciler/" + flow_runner.PARAMETERS_FILE_NAME
"""The run's parameters, as JSON: copied in, as the environment cannot carry more than 128 KB."""
CODE_PATH: Final = "/opt/reconciler/code"
NAME_ATTEMPTS: Final = 100
"""Container names tried when the job's name is taken: `name`, `name-1`, ... `name-99`."""
READER_JOIN_SECONDS: Final = 10.0
MAX_LINE_BYTES: Final = 64 * 1024

log = logging.getLogger("reconciler.worker")


class EngineLost(Exception):
    """The Docker engine stopped answering while a container ran (the run is CRASHED)."""


class ContainerHandle:
    """One started container: wait for its exit code, or stop it."""

    def __init__(
        self,
        client: docker.DockerClient,
        container: Container,
        *,
        remove_when_done: bool,
        output: Any,
        reader: threading.Thread,
    ) -> None:
        self._client = client
        self._container = container
        self._remove_when_done = remove_when_done
        self._output = output
        self._reader = reader
        self._lock = threading.Lock()
        self._closed = False

    @property
    def container_id(self) -> str:
        return str(self._container.id)

    @property
    def infrastructure_id(self) -> str:
        return f"container {self.container_id[:12]}"

    def wait(self) -> int:
        """The container's exit code once it ends (-1 when it vanished meanwhile); its output
        has been handed on by then. With `auto_remove`, the container is removed afterwards."""
        code = -1
        try:
            status = self._container.wait().get("StatusCode")
            if isinstance(status, int):
                code = status
        except docker.errors.NotFound:
            pass  # removed by someone else: prefect-docker tolerates it too
        except (docker.errors.DockerException, OSError) as exc:
            self._close(remove=False)
            raise EngineLost(f"lost the Docker engine while the container ran: {exc}") from exc
        self._reader.join(timeout=READER_JOIN_SECONDS)
        self._close(remove=self._remove_when_done)
        return code

    def stop(self, grace_seconds: float) -> None:
        """`docker stop`: SIGTERM (or the image's STOPSIGNAL), then SIGKILL once the grace
        period is over; the engine counts it in whole seconds, rounded up."""
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(docker.errors.NotFound):
                self._container.stop(timeout=max(0, math.ceil(grace_seconds)))

    def _close(self, *, remove: bool) -> None:
        with self._lock:
            _close_output(self._output)
            if remove:
                with contextlib.suppress(docker.errors.DockerException, OSError):
                    self._container.remove(v=True, force=True)  # as --rm: anonymous volumes too
            self._closed = True
            self._client.close()


def start_container(
    job: DockerJob,
    *,
    entrypoint: str,
    parameters: dict[str, Any],
    code_dir: Path | None,
    working_dir: str | None,
    on_line: LineSink,
    runner_options: Sequence[str] = (),
) -> ContainerHandle:
    """`runner_options` go to our flow runner before the entrypoint (no `command` configured)."""
    masker = _credential_masker(job)
    client = _connect()
    try:
        _ensure_image(client, job, masker)
        container = _create(client, job, entrypoint, code_dir, working_dir, masker, runner_options)
        try:
            handle = _start(client, container, job, code_dir, parameters, on_line, masker)
        except BaseException:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                container.remove(force=True)
            raise
    except BaseException:
        client.close()
        raise
    return handle


# --- the engine and the image -------------------------------------------------------------


def _connect() -> docker.DockerClient:
    """A client from the environment (DOCKER_HOST, ...; DOCKER_CLIENT_TIMEOUT in seconds, as
    prefect-docker reads it), once the engine answers."""
    timeout = os.environ.get("DOCKER_CLIENT_TIMEOUT", "").strip()
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    hint = "is dockerd running, and DOCKER_HOST right?"
    try:
        client = docker.from_env(timeout=int(timeout)) if timeout.isdigit() else docker.from_env()
    except docker.errors.DockerException as exc:
        raise StartError(f"no Docker engine is reachable at {where} ({hint}): {exc}") from exc
    try:
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        client.close()
        raise StartError(
            f"no Docker engine is reachable at {where} ({hint}): {_explain(exc)}"
        ) from exc
    return client


def _credential_masker(job: DockerJob) -> Masker:
    credentials = job.registry_credentials
    return Masker([credentials.password] if credentials else [])


def _ensure_image(client: docker.DockerClient, job: DockerJob, masker: Masker) -> None:
    image, policy = job.image, job.pull_policy()
    if policy == "Never":
        if not _present(client, image):
            raise StartError(
                f"image {image!r} is not on the Docker engine, and image_pull_policy is Never "
                "(build or load it there, or allow a pull)"
            )
        return
    if policy == "IfNotPresent" and _present(client, image):
        return
    try:
        _pull(client, job)
    except _PullFailed as exc:
        reason = masker(str(exc))
        if policy == "IfPossible":
            if _present(client, image):
                return
            raise StartError(
                f"image {image!r} could not be pulled ({reason}) and is not on the Docker engine"
            ) from None
        if policy == "IfNotPresent":
            raise StartError(
                f"image {image!r} is not on the Docker engine and pulling it failed: {reason}"
            ) from None
        raise StartError(
            f"pulling image {image!r} failed (image_pull_policy {policy}): {reason}"
        ) from None


def _present(client: docker.DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        raise StartError(f"cannot look up image {image!r}: {exc.explanation or exc}") from exc
    return True


class _PullFailed(Exception):
    pass


def _pull(client: docker.DockerClient, job: DockerJob) -> None:
    credentials = job.registry_credentials
    if credentials is not None:
        try:
            client.login(
                username=credentials.username,
                password=credentials.password,
                registry=credentials.registry_url,
                reauth=credentials.reauth,
            )
        except (docker.errors.DockerException, OSError) as exc:
            raise _PullFailed(
                f"logging in to {credentials.registry_url} failed: {_explain(exc)}"
            ) from None
    repository, tag = parse_repository_tag(job.image)
    try:
        events = client.api.pull(repository, tag=tag or "latest", stream=True, decode=True)
        for event in events:
            if isinstance(event, dict) and event.get("error"):
                raise _PullFailed(str(event["error"]))
    except (docker.errors.DockerException, OSError) as exc:
        raise _PullFailed(_explain(exc)) from None


def _explain(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


# --- the container ------------------------------------------------------------------------


def container_settings(
    job: DockerJob,
    *,
    entrypoint: str,
    code_dir: Path | None,
    working_dir: str | None,
    cwd: Path | None = None,
    platform: str | None = None,
    runner_options: Sequence[str] = (),
) -> dict[str, Any]:
    """The keyword arguments of `containers.create` for `job` (name excluded)."""
    command = (
        list(job.command)
        if job.command_configured
        else ["python3", "-u", RUNNER_PATH, *runner_options, entrypoint]  # -u: output as it comes
    )
    env = {**job.env, flow_runner.PARAMETERS_FILE_VARIABLE: PARAMETERS_PATH}
    network_mode = job.effective_network_mode(platform)
    settings: dict[str, Any] = job.extra_create_kwargs()
    settings.update(
        image=job.image,
        command=command,
        environment=env,
        labels=dict(job.labels),
        volumes=job.resolved_volumes(cwd or Path.cwd()),
        mem_limit=job.mem_limit,
        memswap_limit=job.memswap_limit,
        privileged=job.privileged,
        auto_remove=False,  # removed by us after the exit code and output are read
        detach=True,
        extra_hosts=_extra_hosts(job, network_mode, settings.get("extra_hosts"), platform),
    )
    if job.networks:
        settings["network"] = job.networks[0]
    if network_mode:
        settings["network_mode"] = network_mode
    if code_dir is not None:
        settings["working_dir"] = CODE_PATH
    elif working_dir:
        settings["working_dir"] = working_dir
    for key in ("mem_limit", "memswap_limit", "extra_hosts"):
        if settings[key] is None:
            del settings[key]
    return settings


def _extra_hosts(
    job: DockerJob, network_mode: str | None, configured: Any, platform: str | None
) -> dict[str, str] | None:
    """`host.docker.internal` pointing at the host on Linux when the job's API URL is absent
    or local (as Prefect adds it), merged with the configured `extra_hosts` (a mapping or a
    list of `host:ip`)."""
    hosts: dict[str, str] = {}
    api_url = job.env.get("PREFECT_API_URL")
    local = not api_url or any(
        host in api_url for host in (*LOCAL_API_HOSTS, "host.docker.internal")
    )
    shares_network = bool(network_mode and network_mode.startswith("container:"))
    if (platform or sys.platform) == "linux" and local and not shares_network:
        hosts["host.docker.internal"] = "host-gateway"
    if isinstance(configured, dict):
        hosts.update({str(k): str(v) for k, v in configured.items()})
    elif isinstance(configured, list | tuple):
        for entry in configured:
            name, _, address = str(entry).partition(":")
            hosts[name] = address
    return hosts or None


def _create(
    client: docker.DockerClient,
    job: DockerJob,
    entrypoint: str,
    code_dir: Path | None,
    working_dir: str | None,
    masker: Masker,
    runner_options: Sequence[str],
) -> Container:
    settings = container_settings(
        job,
        entrypoint=entrypoint,
        code_dir=code_dir,
        working_dir=working_dir,
        runner_options=runner_options,
    )
    names: Iterator[str | None] = (
        iter([None])
        if job.name is None
        else (job.name if n == 0 else f"{job.name}-{n}" for n in range(NAME_ATTEMPTS))
    )
    for name in names:
        try:
            return client.containers.create(name=name, **settings)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if name is not None and exc.status_code == 409 and "name" in text.lower():
                continue  # taken: try the next suffix, as prefect-docker does
            raise StartError(
                f"the container could not be created: {masker(_explain(exc))}"
            ) from None
        except TypeError as exc:  # docker-py names its run(): say what the user wrote
            unknown = str(exc).rpartition("argument")[2].strip() or str(exc)
            raise StartError(
                f"the container could not be created: container_create_kwargs has {unknown}, "
                "which docker-py's containers.create does not take"
            ) from None
        except (docker.errors.DockerException, ValueError) as exc:
            raise StartError(f"the container could not be created: {masker(str(exc))}") from None
    raise StartError(
        f"the container name {job.name!r} and its suffixes -1 to -{NAME_ATTEMPTS - 1} are all "
        "taken on the Docker engine"
    )


def _start(
    client: docker.DockerClient,
    container: Container,
    job: DockerJob,
    code_dir: Path | None,
    parameters: dict[str, Any],
    on_line: LineSink,
    masker: Masker,
) -> ContainerHandle:
    step = "connecting it to its networks"
    try:
        for network in job.networks[1:]:
            client.networks.get(network).connect(container)
        step = (
            "copying the flow runner, the parameters"
            + (" and the code" if code_dir else "")
            + " in"
        )
        _copy_in(container, code_dir, parameters)
        step = "attaching to its output"
        output = client.api.attach(
            str(container.id), stdout=True, stderr=True, stream=True, logs=True, demux=True
        )
    except (docker.errors.DockerException, OSError) as exc:
        raise StartError(
            f"the container could not be prepared ({step}): {masker(_explain(exc))}"
        ) from None
    reader = threading.Thread(
        target=_pump, args=(output, on_line), name=f"logs-{container.short_id}", daemon=True
    )
    reader.start()
    try:
        container.start()
    except (docker.errors.DockerException, OSError) as exc:
        _close_output(output)
        reason = masker(_explain(exc))
        if "executable file not found" in reason or 'exec: "' in reason:
            what = (
                f"the configured command {job.command[0]!r}"
                if job.command_configured
                else "python3, which runs the flow"
            )
            raise StartError(
                f"the image {job.image!r} cannot run {what}: {reason} (use an image that has "
                "it, or configure `command`)"
            ) from None
        raise StartError(f"the container could not start: {reason}") from None
    return ContainerHandle(
        client, container, remove_when_done=job.auto_remove, output=output, reader=reader
    )


def _copy_in(container: Container, code_dir: Path | None, parameters: dict[str, Any]) -> None:
    """Our runner, the run's parameters, and the code when it was fetched on this host, into
    the container."""
    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for directory in ("opt", "opt/reconciler"):
                tar.addfile(_directory_entry(directory))
            for path, source in RUNNER_FILES.items():
                tar.add(str(source), arcname=path.lstrip("/"), filter=_owned_by_root)
            _add_file(tar, PARAMETERS_PATH, json.dumps(parameters).encode("utf-8"))
            if code_dir is not None:
                tar.add(str(code_dir), arcname=CODE_PATH.lstrip("/"), filter=_owned_by_root)
        archive.seek(0)
        container.put_archive("/", archive)


def _add_file(tar: tarfile.TarFile, path: str, data: bytes) -> None:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _directory_entry(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    return info


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


# --- output -------------------------------------------------------------------------------


def _close_output(output: Any) -> None:
    """Close the attached streams and the HTTP response they come in: the SDK's `close()`
    shuts the socket down, but the response's file object keeps its descriptor open until
    the garbage collector finds it."""
    with contextlib.suppress(Exception):
        output.close()
    response = getattr(output, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


def _pump(output: Iterable[tuple[bytes | None, bytes | None]], on_line: LineSink) -> None:
    """Split the attached streams into lines (a line may span several frames; one longer
    than MAX_LINE_BYTES is handed on in pieces). The streams are read to their end even when
    `on_line` fails, so the container never blocks on its output."""
    partial = {"stdout": bytearray(), "stderr": bytearray()}
    sink = _GuardedSink(on_line)
    with contextlib.suppress(docker.errors.DockerException, OSError, ValueError):
        for frame in output:
            for stream, data in zip(("stdout", "stderr"), frame, strict=True):
                if not data:
                    continue
                buffer = partial[stream]
                buffer += data
                *lines, rest = buffer.split(b"\n")
                for line in lines:
                    sink(stream, bytes(line))
                while len(rest) > MAX_LINE_BYTES:
                    sink(stream, bytes(rest[:MAX_LINE_BYTES]))
                    rest = rest[MAX_LINE_BYTES:]
                buffer[:] = rest
    for stream, buffer in partial.items():
        if buffer:
            sink(stream, bytes(buffer))


class _GuardedSink:
    def __init__(self, on_line: LineSink) -> None:
        self.on_line = on_line
        self.failed = False

    def __call__(self, stream: str, raw: bytes) -> None:
        try:
            self.on_line(stream, _decode(raw))
        except Exception:
            if not self.failed:
                log.exception("the output of a container could not be recorded")
            self.failed = True


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")
