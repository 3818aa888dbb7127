"""`prefect_docker.deployments.steps.build_docker_image` and `push_docker_image`, implemented
natively with the docker SDK against the machine's Docker engine
(docs/design-notes.md#docker-steps).

Steps run during apply, after the plan, never during a dry-run. Same keyword arguments and
outputs as prefect-docker's steps; every line the engine sends (build output, pull and push
progress) streams through the step's output, prefixed and masked. Where we differ, on purpose:

- `tag` defaults to a content tag instead of a timestamp: the first 12 hex digits of a SHA-256
  over the build context (the paths `.dockerignore` leaves, sorted, with their contents and
  executable bit), the Dockerfile's text and the build options that shape the image
  (`buildargs`, `labels`, `platform`, `target`). An unchanged context gives the same tag, so
  the engine can skip the rebuild (`build_tag`). A base image rebuilt under the same name does
  not change the tag.
- `pull` defaults to False (Prefect: True): the base image is used as the engine has it, since
  not every machine can reach a registry (the test machines cannot). `pull: true` is passed
  through. `rm` and `forcerm` default to True, as with the docker CLI, so no intermediate
  containers are left behind (Prefect leaves them). Builds have no read timeout unless a
  `timeout` build option sets one: a quiet `RUN` may take long.
- `dockerfile: auto` renders templates/Dockerfile.j2 in the build context: the base image is the
  `base_image` option (ours), else $RECONCILER_DOCKER_BASE_IMAGE, else
  prefecthq/prefect:3-python3.11; requirements are installed with `python -m pip`. Like Prefect,
  it refuses to overwrite an existing Dockerfile. The generated file is always removed after the
  build; `persist_dockerfile` keeps a copy at `dockerfile_output_path` (relative to the build
  context), so the next run can generate it again.
- The build context is the step's working directory, or the `path` option relative to it.
- No per-process output cache (Prefect's `@cacheable`): the engine decides which steps run, so
  `ignore_cache` is accepted and changes nothing. `build_backend: buildx` is not supported.
- `push_docker_image` without a tag pushes every tag of the repository (the engine's behaviour)
  and returns `image` without a tag, where Prefect returns "name:None".

Registry passwords are masked in all output and errors. When the docker SDK cannot be imported,
both steps fail with an install hint; when no engine answers, with a DOCKER_HOST hint.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jinja2

from reconciler.prefect_rules.validation import did_you_mean
from reconciler.steps.context import StepContext, StepError
from reconciler.steps.output import StepOutput

_SDK_IMPORT_ERROR: ImportError | None = None
try:
    import docker
    import docker.errors
    from docker.utils import exclude_paths, match_tag
except ImportError as exc:  # the steps then fail with an install hint
    _SDK_IMPORT_ERROR = exc

AUTO_DOCKERFILE = "auto"
DEFAULT_BASE_IMAGE = "prefecthq/prefect:3-python3.11"
BASE_IMAGE_ENV = "RECONCILER_DOCKER_BASE_IMAGE"
NAMESPACE_ENV = "PREFECT_DEFAULT_DOCKER_BUILD_NAMESPACE"
TAG_LENGTH = 12
CONNECT_TIMEOUT_S = 30
PUSH_READ_TIMEOUT_S = 600
PROGRESS_INTERVAL_S = 2.0

_STEP_PREFIX = "prefect_docker.deployments.steps"
_BACKEND = "docker-py"
_SHAPING_OPTIONS = ("buildargs", "labels", "platform", "target")
_OUR_OPTIONS = ("path", "base_image")
# Parameters of the SDK's build that the step sets itself, or that YAML cannot express.
_SET_BY_STEP = frozenset(
    {"self", "path", "tag", "dockerfile", "decode", "fileobj", "custom_context", "encoding"}
)
_BUILD_STEP_LINE = re.compile(r"^Step (\d+/\d+) : (.*)$", re.MULTILINE)
_UNSAFE_IN_DOCKERFILE = re.compile(r"[\s\"'\\$]")
_TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # the engine colours a RUN's stderr red


# --- build_docker_image ----------------------------------------------------------------------


def build_docker_image(
    image_name: str,
    dockerfile: str = "Dockerfile",
    tag: str | None = None,
    additional_tags: list[str] | None = None,
    ignore_cache: bool = False,
    persist_dockerfile: bool = False,
    dockerfile_output_path: str = "Dockerfile.generated",
    build_backend: str = _BACKEND,
    *,
    context: StepContext,
    **build_kwargs: Any,
) -> dict[str, Any]:
    """Build an image from the step's directory and tag it `image_name:tag` (and each of
    `additional_tags`); `build_kwargs` go to the SDK's `APIClient.build`."""
    _require_sdk()
    _check_backend(build_backend)
    image_name = _qualified_name(image_name, context.env)
    extra_tags = _tag_list(additional_tags)
    auto = dockerfile == AUTO_DOCKERFILE
    options = _build_options(build_kwargs, context, auto)
    if auto:
        _refuse_existing_dockerfile(options.context_dir)
        dockerfile = "Dockerfile"
        text = render_auto_dockerfile(options.context_dir, options.base_image)
    else:
        text = _read_dockerfile(options.context_dir, dockerfile)
    tag = _tag_text(tag, "tag") if tag is not None else None
    tag = tag or build_tag(options.context_dir, dockerfile, text, options.api_kwargs)
    _check_references(image_name, [tag, *extra_tags])
    with _connected(context) as client:
        generated = (
            _generated_dockerfile(
                options.context_dir, text, persist_dockerfile, dockerfile_output_path
            )
            if auto
            else contextlib.nullcontext()
        )
        with generated:
            image_id = _run_build(client, context.output, image_name, dockerfile, options)
        for name in (tag, *extra_tags):
            _tag_image(client, image_id, image_name, name)
    return {
        "image_name": image_name,
        "tag": tag,
        "image": f"{image_name}:{tag}",
        "image_id": image_id,
        "additional_tags": extra_tags,
    }


