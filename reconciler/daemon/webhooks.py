"""Webhook authentication (daemon: HTTP -> trigger).

GitHub signs the body with HMAC-SHA256 under the shared secret (`X-Hub-Signature-256:
sha256=<hex>`); GitLab sends the secret itself (`X-Gitlab-Token`). Both are compared in
constant time. A call without either header is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

MAX_BODY_BYTES = 5 * 1024 * 1024
GITHUB_SIGNATURE = "x-hub-signature-256"
GITLAB_TOKEN = "x-gitlab-token"


def github_signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def authenticate(secret: str, body: bytes, headers: Mapping[str, str]) -> str | None:
    """None when the call is authentic; otherwise why not (no secret material in it).
    `headers` is looked up by lower-case names (Starlette's Headers, or a plain dict)."""
    signature = headers.get(GITHUB_SIGNATURE)
    if signature is not None:
        expected = github_signature(secret, body)
        if hmac.compare_digest(signature.strip().encode(), expected.encode()):
            return None
        return "the X-Hub-Signature-256 signature does not match the body"
    token = headers.get(GITLAB_TOKEN)
    if token is not None:
        if hmac.compare_digest(token.encode(), secret.encode()):
            return None
        return "the X-Gitlab-Token does not match"
    return "no X-Hub-Signature-256 or X-Gitlab-Token header"
