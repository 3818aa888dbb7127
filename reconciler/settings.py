"""One settings object for every process: the CLI, the daemon and the worker.

Resolved once, at the top of each command, with one precedence everywhere:

    defaults < file (daemon.yaml, for the daemon) < environment (RECONCILER_*) < flags

and passed down as a frozen `Settings`; nothing below reads the environment for them again.
The store is opened from it, here only (`Settings.open_store`). docs/settings.md lists every
variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.core.errors import UserError
from reconciler.store.url import DEFAULT_STORE_PATH, default_store_url

if TYPE_CHECKING:
    from reconciler.scheduling.policy import SchedulingPolicy
    from reconciler.store.base import Store

ENV_PREFIX = "RECONCILER_"
DEFAULT_STORE_URL = f"sqlite:///{DEFAULT_STORE_PATH}"
LOG_FORMATS = ("text", "json")


def _default_policy() -> SchedulingPolicy:
    from reconciler.scheduling.policy import SchedulingPolicy

    return SchedulingPolicy()


@dataclass(frozen=True)
class Settings:
    store_url: str = DEFAULT_STORE_URL
    """Where the store is: `--store`, else $RECONCILER_STORE, else `store:` of daemon.yaml,
    else `.reconciler/state.db` at the root of the git repository the current directory is in
    (found from any subdirectory), else under the current directory."""
    step_cache_url: str | None = None
    """Where the results of build and push steps are kept when `store_url` is a Prefect server
    (which has no place for them): `--step-cache`, else $RECONCILER_STEP_CACHE, else, for the
    daemon, its `store:`, else the default store path (see `open_step_cache`). With our
    own store as the target, the store itself keeps them and this is not used."""
    log_format: str = "text"
    scheduling: SchedulingPolicy = field(default_factory=_default_policy)
    """The policy this process stores (the daemon, from `scheduler:` of daemon.yaml); every
    tick reads the stored one (reconciler/scheduling/policy.py)."""

    def open_store(self, *, readonly: bool = False) -> Store:
        """The store of these settings: the one place a process opens it. With `readonly`, a
        missing store reads as empty and nothing is created or migrated (a dry-run)."""
        from reconciler.store.url import open_store

        return open_store(self.store_url, readonly=readonly)

    def open_step_cache(self, *, readonly: bool = False) -> Store:
        """The store keeping the results of build and push steps when `store_url` is a Prefect
        server: `step_cache_url`, else `.reconciler/state.db` at the root of the current
        directory's repository (the store `reconcile` uses by default), used for the step
        cache only. With `readonly`, as `open_store`."""
        from reconciler.store.url import is_prefect_store, open_store

        url = self.step_cache_url or default_store_url()
        if is_prefect_store(url):
            raise UserError(
                f"the step cache {url} is a Prefect server, which has no place for step results",
                "give --step-cache (or RECONCILER_STEP_CACHE) a reconciler store: "
                "sqlite:///path/to/state.db or postgresql://...",
            )
        return open_store(url, readonly=readonly)


@dataclass(frozen=True)
class Layers:
    """The values of one setting in each layer, lowest first; None means "not given"."""

    environ: Mapping[str, str]
    file: Mapping[str, Any] = field(default_factory=dict)
    file_name: str | None = None
    flags: Mapping[str, Any] = field(default_factory=dict)

    def pick(self, key: str) -> tuple[Any, str]:
        """The value of `key` from the highest layer that gives it, and where it came from
        (for messages): `--key`, `RECONCILER_KEY`, or "`key` in FILE"."""
        if self.flags.get(key) not in (None, ""):
            return self.flags[key], f"--{key.replace('_', '-')}"
        env_name = ENV_PREFIX + key.upper()
        if self.environ.get(env_name):
            return self.environ[env_name], env_name
        if self.file.get(key) is not None:
            return self.file[key], f"`{key}` in {self.file_name}"
        return None, "the default"


def resolve_settings(
    environ: Mapping[str, str] | None = None,
    *,
    file: Mapping[str, Any] | None = None,
    file_name: str | None = None,
    flags: Mapping[str, Any] | None = None,
    scheduling: SchedulingPolicy | None = None,
) -> Settings:
    """The settings of this process. `file` holds the top-level keys of daemon.yaml (`store`,
    `log_format`); `flags` the command's options by the same names (None: not given)."""
    layers = Layers(os.environ if environ is None else environ, file or {}, file_name, flags or {})
    store, _ = layers.pick("store")
    step_cache, _ = layers.pick("step_cache")
    log_format, where = layers.pick("log_format")
    if log_format not in (None, *LOG_FORMATS):
        raise UserError(f"{where} must be text or json, not {log_format!r}")
    return Settings(
        store_url=str(store) if store else default_store_url(),
        step_cache_url=str(step_cache) if step_cache else None,
        log_format=log_format or "text",
        scheduling=scheduling or _default_policy(),
    )


def settings_for_store(store_url: str | None) -> Settings:
    """The settings of a command whose only setting is `--store` (the environment as now)."""
    return resolve_settings(flags={"store": store_url})
