"""Store URLs: `sqlite:///relative.db`, `sqlite:////absolute.db`, or a bare file path."""

from __future__ import annotations

import os

from reconciler.errors import StoreUrlError
from reconciler.store.base import Store

DEFAULT_STORE_PATH = os.path.join(".reconciler", "state.db")
STORE_ENV = "RECONCILER_STORE"


def resolve_store_url(url: str | None) -> str:
    """The flag, else $RECONCILER_STORE, else the default file under the current directory."""
    return url or os.environ.get(STORE_ENV) or f"sqlite:///{DEFAULT_STORE_PATH}"


def sqlite_path(url: str) -> str:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise StoreUrlError(
                f"store URL {url!r} names no file", "use sqlite:///path/to/state.db"
            )
        return path
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise StoreUrlError(
            f"unsupported store URL scheme {scheme!r}",
            "use sqlite:///path/to/state.db (PostgreSQL is not supported yet)",
        )
    return url


def open_store(url: str | None = None, *, readonly: bool = False) -> Store:
    """Open the store at `url`. With `readonly`, a missing store reads as empty and nothing is
    created or migrated: this is what a dry-run uses."""
    from reconciler.store.sqlite import SqliteStore

    resolved = resolve_store_url(url)
    return SqliteStore(sqlite_path(resolved), url=resolved, readonly=readonly)
