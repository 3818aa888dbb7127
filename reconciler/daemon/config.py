"""The daemon's settings: its config file, then `RECONCILER_*` variables, then flags.

Precedence is defaults < file < environment < flags, resolved by reconciler/settings.py (the
part every process shares is its `Settings`). The file (schema:
schemas/daemon.schema.json) lists the repositories; every problem in it is reported with
file:line, all at once. Secrets (webhook keys, git passwords) are never written in the file:
it names an environment variable or a file, read here once at start-up, and the values are
wrapped in `Secret` so no repr, log line or error can show them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler.core.diagnostics import Diagnostic, Location, error
from reconciler.core.errors import ConfigError, UserError
from reconciler.desired.state import DEFAULT_PREFECT_GLOB
from reconciler.prefect_rules.validation import validate_document
from reconciler.prefect_rules.yamlload import LoadedDocument, YamlLoadError, load_yaml
from reconciler.scheduling.policy import SchedulingPolicy
from reconciler.scheduling.scheduler import DEFAULT_BUDGET_SECONDS, LatePolicy, LookAhead
from reconciler.settings import Layers, Settings, resolve_settings

SCHEMA = "daemon.schema.json"
DEFAULT_LISTEN = "127.0.0.1:8420"
DEFAULT_DRIFT_INTERVAL = 300.0
DEFAULT_POLL_INTERVAL = 60.0
DEFAULT_BRANCH = "main"
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_REMOTE_SCHEMES = ("https://", "http://", "git://", "ssh://", "file://")


class Secret:
    """A secret value: its text only through `.value`, never through str() or repr()."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @property
    def value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class RepositoryConfig:
    name: str
    url: str | None = None
    path: str | None = None
    branch: str = DEFAULT_BRANCH
    prefect_glob: str = DEFAULT_PREFECT_GLOB
    poll_interval: float = DEFAULT_POLL_INTERVAL
    webhook_secret: Secret | None = None
    username: Secret | None = None
    password: Secret | None = None
    prune: bool = True
    self_heal: bool = True
    allow_empty: bool = False

    @property
    def is_remote(self) -> bool:
        return self.url is not None

    @property
    def source(self) -> str:
        """The URL or path, for status and logs (URLs never carry credentials here)."""
        return self.url or self.path or ""


NOTIFICATION_EVENTS = ("error", "stalled", "drift", "run_failed", "run_crashed", "automation")


@dataclass(frozen=True)
class NotificationTarget:
    """One `notifications:` entry: an Apprise URL (a Secret: it may hold a token) and the
    events sent to it."""

    url: Secret
    events: frozenset[str] = frozenset(NOTIFICATION_EVENTS)
    where: str = ""
    """Its place in the config file, for logs (never the URL)."""


@dataclass(frozen=True)
class EventWebhook:
    """`event_webhooks:` of daemon.yaml: POST /hooks/events/NAME, signed with `secret`; the
    body becomes an event through `template` (reconciler/prefect_rules/triggers.py)."""

    name: str
    secret: Secret
    template: str


@dataclass(frozen=True)
class DaemonSettings:
    repositories: tuple[RepositoryConfig, ...]
    settings: Settings = field(default_factory=Settings)
    """What the daemon shares with the CLI and the worker: the store, the log format and the
    scheduling policy it stores for every tick."""
    listen_host: str = "127.0.0.1"
    listen_port: int = 8420
    cache_dir: Path = field(
        default_factory=lambda: Path.home() / ".cache" / "reconciler" / "repositories"
    )
    drift_interval: float = DEFAULT_DRIFT_INTERVAL
    config_file: str | None = None
    scheduler_interval: float = 10.0
    event_retention: float = 7 * 86400.0
    """`events.retention`: events older than this are deleted (by the active daemon)."""
    trigger_interval: float = 0.1
    """`events.interval`: how often the trigger evaluator looks for new events."""
    notifications: tuple[NotificationTarget, ...] = ()
    event_webhooks: tuple[EventWebhook, ...] = ()
    target_url: str | None = None
    """`target:` a Prefect server that plans are applied into (reconciler/prefect_target);
    the store then keeps only the daemon's leases and statuses."""

    @property
    def plan_settings(self) -> Settings:
        """The settings a reconcile runs with: the target's URL in place of the store's, and
        the daemon's `store:` keeping the results of build and push steps (unless
        $RECONCILER_STEP_CACHE names another store)."""
        if self.target_url is None:
            return self.settings
        step_cache = self.settings.step_cache_url or self.settings.store_url
        return replace(self.settings, store_url=self.target_url, step_cache_url=step_cache)

    @property
    def store_url(self) -> str:
        return self.settings.store_url

    @property
    def log_format(self) -> str:
        return self.settings.log_format

    def repository(self, name: str) -> RepositoryConfig | None:
        return next((r for r in self.repositories if r.name == name), None)


