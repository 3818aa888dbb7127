"""Store URLs: `sqlite:///relative.db`, `sqlite:////absolute.db`, or a bare file path (the
embedded SQLite store), and `postgresql://user:password@host:port/database` (or
`postgres://`) for a PostgreSQL server. `prefect+http(s)://HOST/api` names a Prefect server
as the target of plans (the engine routes it to reconciler/prefect_target); any other command
on it is refused here with a message."""

from __future__ import annotations

import os

from reconciler.core.errors import StoreUrlError
from reconciler.core.repo_root import default_store_path
from reconciler.store.base import Store

DEFAULT_STORE_PATH = os.path.join(".reconciler", "state.db")
STORE_ENV = "RECONCILER_STORE"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
PREFECT_SCHEMES = ("prefect+http://", "prefect+https://")


def default_store_url() -> str:
    """`.reconciler/state.db` at the root of the repository the current directory is in (any
    subdirectory finds the same one), else under the current directory."""
    return f"sqlite:///{default_store_path()}"


def resolve_store_url(url: str | None) -> str:
    """The flag, else $RECONCILER_STORE, else the default (`default_store_url`)."""
    return url or os.environ.get(STORE_ENV) or default_store_url()


def is_postgres_url(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def is_prefect_store(url: str | None) -> bool:
    """A Prefect server as the target of plans (reconciler/prefect_target), not a store."""
    return bool(url) and str(url).startswith(PREFECT_SCHEMES)


def store_exists(url: str) -> bool:
    """Whether the store at `url` exists before anything opens it: a SQLite file exists; a
    PostgreSQL database, or a Prefect server, is taken as there (reaching it says so when it
    is not)."""
    return is_postgres_url(url) or is_prefect_store(url) or os.path.exists(sqlite_path(url))


def sqlite_path(url: str) -> str:
    """The file of a SQLite store URL."""
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
            "use sqlite:///path/to/state.db or postgresql://user:password@host:port/database",
        )
    return url


def open_store(url: str | None = None, *, readonly: bool = False) -> Store:
    """Open the store at `url`. With `readonly`, a missing store reads as empty and nothing is
    created or migrated: this is what a dry-run uses."""
    resolved = resolve_store_url(url)
    if is_prefect_store(resolved):
        raise StoreUrlError(
            f"{resolved} is a Prefect server: it is the target of `reconcile` and "
            "`reconcile --dry-run`, not a store this command can read or write",
            "use reconciler's own store (sqlite:///... or postgresql://...) for this command; "
            "a daemon keeps `store:` for its own state and names the Prefect server in `target:`",
        )
    if is_postgres_url(resolved):
        from reconciler.store.postgres import PostgresStore

        return PostgresStore(resolved, readonly=readonly)
    from reconciler.store.sqlite import SqliteStore

    return SqliteStore(sqlite_path(resolved), url=resolved, readonly=readonly)
