"""prefect-docker 0.7.4's small rules for a container job (docs/design-notes.md#docker-runs), as
pure functions: label and container-name forms, the image tag behind the default pull policy, the
inferred network mode, and which volume strings are accepted.

Place: worker. `reconciler.worker.job_config` applies them when it prepares a `DockerJob`; the
Docker backend uses the job's methods built on them.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
import urllib.parse
from collections.abc import Mapping
from typing import Final

PULL_POLICIES: Final[tuple[str, ...]] = ("IfNotPresent", "Always", "IfPossible", "Never")
LOCAL_API_HOSTS: Final[tuple[str, ...]] = ("localhost", "127.0.0.1")

_VOLUME_NAME: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_CONTAINER_NAME_DISALLOWED: Final = re.compile(r"[^a-zA-Z0-9_.-]+")
_CONTAINER_NAME_MAX: Final = 250


def docker_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels in Docker's reverse-DNS form: a namespace before `/` is reversed and joined
    with a dot (`prefect.io/flow-run-id` -> `io.prefect.flow-run-id`); others are kept."""
    converted: dict[str, str] = {}
    for key, value in labels.items():
        if "/" in key:
            namespace, rest = key.split("/", 1)
            key = ".".join(reversed(namespace.split("."))) + "." + rest
        converted[key] = value
    return converted


def container_name(name: str) -> str | None:
    """`name` made a valid container name (python-slugify with Docker's characters, case
    kept, 250 characters at most, no leading `_`, `-` or `.`); None when nothing is left.

    Accented letters lose their accents (`é` -> `e`); other non-ASCII characters are
    dropped (python-slugify would transliterate them).
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"(?<=\d),(?=\d)", "", text)  # 1,000 -> 1000
    text = _CONTAINER_NAME_DISALLOWED.sub("-", text)
    text = re.sub(r"-{2,}", "-", text).strip("-")
    text = text[:_CONTAINER_NAME_MAX].strip("-")
    return text.lstrip("_-.") or None


def image_tag(image: str) -> str | None:
    """The tag or digest of an image reference (`reg:5000/a/b:1.2` -> `1.2`), or None.
    A registry's port is not a tag."""
    first, slash, path = image.partition("/")
    if not slash:
        path = first
    if "@" in path:
        return path.split("@", 1)[1]
    if ":" in path:
        return path.rsplit(":", 1)[1]
    return None


def default_pull_policy(image: str) -> str:
    """`Always` for a `latest` tag or none, `IfNotPresent` for any other tag or a digest
    (Kubernetes' rule, which prefect-docker applies when no policy is configured)."""
    tag = image_tag(image)
    return "Always" if tag is None or tag == "latest" else "IfNotPresent"


def inferred_network_mode(api_url: str | None, platform: str | None = None) -> str | None:
    """`host` on Linux when the API URL points at this machine, else None (for a job with
    neither a configured network mode nor networks). `platform` defaults to `sys.platform`."""
    if not api_url:
        return None
    try:
        host = urllib.parse.urlparse(api_url).netloc.split(":")[0]
    except ValueError:
        return None
    on_linux = (platform or sys.platform) == "linux"
    return "host" if on_linux and host in LOCAL_API_HOSTS else None


def container_api_url(url: str) -> str:
    """A local API URL as a container on a bridge network reaches it."""
    for local in LOCAL_API_HOSTS:
        url = url.replace(local, "host.docker.internal")
    return url


def is_relative_bind(source: str) -> bool:
    return source in (".", "..") or source.startswith(("./", "../"))


def volume_problem(volume: str) -> str | None:
    """Why prefect-docker would refuse `volume`, or None when it accepts it: `/container`
    (anonymous), `/host:/container[:ro|rw]` or a relative host path (bind mount: the
    container path must be absolute), `name:/container[:ro|rw]` (named volume)."""
    text = volume.strip()
    if not text:
        return "it is empty"
    parts = text.split(":")
    if len(parts) == 1:
        return None if text.startswith("/") else "a container-only volume needs an absolute path"
    if len(parts) > 3:
        return "expected SOURCE:CONTAINER_PATH with at most one :OPTIONS"
    source, container = parts[0], parts[1]
    if not source or not container:
        return "the source and the container path must not be empty"
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        return f"the option {parts[2]!r} is not 'ro' or 'rw'"
    if source.startswith("/") or is_relative_bind(source):
        if not container.startswith("/"):
            return "the container path of a bind mount must be absolute"
        return None
    if not _VOLUME_NAME.match(source):
        return f"{source!r} is neither a path (start it with / or ./) nor a valid volume name"
    return None


def resolved_volume(volume: str, cwd: str | os.PathLike[str]) -> str:
    """`volume` with a relative bind source made absolute against `cwd`."""
    source, sep, rest = volume.strip().partition(":")
    if sep and is_relative_bind(source):
        return f"{os.path.abspath(os.path.join(os.fspath(cwd), source))}:{rest}"
    return volume