@dataclass(frozen=True)
class Overrides:
    """Values from flags; None means "not given"."""

    store_url: str | None = None
    listen: str | None = None
    cache_dir: str | None = None
    drift_interval: str | None = None
    log_format: str | None = None


def load_settings(
    config_path: str, environ: Mapping[str, str], overrides: Overrides | None = None
) -> DaemonSettings:
    """Read and check the config file, then apply the environment and the flags.
    Raises ConfigError (with file:line for each problem) or UserError."""
    try:
        content = Path(config_path).read_bytes()
    except OSError as exc:
        raise UserError(
            f"cannot read the daemon config {config_path}: {exc.strerror or exc}",
            "pass an existing file with --config",
        ) from None
    try:
        document = load_yaml(content, config_path)
    except YamlLoadError as exc:
        raise ConfigError([exc.diagnostic]) from None
    problems = list(document.diagnostics)
    if not isinstance(document.data, dict):
        problems.append(
            error("the file must be a mapping with a `repositories` list", document.location(()))
        )
        raise ConfigError(problems)
    problems.extend(validate_document(document, SCHEMA, strict=True))
    if any(p.is_error for p in problems):
        raise ConfigError(problems)
    reader = _Reader(document, Path(config_path).resolve().parent, environ)
    repositories = tuple(
        reader.repository(raw, index) for index, raw in enumerate(document.data["repositories"])
    )
    notifications = tuple(
        reader.notification(raw, index)
        for index, raw in enumerate(document.data.get("notifications") or [])
    )
    event_webhooks = tuple(
        reader.event_webhook(raw, index)
        for index, raw in enumerate(document.data.get("event_webhooks") or [])
    )
    values = dict(document.data)
    if reader.problems:
        raise ConfigError(reader.problems)
    scheduler = values.get("scheduler") or {}
    layered = _layered(
        values, repositories, config_path, environ, overrides or Overrides(), scheduler
    )
    target = values.get("target")
    events = values.get("events") or {}
    retention = events.get("retention")
    interval = events.get("interval")
    return replace(
        layered,
        notifications=tuple(n for n in notifications if n is not None),
        event_webhooks=tuple(w for w in event_webhooks if w is not None),
        event_retention=(
            parse_duration(retention, "events.retention")
            if retention is not None
            else layered.event_retention
        ),
        trigger_interval=(
            parse_duration(interval, "events.interval")
            if interval is not None
            else layered.trigger_interval
        ),
        target_url=str(target) if target else None,
    )


def _scheduler(raw: dict[str, Any]) -> tuple[float, SchedulingPolicy]:
    """`scheduler:` of the file: the tick's interval, and the policy stored for every tick."""

    def seconds(key: str, default: float) -> float:
        return parse_duration(raw[key], f"scheduler.{key}") if key in raw else default

    look = LookAhead(
        min_runs=int(raw.get("min_runs", LookAhead.min_runs)),
        min_seconds=seconds("min_time", LookAhead.min_seconds),
        max_runs=int(raw.get("max_runs", LookAhead.max_runs)),
        max_seconds=seconds("max_time", LookAhead.max_seconds),
    )
    late = LatePolicy(
        after_seconds=seconds("late_after", LatePolicy.after_seconds),
        skip=raw.get("late_runs", "run") == "skip",
    )
    return seconds("interval", 10.0), SchedulingPolicy(
        look_ahead=look, late=late, budget_seconds=seconds("budget", DEFAULT_BUDGET_SECONDS)
    )


