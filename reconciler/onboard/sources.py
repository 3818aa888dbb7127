"""Where `reconcile import --from URL` reads: anything that yields an `ObservedState`.

A source is a function `observe(url: str) -> ObservedState`, read-only, raising a
`UserError` (with a hint) when the URL cannot be read. Our stores are one (`sqlite:///...`, a
path, `postgresql://...`): the store opened read-only, `Store.observe()`. Another source
plugs in by URL prefix in `SOURCES`, as "module:function", imported only when used: the Prefect
target (`prefect+http://`, `prefect+https://`) provides `observe_url` in
`reconciler.prefect_target.observe`."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from typing import cast

from reconciler.core.errors import ReconcilerError, UserError
from reconciler.model.observed import ObservedState

Observe = Callable[[str], ObservedState]

SOURCES: dict[str, str] = {
    "prefect+http://": "reconciler.prefect_target.observe:observe_url",
    "prefect+https://": "reconciler.prefect_target.observe:observe_url",
}


def masked_url(url: str) -> str:
    """`url` with the password of its user info written `***` (the user name is kept)."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://[^/:@]*):[^/@]*@", r"\1:***@", url)


def observe_source(url: str) -> ObservedState:
    for prefix, target in SOURCES.items():
        if url.startswith(prefix):
            return _plugged(target, url)
    return observe_store(url)


def observe_store(url: str) -> ObservedState:
    from reconciler.store.url import is_postgres_url, open_store, sqlite_path

    if not is_postgres_url(url) and not os.path.isfile(sqlite_path(url)):
        raise UserError(
            f"there is no store at {masked_url(url)}",
            "give the path or URL of an existing SQLite store, or a postgresql:// URL",
        )
    try:
        store = open_store(url, readonly=True)
    except ReconcilerError:
        raise
    except Exception as exc:  # a driver's own error: the server is not there
        raise UserError(
            f"cannot read the store at {masked_url(url)}: {_masked(str(exc), url)}",
            "check that the server is running and the URL is right",
        ) from None
    try:
        return store.observe()
    except ReconcilerError:
        raise
    except Exception as exc:
        raise UserError(
            f"cannot read the store at {masked_url(url)}: {_masked(str(exc), url)}",
            "check that the server is running and the URL is right",
        ) from None
    finally:
        store.close()


def _masked(text: str, url: str) -> str:
    return text.replace(url, masked_url(url)).strip().splitlines()[0] if text.strip() else ""


def _plugged(target: str, url: str) -> ObservedState:
    module_name, function = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise UserError(
            f"cannot import from {masked_url(url)}: this build has no Prefect target",
            "import from a store (sqlite:///..., postgresql://...) instead",
        ) from None
    observe = cast(Observe, getattr(module, function))
    return observe(url)
