"""Credentials removed from URLs before anything stores or shows them (sources, store, errors).

A repository URL may carry credentials two ways: user info (`https://user:token@host/...`) and
query parameters (`?access_token=...`, `?private_token=...`). `strip_credentials` removes both;
it is what owners, generated clone steps, the store, logs and error texts get. A query
parameter is a credential when its name (case-insensitive) is `key`, `sig` or `pass`, ends in
`key`, or contains `token`, `password`, `passwd`, `secret`, `credential`, `auth` or
`signature`; other parameters (`ref=main`) are kept.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_WORDS = ("token", "password", "passwd", "secret", "credential", "auth", "signature")
_SECRET_NAMES = frozenset({"key", "sig", "pass"})
_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
_USERINFO_IN_TEXT = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]+@", re.IGNORECASE)


def is_secret_parameter(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in _SECRET_NAMES
        or lowered.endswith("key")
        or any(word in lowered for word in _SECRET_WORDS)
    )


def strip_credentials(url: str) -> str:
    """`url` without user info and without credential query parameters. A path or scp-style
    address (no `://`) is returned as it is."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        hostname = parts.hostname or ""
        host = f"[{hostname}]" if ":" in hostname else hostname
        if parts.port:
            host += f":{parts.port}"
    except ValueError:  # an unreadable port: drop the user info and the whole query
        return _USERINFO_IN_TEXT.sub(r"\1", url).split("?", 1)[0]
    return urlunsplit((parts.scheme, host, parts.path, _kept_query(parts.query), parts.fragment))


def without_user_info(url: str) -> str:
    """Only the user info removed (what git is told to fetch from keeps its query)."""
    if "://" not in url:
        return url
    return _USERINFO_IN_TEXT.sub(r"\1", url, count=1)


def scrub_urls(text: str) -> str:
    """Every URL quoted in `text` (git's messages, errors) with its credentials removed."""
    return _URL_IN_TEXT.sub(lambda match: strip_credentials(match.group(0)), text)


def _kept_query(query: str) -> str:
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(name, value) for name, value in pairs if not is_secret_parameter(name)]
    if len(kept) == len(pairs):
        return query  # nothing to remove: keep it exactly as written
    return urlencode(kept)