def _layered(
    file_values: dict[str, Any],
    repositories: tuple[RepositoryConfig, ...],
    config_path: str,
    environ: Mapping[str, str],
    overrides: Overrides,
    scheduler: dict[str, Any],
) -> DaemonSettings:
    flags = {
        "store": overrides.store_url,
        "listen": overrides.listen,
        "cache_dir": overrides.cache_dir,
        "drift_interval": overrides.drift_interval,
        "log_format": overrides.log_format,
    }
    layers = Layers(environ, file_values, config_path, flags)
    interval, policy = _scheduler(scheduler)
    shared = resolve_settings(
        environ, file=file_values, file_name=config_path, flags=flags, scheduling=policy
    )
    listen, listen_from = layers.pick("listen")
    cache_dir, _ = layers.pick("cache_dir")
    drift, drift_from = layers.pick("drift_interval")
    host, port = parse_listen(listen or DEFAULT_LISTEN, listen_from)
    base = Path(config_path).resolve().parent
    defaults = DaemonSettings(repositories)
    return DaemonSettings(
        repositories=repositories,
        settings=shared,
        listen_host=host,
        listen_port=port,
        cache_dir=(base / os.path.expanduser(cache_dir)) if cache_dir else defaults.cache_dir,
        drift_interval=(
            parse_duration(drift, drift_from) if drift is not None else DEFAULT_DRIFT_INTERVAL
        ),
        config_file=config_path,
        scheduler_interval=interval,
    )


