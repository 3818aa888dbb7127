"""Who may read and who may act, on the web API and the dashboard (web: every request).

Two bearer tokens, read like the daemon's other secrets (never from its config file):

    RECONCILER_API_READ_TOKEN   (or RECONCILER_API_READ_TOKEN_FILE, a file holding it)
    RECONCILER_API_ADMIN_TOKEN  (or RECONCILER_API_ADMIN_TOKEN_FILE)

- the read token reads; the admin token reads and acts (sync, suspend, run, cancel, pause);
- with no token configured, reads are open (and the server must listen on loopback only:
  `check_exposure`); actions still need the admin token, so none is possible until one is set;
- a token that matches neither is refused (401), even where reads are open.

The API takes `Authorization: Bearer TOKEN`. The dashboard keeps the token given on its
sign-in page in an HttpOnly, SameSite=Strict cookie, and its forms carry a CSRF token: an
HMAC, under a key made at start-up, of a random value in a second cookie (double submit).
Bearer requests need no CSRF token: a browser never adds that header on its own.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import HTTPConnection

from reconciler.core.errors import UserError
from reconciler.web.errors import WebError

READ_TOKEN_VARIABLE = "RECONCILER_API_READ_TOKEN"
ADMIN_TOKEN_VARIABLE = "RECONCILER_API_ADMIN_TOKEN"
TOKEN_COOKIE = "reconciler_token"
CSRF_COOKIE = "reconciler_csrf"
CSRF_FIELD = "csrf_token"


class Role(enum.IntEnum):
    ANONYMOUS = 0
    READ = 1
    ADMIN = 2


def _secret(environ: Mapping[str, str], variable: str) -> str | None:
    value = environ.get(variable)
    if value:
        return value
    path = environ.get(f"{variable}_FILE")
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise UserError(
            f"cannot read {variable}_FILE {path}: {exc.strerror or exc}",
            "point it at a readable file holding the token",
        ) from exc
    if not token:
        raise UserError(f"{variable}_FILE {path} is empty", "write the token into it")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Tokens:
    read: str | None = None
    admin: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Tokens:
        tokens = cls(_secret(environ, READ_TOKEN_VARIABLE), _secret(environ, ADMIN_TOKEN_VARIABLE))
        if tokens.read is not None and tokens.read == tokens.admin:
            raise UserError(
                f"{READ_TOKEN_VARIABLE} and {ADMIN_TOKEN_VARIABLE} are the same token",
                "give the admin token a value of its own (e.g. `openssl rand -hex 32`)",
            )
        return tokens

    @property
    def any(self) -> bool:
        return self.read is not None or self.admin is not None

    def role_of(self, presented: str | None) -> Role:
        """The role a presented token grants; raises 401 for a token that matches none."""
        if presented is None or presented == "":
            if self.any:
                raise WebError(
                    401,
                    "this server needs a token",
                    "send `Authorization: Bearer TOKEN` with the read or admin token "
                    f"(the server's {READ_TOKEN_VARIABLE} or {ADMIN_TOKEN_VARIABLE})",
                )
            return Role.ANONYMOUS
        given = presented.encode()
        if self.admin is not None and hmac.compare_digest(given, self.admin.encode()):
            return Role.ADMIN
        if self.read is not None and hmac.compare_digest(given, self.read.encode()):
            return Role.READ
        raise WebError(
            401,
            "the token is not valid here",
            "use the read or admin token this server was started with "
            f"({READ_TOKEN_VARIABLE} / {ADMIN_TOKEN_VARIABLE})",
        )

    def check_exposure(self, host: str) -> None:
        """Refuse to serve beyond loopback with open reads."""
        if not self.any and not is_loopback(host):
            raise UserError(
                f"refusing to listen on {host} with no API token: anyone who can reach it "
                "could read every deployment, run and log",
                f"set {READ_TOKEN_VARIABLE} (and {ADMIN_TOKEN_VARIABLE} to act), or listen "
                "on 127.0.0.1",
            )


def require_admin(role: Role, tokens: Tokens) -> None:
    if role is Role.ADMIN:
        return
    if tokens.admin is None:
        raise WebError(
            403,
            "actions are off: this server has no admin token",
            f"start it with {ADMIN_TOKEN_VARIABLE} (or {ADMIN_TOKEN_VARIABLE}_FILE) set, and "
            "send that token",
        )
    if role is Role.READ:
        raise WebError(403, "the read-only token cannot act", "send the admin token for actions")
    raise WebError(401, "actions need the admin token", "send `Authorization: Bearer ADMIN_TOKEN`")


def bearer_token(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        raise WebError(
            401,
            f"the Authorization header uses {scheme or 'no'} scheme",
            "send `Authorization: Bearer TOKEN`",
        )
    return credentials.strip()


def actor(role: Role, connection: HTTPConnection, via: str) -> str:
    """Who, as the audit log records it: the token's role (and a short fingerprint of no
    use to anyone without the token), the client's address, API or dashboard."""
    client = connection.client.host if connection.client else "unknown"
    return f"{role.name.lower()} token from {client} via {via}"


class Csrf:
    """The dashboard forms' CSRF tokens (double submit, signed)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def token_for(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def check(self, nonce: str | None, presented: str | None) -> None:
        if not nonce or not presented or not hmac.compare_digest(self.token_for(nonce), presented):
            raise WebError(
                403,
                "the form's CSRF token is missing or stale",
                "reload the page and submit the form again",
            )
