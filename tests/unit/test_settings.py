"""One Settings for every process: defaults < file < RECONCILER_* < flags, resolved in one
place; the store opened from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.errors import UserError
from reconciler.daemon.config import load_settings
from reconciler.scheduling.policy import SchedulingPolicy
from reconciler.settings import DEFAULT_STORE_URL, Settings, resolve_settings


def test_each_layer_overrides_the_one_below(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outside any git repository: the default is relative
    file = {"store": "sqlite:///file.db", "log_format": "json"}
    environ = {"RECONCILER_STORE": "sqlite:///env.db"}
    assert resolve_settings({}).store_url == DEFAULT_STORE_URL
    assert resolve_settings({}, file=file).store_url == "sqlite:///file.db"
    assert resolve_settings(environ, file=file).store_url == "sqlite:///env.db"
    flags = {"store": "sqlite:///flag.db"}
    both = resolve_settings(environ, file=file, flags=flags)
    assert (both.store_url, both.log_format) == ("sqlite:///flag.db", "json")


def test_the_default_store_is_at_the_repository_root_from_any_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    deep = tmp_path / "repo" / "flows" / "etl"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    expected = f"sqlite:///{tmp_path / 'repo' / '.reconciler' / 'state.db'}"
    assert resolve_settings({}).store_url == expected


def test_a_flag_not_given_or_empty_leaves_the_environment() -> None:
    environ = {"RECONCILER_STORE": "sqlite:///env.db"}
    assert resolve_settings(environ, flags={"store": None}).store_url == "sqlite:///env.db"
    assert resolve_settings(environ, flags={"store": ""}).store_url == "sqlite:///env.db"


def test_a_bad_log_format_names_where_it_came_from() -> None:
    with pytest.raises(UserError, match="RECONCILER_LOG_FORMAT must be text or json"):
        resolve_settings({"RECONCILER_LOG_FORMAT": "xml"})
    with pytest.raises(UserError, match=r"`log_format` in daemon\.yaml must be text or json"):
        resolve_settings({}, file={"log_format": "xml"}, file_name="daemon.yaml")


def test_the_store_is_opened_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(store_url=f"sqlite:///{tmp_path / 'state.db'}")
    readonly = settings.open_store(readonly=True)
    try:
        assert readonly.revision() == 0
    finally:
        readonly.close()
    assert not (tmp_path / "state.db").exists()  # a read-only open creates nothing
    store = settings.open_store()
    store.close()
    assert (tmp_path / "state.db").exists()


def test_the_daemon_settings_carry_the_shared_settings_and_the_policy(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    config = tmp_path / "daemon.yaml"
    config.write_text(
        f"store: sqlite:///from-file.db\nlog_format: json\n"
        f"repositories:\n  - {{name: r, path: {repo}}}\n"
        "scheduler: {interval: 5s, min_runs: 2, max_time: 1h, late_after: 1m, late_runs: skip}\n"
    )
    settings = load_settings(str(config), {"RECONCILER_STORE": "sqlite:///from-env.db"})
    assert settings.settings.store_url == "sqlite:///from-env.db"
    assert settings.settings.log_format == "json"
    assert settings.scheduler_interval == 5.0
    policy = settings.settings.scheduling
    assert policy.look_ahead.min_runs == 2
    assert policy.look_ahead.max_seconds == 3600.0
    assert (policy.late.after_seconds, policy.late.skip) == (60.0, True)
    assert SchedulingPolicy.from_json(policy.to_json()) == policy


def test_the_step_cache_of_a_prefect_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a Prefect target's step results are kept: --step-cache, else
    RECONCILER_STEP_CACHE, else the default store; the daemon's own store; never Prefect."""
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    target = "prefect+http://127.0.0.1:4200/api"
    assert resolve_settings({}, flags={"store": target}).step_cache_url is None
    environ = {"RECONCILER_STEP_CACHE": "sqlite:///env.db"}
    assert resolve_settings(environ).step_cache_url == "sqlite:///env.db"
    flags = {"store": target, "step_cache": "sqlite:///flag.db"}
    assert resolve_settings(environ, flags=flags).step_cache_url == "sqlite:///flag.db"

    default = Settings(store_url=target).open_step_cache()
    default.close()
    assert (tmp_path / ".reconciler" / "state.db").exists(), "the default store's path"

    with pytest.raises(UserError, match="is a Prefect server, which has no place"):
        Settings(store_url=target, step_cache_url=target).open_step_cache()

    repo = tmp_path / "repo"
    repo.mkdir()
    config = tmp_path / "daemon.yaml"
    config.write_text(
        f"store: sqlite:///daemon.db\ntarget: {target}\n"
        f"repositories:\n  - {{name: r, path: {repo}}}\n"
    )
    daemon = load_settings(str(config), {})
    assert daemon.plan_settings.store_url == target
    assert daemon.plan_settings.step_cache_url == "sqlite:///daemon.db"