@dataclass(frozen=True)
class _BuildOptions:
    context_dir: Path
    base_image: str
    api_kwargs: dict[str, Any]


def _build_options(
    build_kwargs: Mapping[str, Any], context: StepContext, auto: bool
) -> _BuildOptions:
    api_kwargs = dict(build_kwargs)
    path = api_kwargs.pop("path", None)
    base_image = api_kwargs.pop("base_image", None)
    _check_build_options(api_kwargs)
    if base_image is not None and not auto:
        raise StepError(
            "`base_image` is only used with `dockerfile: auto`",
            hint="name the base image in your Dockerfile's FROM line, or remove `base_image`",
        )
    if path is not None and not isinstance(path, str):
        raise StepError(f"`path` must be a directory path, not {type(path).__name__}")
    context_dir = context.resolve(path)
    if not context_dir.is_dir():
        raise StepError(
            f"the build context {str(context_dir)!r} is not a directory",
            hint="set `path` to a directory, relative to the step's working directory",
        )
    if "buildargs" in api_kwargs:
        api_kwargs["buildargs"] = _string_map("buildargs", api_kwargs["buildargs"])
    defaults = {"pull": False, "rm": True, "forcerm": True}
    return _BuildOptions(
        context_dir=context_dir.resolve(),
        base_image=str(base_image or context.env.get(BASE_IMAGE_ENV) or DEFAULT_BASE_IMAGE),
        api_kwargs={**defaults, **api_kwargs},
    )


@functools.cache
def _docker_build_options() -> tuple[str, ...]:
    """The options of the SDK's build that a step may set."""
    parameters = inspect.signature(docker.APIClient.build).parameters
    return tuple(sorted(name for name in parameters if name not in _SET_BY_STEP))


def _check_build_options(api_kwargs: Mapping[str, Any]) -> None:
    accepted = _docker_build_options()
    unknown = [name for name in api_kwargs if name not in accepted]
    if unknown:
        listing = ", ".join(sorted((*accepted, *_OUR_OPTIONS)))
        names = ", ".join(f'"{name}"' for name in unknown)
        raise StepError(
            f"build_docker_image does not take {names}; besides its own arguments it takes "
            f"these build options: {listing}",
            hint=did_you_mean(unknown[0], (*accepted, *_OUR_OPTIONS)),
        )


