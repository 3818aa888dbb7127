"""`prefect+http://HOST:PORT/api` and `prefect+https://HOST/api/accounts/A/workspaces/W`: a
Prefect server (or a Prefect Cloud workspace) as the target of a plan. The API key comes from
$PREFECT_API_KEY or the file named by $PREFECT_API_KEY_FILE (Prefect Cloud), or a self-hosted
server's $PREFECT_API_AUTH_STRING (`user:password`); neither is ever printed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.core.errors import StoreUrlError

PREFECT_SCHEMES = ("prefect+http://", "prefect+https://")
API_KEY_ENV = "PREFECT_API_KEY"
API_KEY_FILE_ENV = "PREFECT_API_KEY_FILE"
AUTH_STRING_ENV = "PREFECT_API_AUTH_STRING"


def is_prefect_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(PREFECT_SCHEMES)


@dataclass(frozen=True)
class PrefectTargetUrl:
    api_url: str
    """The API's base, as PREFECT_API_URL is written (ends in /api or a workspace path)."""
    api_key: str | None = field(default=None, repr=False)
    auth_string: str | None = field(default=None, repr=False)
    """A self-hosted server's `user:password` (PREFECT_API_AUTH_STRING), sent as Basic auth."""

    def __str__(self) -> str:
        return f"prefect+{self.api_url}"


def parse_prefect_url(url: str, environ: Mapping[str, str] | None = None) -> PrefectTargetUrl:
    env = os.environ if environ is None else environ
    if not is_prefect_url(url):
        raise StoreUrlError(
            f"{url!r} is not a Prefect URL", "use prefect+http://HOST:PORT/api or prefect+https://"
        )
    api_url = url[len("prefect+") :].rstrip("/")
    rest = api_url.split("://", 1)[1]
    if not rest or rest.startswith("/"):
        raise StoreUrlError(f"store URL {url!r} names no host", "use prefect+http://HOST:PORT/api")
    if "@" in rest.split("/", 1)[0]:
        raise StoreUrlError(
            "a Prefect store URL may not hold credentials",
            f"put the API key in ${API_KEY_ENV} or a file named by ${API_KEY_FILE_ENV}",
        )
    return PrefectTargetUrl(api_url, _api_key(env), env.get(AUTH_STRING_ENV) or None)


def _api_key(env: Mapping[str, str]) -> str | None:
    key = env.get(API_KEY_ENV)
    if key:
        return key.strip()
    path = env.get(API_KEY_FILE_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except OSError as exc:
        raise StoreUrlError(
            f"cannot read the Prefect API key file {path}: {exc.strerror}",
            f"${API_KEY_FILE_ENV} names a file that holds the key",
        ) from None
    return text or None