def parse_listen(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UserError(f"{where} must be HOST:PORT, not {value!r}", "for example 127.0.0.1:8420")
    return host or "127.0.0.1", int(port)


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number or "90s" / "5m" / "1h"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) and float(text) > 0:
        return float(text)
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise UserError(
            f"{where} must be a duration such as 90s, 5m or 1h, not {value!r}",
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _Reader:
    """Turns the validated mapping of each repository into a RepositoryConfig, collecting
    every problem with its place."""

    def __init__(self, document: LoadedDocument, base: Path, environ: Mapping[str, str]):
        self.document = document
        self.base = base
        self.environ = environ
        self.problems: list[Diagnostic] = []
        self.names: dict[str, int] = {}
        self.names_of_hooks: set[str] = set()

    def at(self, index: int, *keys: str) -> Location:
        return self.document.location(("repositories", index, *keys))

    def fail(self, message: str, index: int, *keys: str, hint: str | None = None) -> None:
        self.problems.append(error(message, self.at(index, *keys), hint))

    def repository(self, raw: dict[str, Any], index: int) -> RepositoryConfig:
        name = raw["name"]
        if name in self.names:
            first = self.at(self.names[name], "name")
            self.fail(
                f"repository name {name!r} is used twice (first at {first})",
                index,
                "name",
                hint="names appear in webhook paths and status: make each one unique",
            )
        else:
            self.names[name] = index
        url, path = raw.get("url"), raw.get("path")
        if (url is None) == (path is None):
            self.fail(
                f"repository {name!r} needs exactly one of `url` (remote) and `path` (local)",
                index,
                hint="write `url:` for a repository to clone and fetch, `path:` for one on disk",
            )
        if url is not None and not url.startswith(_REMOTE_SCHEMES):
            self.fail(
                f"url {url!r} of repository {name!r} is not a URL git can fetch over the network",
                index,
                "url",
                hint="use https://, http://, git:// or ssh://; a repository on this machine "
                "is written as `path:`",
            )
        if url is not None and "@" in url.split("://", 1)[-1].split("/", 1)[0]:
            self.fail(
                f"the url of repository {name!r} carries credentials",
                index,
                "url",
                hint="remove them from the URL and name an environment variable or file in "
                "`username:` and `password:`",
            )
        if path is not None:
            path = str((self.base / os.path.expanduser(path)).resolve())
            if not Path(path).is_dir():
                self.fail(
                    f"path {raw['path']!r} of repository {name!r} is not a directory",
                    index,
                    "path",
                )
        return RepositoryConfig(
            name=name,
            url=url,
            path=path,
            branch=raw.get("branch", DEFAULT_BRANCH),
            prefect_glob=raw.get("prefect_file", DEFAULT_PREFECT_GLOB),
            poll_interval=(
                parse_duration(raw["poll_interval"], "poll_interval")
                if "poll_interval" in raw
                else DEFAULT_POLL_INTERVAL
            ),
            webhook_secret=self.secret(raw, index, "webhook_secret"),
            username=self.secret(raw, index, "username"),
            password=self.secret(raw, index, "password"),
            prune=raw.get("prune", True),
            self_heal=raw.get("self_heal", True),
            allow_empty=raw.get("allow_empty", False),
        )

    def notification(self, raw: dict[str, Any], index: int) -> NotificationTarget | None:
        where = self.document.location(("notifications", index))
        url = raw["url"]
        if isinstance(url, dict):
            value = self.secret_from(
                url, ("notifications", index, "url"), f"the url of notification {index + 1}"
            )
            if value is None:
                return None
        else:
            value = Secret(url)
        from reconciler.daemon.notify import check_url  # imports Apprise: only when used

        problem = check_url(value.value)
        if problem is not None:
            self.problems.append(
                error(
                    f"the url of notification {index + 1} {problem}",
                    self.document.location(("notifications", index, "url")),
                    "see Apprise's list of services; a webhook is json://HOST/PATH",
                )
            )
            return None
        events = frozenset(raw.get("events") or NOTIFICATION_EVENTS)
        return NotificationTarget(value, events, str(where))

    def event_webhook(self, raw: dict[str, Any], index: int) -> EventWebhook | None:
        from reconciler.prefect_rules.triggers import check_template

        path = ("event_webhooks", index)
        if raw["name"] in self.names_of_hooks:
            self.problems.append(
                error(
                    f"event webhook name {raw['name']!r} is used twice",
                    self.document.location((*path, "name")),
                )
            )
        self.names_of_hooks.add(raw["name"])
        problem = check_template(raw["template"])
        if problem is not None:
            self.problems.append(
                error(
                    f"the template of event webhook {raw['name']!r} does not parse: {problem}",
                    self.document.location((*path, "template")),
                )
            )
        secret = self.secret_from(
            raw["secret"], (*path, "secret"), f"the secret of event webhook {raw['name']}"
        )
        if secret is None or problem is not None:
            return None
        return EventWebhook(raw["name"], secret, raw["template"])

    def secret_from(
        self, source: dict[str, Any], path: tuple[str | int, ...], what: str
    ) -> Secret | None:
        """A secret of a `{env: NAME}` or `{file: PATH}` source outside `repositories`."""
        at = self.document.location(path)
        if "env" in source:
            value = self.environ.get(source["env"])
            if not value:
                self.problems.append(
                    error(
                        f"environment variable {source['env']} ({what}) is not set",
                        at,
                        f"export {source['env']} before starting the daemon",
                    )
                )
                return None
            return Secret(value)
        file = self.base / os.path.expanduser(source["file"])
        try:
            text = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problems.append(error(f"cannot read {file} ({what}): {reason}", at))
            return None
        if not text:
            self.problems.append(error(f"{file} ({what}) is empty", at))
            return None
        return Secret(text)

    def secret(self, raw: dict[str, Any], index: int, key: str) -> Secret | None:
        source = raw.get(key)
        if source is None:
            return None
        if "env" in source:
            value = self.environ.get(source["env"])
            if not value:
                self.fail(
                    f"environment variable {source['env']} (`{key}` of repository "
                    f"{raw['name']!r}) is not set",
                    index,
                    key,
                    hint=f"export {source['env']} before starting the daemon",
                )
                return None
            return Secret(value)
        file = self.base / os.path.expanduser(source["file"])
        try:
            text = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.fail(
                f"cannot read {file} (`{key}` of repository {raw['name']!r}): {reason}",
                index,
                key,
            )
            return None
        if not text:
            self.fail(f"{file} (`{key}` of repository {raw['name']!r}) is empty", index, key)
            return None
        return Secret(text)