def _string_map(what: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise StepError(f"`{what}` must be a mapping of names to values, not {value!r}")
    return {str(key): "" if item is None else str(item) for key, item in value.items()}


def _read_dockerfile(context_dir: Path, dockerfile: Any) -> str:
    if not isinstance(dockerfile, str) or not dockerfile:
        raise StepError(f"`dockerfile` must be a path or `auto`, not {dockerfile!r}")
    path = context_dir / dockerfile
    if not path.is_file():
        raise StepError(
            f"the Dockerfile {dockerfile!r} does not exist in the build context "
            f"{str(context_dir)!r}",
            hint="set `dockerfile` to its path relative to the build context, or use "
            "`dockerfile: auto` to generate one",
        )
    return path.read_text(encoding="utf-8", errors="surrogateescape")


# --- dockerfile: auto ------------------------------------------------------------------------


@functools.cache
def _auto_template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("reconciler.steps", "templates"),
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("Dockerfile.j2")


def render_auto_dockerfile(context_dir: Path, base_image: str) -> str:
    """The Dockerfile `dockerfile: auto` builds with: FROM `base_image`, install
    requirements.txt when the context has one, then copy the context to
    /opt/prefect/<name of the context directory> and work there."""
    name = context_dir.name
    _check_dockerfile_word("the build context directory's name", name)
    _check_dockerfile_word("`base_image`", base_image)
    return _auto_template().render(
        base_image=base_image,
        workdir=f"/opt/prefect/{name}",
        has_requirements=(context_dir / "requirements.txt").is_file(),
    )


def _check_dockerfile_word(what: str, value: str) -> None:
    if not value or _UNSAFE_IN_DOCKERFILE.search(value):
        raise StepError(
            f"{what} {value!r} cannot go into a generated Dockerfile: it is empty or has "
            "whitespace, quotes, '\\' or '$'",
            hint="rename it, or write a Dockerfile and set `dockerfile` to its path",
        )


def _refuse_existing_dockerfile(context_dir: Path) -> None:
    if (context_dir / "Dockerfile").exists():
        raise StepError(
            f"`dockerfile: auto` would overwrite the Dockerfile that already exists in "
            f"{str(context_dir)!r}",
            hint="build with it (`dockerfile: Dockerfile`), or remove it to have one generated",
        )


@contextlib.contextmanager
def _generated_dockerfile(
    context_dir: Path, text: str, persist: bool, output_path: str
) -> Iterator[None]:
    """`text` as the context's Dockerfile for the build; removed afterwards, with a copy kept
    at `output_path` when `persist`."""
    path = context_dir / "Dockerfile"
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        _refuse_existing_dockerfile(context_dir)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        if persist:
            copy = context_dir / output_path
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(text, encoding="utf-8")


# --- the content tag -------------------------------------------------------------------------


def build_tag(
    context_dir: Path, dockerfile: str, dockerfile_text: str, build_options: Mapping[str, Any]
) -> str:
    """The tag an unchanged build keeps: 12 hex digits of a SHA-256 over the context's paths
    that `.dockerignore` leaves (kind, executable bit, contents), the Dockerfile's text and
    the build options that shape the image. `dockerfile` is relative to `context_dir`."""
    digest = hashlib.sha256()
    for relative in sorted(context_paths(context_dir, dockerfile)):
        digest.update(_path_record(context_dir, relative))
    digest.update(b"dockerfile\0")
    digest.update(hashlib.sha256(dockerfile_text.encode("utf-8", "surrogateescape")).digest())
    shaping = {
        name: _string_map(name, build_options[name]) if name == "buildargs" else build_options[name]
        for name in _SHAPING_OPTIONS
        if build_options.get(name) is not None
    }
    options = json.dumps(shaping, sort_keys=True, default=str).encode()
    digest.update(b"options\0")
    digest.update(hashlib.sha256(options).digest())
    return digest.hexdigest()[:TAG_LENGTH]


def context_paths(context_dir: Path, dockerfile: str) -> set[str]:
    """The paths (files, directories, links) the SDK sends as the build context: what
    `.dockerignore` leaves, plus the Dockerfile."""
    _require_sdk()
    relative = os.path.relpath(context_dir / dockerfile, context_dir)
    inside = None if relative.startswith("..") else relative
    return exclude_paths(str(context_dir), _dockerignore_patterns(context_dir), dockerfile=inside)


def _dockerignore_patterns(context_dir: Path) -> list[str]:
    """The patterns of the context's .dockerignore, read as the SDK reads them."""
    path = context_dir / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _path_record(root: Path, relative: str) -> bytes:
    path = root / relative
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        kind, content = b"L", hashlib.sha256(os.fsencode(os.readlink(path))).digest()
    elif stat.S_ISDIR(mode):
        kind, content = b"D", b""
    elif stat.S_ISREG(mode):
        kind = b"X" if mode & 0o111 else b"F"
        with path.open("rb") as file:
            content = hashlib.file_digest(file, "sha256").digest()
    else:
        return b""  # sockets and FIFOs are not sent
    return kind + b"\0" + os.fsencode(relative) + b"\0" + content


# --- push_docker_image -----------------------------------------------------------------------


def push_docker_image(
    image_name: str,
    tag: str | None = None,
    credentials: Mapping[str, Any] | None = None,
    additional_tags: list[str] | None = None,
    ignore_cache: bool = False,
    build_backend: str = _BACKEND,
    *,
    context: StepContext,
) -> dict[str, Any]:
    """Push `image_name:tag` and `image_name:<each additional tag>`, logging in with
    `credentials` ({username, password, registry_url, reauth}) first when given."""
    _require_sdk()
    _check_backend(build_backend)
    login = _login_details(credentials, context) if credentials is not None else None
    image_name = _qualified_name(image_name, context.env)
    tag = _tag_text(tag, "tag") if tag is not None else None
    extra_tags = _tag_list(additional_tags)
    _check_references(image_name, [name for name in (tag, *extra_tags) if name])
    with _connected(context) as client:
        if login is not None:
            _log_in(client, login)
        for name in (tag, *extra_tags):
            _push(client, context.output, image_name, name)
    return {
        "image_name": image_name,
        "tag": tag,
        "image": f"{image_name}:{tag}" if tag else image_name,
        "additional_tags": extra_tags,
    }


@dataclass(frozen=True)
class _Login:
    username: str
    password: str
    registry: str | None
    reauth: bool


def _login_details(credentials: Any, context: StepContext) -> _Login:
    """The credentials, checked; the password is masked from here on, before anything can
    quote it."""
    if not isinstance(credentials, Mapping):
        raise StepError(
            "`credentials` must be a mapping with username, password and registry_url",
            hint="use a docker-registry-credentials block: "
            '"{{ prefect.blocks.docker-registry-credentials.NAME }}"',
        )
    password = credentials.get("password")
    if isinstance(password, str):
        context.hide(password)
    username = credentials.get("username")
    registry = credentials.get("registry_url")
    if not isinstance(username, str) or not isinstance(password, str) or not password:
        raise StepError(
            "`credentials` needs a `username` and a `password` (text)",
            hint="registry_url (the registry's host[:port]) and reauth are optional",
        )
    if registry is not None and not isinstance(registry, str):
        raise StepError("`credentials.registry_url` must be text, such as registry.example:5000")
    return _Login(username, password, registry, bool(credentials.get("reauth", True)))


def _log_in(client: docker.DockerClient, login: _Login) -> None:
    where = login.registry or "Docker Hub"
    try:
        client.login(
            username=login.username,
            password=login.password,
            registry=login.registry,
            reauth=login.reauth,
        )
    except docker.errors.APIError as exc:
        raise StepError(
            f"logging in to {where} as {login.username!r} failed: {_explanation(exc)}",
            hint="check `credentials`: username, password and registry_url",
        ) from exc
    except (docker.errors.DockerException, OSError) as exc:
        raise _engine_failure(f"logging in to {where}", exc) from exc


def _push(
    client: docker.DockerClient, output: StepOutput, image_name: str, tag: str | None
) -> None:
    target = f"{image_name}:{tag}" if tag else image_name
    status = _StatusLines(output)
    try:
        for event in client.api.push(image_name, tag=tag, stream=True, decode=True):
            if "error" in event:
                message = str(event["error"]).strip()
                raise StepError(f"pushing {target} failed: {message}", hint=_push_hint(message))
            status.show(event)
    except (docker.errors.DockerException, OSError) as exc:
        raise _engine_failure(f"pushing {target}", exc) from exc


def _push_hint(message: str) -> str:
    lowered = message.lower()
    if any(word in lowered for word in ("unauthorized", "denied", "no basic auth")):
        return (
            "give the step `credentials` for this registry (username, password, "
            "registry_url matching the registry in the image name)"
        )
    if "does not exist locally" in lowered or "no such image" in lowered:
        return "build the image first (build_docker_image), or check image_name and tag"
    if "http response to https client" in lowered:
        return "add the registry to the engine's insecure-registries, or serve it over HTTPS"
    return (
        "check that the registry in the image name is running and reachable from the Docker "
        "engine's machine"
    )


# --- talking to the engine -------------------------------------------------------------------


def _require_sdk() -> None:
    if _SDK_IMPORT_ERROR is not None:
        raise StepError(
            "the Docker steps need the `docker` Python package, which cannot be imported "
            f"({_SDK_IMPORT_ERROR})",
            hint="install it in reconciler's environment: pip install 'docker>=7'",
        )


def _check_backend(build_backend: str) -> None:
    if build_backend != _BACKEND:
        raise StepError(
            f"build_backend {build_backend!r} is not supported yet: reconciler builds and "
            f"pushes through the Docker engine's API ({_BACKEND!r})",
            hint=f"remove `build_backend` (or set it to {_BACKEND}); for buildx features, run "
            "`docker buildx build` with run_shell_script",
        )


@contextlib.contextmanager
def _connected(context: StepContext) -> Iterator[docker.DockerClient]:
    """A client for the engine that the step's environment names (DOCKER_HOST, else the
    default socket), checked with a ping."""
    host = context.env.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    client: docker.DockerClient | None = None
    try:
        client = docker.from_env(environment=dict(context.env), timeout=CONNECT_TIMEOUT_S)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        if client is not None:
            client.close()
        raise StepError(
            f"the Docker engine is not reachable at {host}: {exc}",
            hint="start the Docker engine (dockerd), or set DOCKER_HOST in reconcile's "
            "environment to an engine it can reach",
        ) from exc
    client.api.timeout = PUSH_READ_TIMEOUT_S
    try:
        yield client
    finally:
        client.close()


def _run_build(
    client: docker.DockerClient,
    output: StepOutput,
    image_name: str,
    dockerfile: str,
    options: _BuildOptions,
) -> str:
    """Run the build, streaming its output; returns the image ID."""
    lines = output.as_file()
    status = _StatusLines(output)
    step: _BuildStep | None = None
    image_id: str | None = None
    failure: Mapping[str, Any] | None = None
    try:
        events = client.api.build(
            path=str(options.context_dir), dockerfile=dockerfile, decode=True, **options.api_kwargs
        )
        for event in events:
            if "stream" in event:
                text = _TERMINAL_COLOURS.sub("", str(event["stream"]))
                lines.write(text)
                step = _last_build_step(text) or step
            elif "error" in event or "message" in event:
                # Read the stream to its end first: the engine's connection then goes back to
                # the client, which closes it (raising here would leave its socket open).
                failure = failure or event
            elif isinstance(event.get("aux"), Mapping) and "ID" in event["aux"]:
                image_id = str(event["aux"]["ID"])
            else:
                status.show(event)
    except docker.errors.APIError as exc:
        raise StepError(
            f"Docker refused to build {image_name}: {_explanation(exc)}",
            hint="fix the Dockerfile or the build options named in the message",
        ) from exc
    except (docker.errors.DockerException, OSError) as exc:
        raise _engine_failure(f"building {image_name}", exc) from exc
    finally:
        lines.flush()
    if failure is not None:
        raise _build_failure(image_name, failure, step)
    if image_id is None:
        raise StepError(f"Docker finished building {image_name} without reporting an image ID")
    return image_id


class _BuildStep(NamedTuple):
    """A `Step 2/3 : RUN make` line of the build's output."""

    number: str
    instruction: str

    def __str__(self) -> str:
        return f"step {self.number} ({self.instruction})"


def _last_build_step(text: str) -> _BuildStep | None:
    found = _BUILD_STEP_LINE.findall(text)
    if not found:
        return None
    number, instruction = found[-1]
    return _BuildStep(number, instruction.strip())


def _build_failure(image_name: str, event: Mapping[str, Any], step: _BuildStep | None) -> StepError:
    message = str(event.get("error") or event.get("message") or "").strip()
    detail = event.get("errorDetail")
    code = detail.get("code") if isinstance(detail, Mapping) else None
    where = f" at {step}" if step else ""
    if step and step.instruction.upper().startswith("FROM"):
        hint = (
            "the engine does not have that base image and could not pull it: load it into the "
            "engine (docker load, or docker pull where a registry is reachable), or fix the "
            "FROM line"
        )
    else:
        hint = "fix that Dockerfile instruction (the builder's output is in the last lines)"
    return StepError(
        f"building {image_name} failed{where}: {message}",
        exit_code=code if isinstance(code, int) else None,
        hint=hint,
    )


def _tag_image(client: docker.DockerClient, image_id: str, repository: str, tag: str) -> None:
    try:
        tagged = client.api.tag(image_id, repository, tag, force=True)
    except (docker.errors.DockerException, OSError) as exc:
        raise _engine_failure(f"tagging the image as {repository}:{tag}", exc) from exc
    if not tagged:
        raise StepError(f"the Docker engine did not tag the image as {repository}:{tag}")


def _engine_failure(what: str, exc: Exception) -> StepError:
    text = _explanation(exc) if isinstance(exc, docker.errors.APIError) else str(exc)
    return StepError(
        f"{what} failed: {text}",
        hint="check that the Docker engine is running (DOCKER_HOST names the one used)",
    )


def _explanation(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


class _StatusLines:
    """Status events (pull and push progress) as output lines: each new status is shown, and
    a layer's progress bar at most every PROGRESS_INTERVAL_S."""

    def __init__(self, output: StepOutput) -> None:
        self._output = output
        self._shown: dict[str, tuple[str, float]] = {}

    def show(self, event: Mapping[str, Any]) -> None:
        status = str(event.get("status") or "").strip()
        if not status:
            return
        layer = str(event.get("id") or "")
        progress = str(event.get("progress") or "").strip()
        now = time.monotonic()
        previous = self._shown.get(layer)
        if (
            progress
            and previous
            and previous[0] == status
            and now - previous[1] < PROGRESS_INTERVAL_S
        ):
            return
        self._shown[layer] = (status, now)
        self._output.line(
            " ".join(part for part in (layer and f"{layer}:", status, progress) if part)
        )


# --- names and tags --------------------------------------------------------------------------


def _qualified_name(image_name: Any, env: Mapping[str, str]) -> str:
    """`image_name`, with $PREFECT_DEFAULT_DOCKER_BUILD_NAMESPACE in front when it has no
    namespace of its own (no '/'), as Prefect does."""
    if not isinstance(image_name, str) or not image_name:
        raise StepError(f"`image_name` must be a non-empty text, not {image_name!r}")
    if re.search(r"\s", image_name):
        raise StepError(
            f"the image name {image_name!r} contains whitespace",
            hint="an image name looks like registry.example:5000/team/app",
        )
    namespace = env.get(NAMESPACE_ENV, "").strip().rstrip("/")
    return f"{namespace}/{image_name}" if namespace and "/" not in image_name else image_name


def _tag_text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise StepError(f"`{what}` must be text, not {value!r}")
    return str(value)


def _tag_list(tags: Any) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list):
        raise StepError(
            f"`additional_tags` must be a list of tags, not {tags!r}",
            hint='write it as a YAML list, such as ["latest", "v1"]',
        )
    return [_tag_text(tag, "additional_tags") for tag in tags]


def _check_references(image_name: str, tags: list[str]) -> None:
    for reference in (image_name, *(f"{image_name}:{tag}" for tag in tags)):
        if not match_tag(reference):
            raise StepError(
                f"{reference!r} is not a valid image reference",
                hint="use a lowercase name, optionally after a registry host[:port]/ (such as "
                "registry.example:5000/team/app), and a tag of letters, digits, '_', '.' and "
                "'-' (up to 128, not starting with '.' or '-')",
            )


DOCKER_STEPS: dict[str, Callable[..., Any]] = {
    f"{_STEP_PREFIX}.build_docker_image": build_docker_image,
    f"{_STEP_PREFIX}.push_docker_image": push_docker_image,
}
"""The Docker steps under Prefect's names, added to the built-in steps."""
