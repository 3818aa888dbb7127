"""The daemon's config file: precedence (defaults < file < RECONCILER_* < flags), and every
mistake reported with file:line and what to do, before anything starts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.core.errors import ConfigError, UserError
from reconciler.daemon.config import Overrides, Secret, load_settings


def write(tmp_path: Path, text: str) -> str:
    (tmp_path / "repo").mkdir(exist_ok=True)
    path = tmp_path / "daemon.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def errors(exc: ConfigError) -> list[str]:
    return [d.render() for d in exc.diagnostics if d.is_error]


MINIMAL = """\
repositories:
  - name: flows
    path: repo
"""


def test_defaults_for_a_minimal_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), {})
    (repo,) = settings.repositories
    assert repo.path == str(tmp_path / "repo")  # relative to the config file
    assert (repo.branch, repo.prefect_glob, repo.poll_interval) == ("main", "prefect.yaml", 60.0)
    assert (repo.prune, repo.self_heal, repo.allow_empty) == (True, True, False)
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8420)
    assert settings.drift_interval == 300.0
    assert settings.log_format == "text"


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        MINIMAL + "store: sqlite:///from-file.db\nlisten: 0.0.0.0:9000\ndrift_interval: 2m\n",
    )
    from_file = load_settings(config, {})
    assert (from_file.store_url, from_file.listen_port, from_file.drift_interval) == (
        "sqlite:///from-file.db",
        9000,
        120.0,
    )
    environ = {"RECONCILER_STORE": "sqlite:///from-env.db", "RECONCILER_DRIFT_INTERVAL": "30s"}
    from_env = load_settings(config, environ)
    assert (from_env.store_url, from_env.drift_interval, from_env.listen_port) == (
        "sqlite:///from-env.db",
        30.0,
        9000,
    )
    from_flags = load_settings(config, environ, Overrides(store_url="sqlite:///flag.db"))
    assert from_flags.store_url == "sqlite:///flag.db"
    assert from_flags.drift_interval == 30.0


def test_secrets_come_from_the_environment_or_a_file_and_never_show(tmp_path: Path) -> None:
    (tmp_path / "hook.secret").write_text("  from-a-file\n")
    config = write(
        tmp_path,
        """\
        repositories:
          - name: a
            path: repo
            webhook_secret: {env: HOOK_A}
          - name: b
            url: https://git.example.com/acme/b.git
            webhook_secret: {file: hook.secret}
            username: {env: GIT_USER}
            password: {env: GIT_TOKEN}
        """,
    )
    settings = load_settings(
        config, {"HOOK_A": "s3cret-a", "GIT_USER": "bot", "GIT_TOKEN": "tok-123"}
    )
    a, b = settings.repositories
    assert a.webhook_secret == Secret("s3cret-a")
    assert b.webhook_secret is not None and b.webhook_secret.value == "from-a-file"
    assert b.password is not None and b.password.value == "tok-123"
    shown = repr(settings)
    assert "s3cret-a" not in shown and "tok-123" not in shown and "from-a-file" not in shown


def test_a_missing_secret_variable_is_an_error_at_its_line(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        repositories:
          - name: a
            path: repo
            webhook_secret: {env: HOOK_A}
        """,
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(config, {})
    (message,) = errors(raised.value)
    assert message.startswith(f"{config}:4:")
    assert "environment variable HOOK_A" in message
    assert "export HOOK_A" in message


def test_unknown_keys_are_errors_with_did_you_mean(tmp_path: Path) -> None:
    config = write(tmp_path, MINIMAL + "    self_heel: false\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config, {})
    (message,) = errors(raised.value)
    assert message.startswith(f"{config}:4:")
    assert "self_heel" in message and 'did you mean "self_heal"' in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        repositories:
          - name: a
            path: repo
          - name: a
            url: https://user:pw@git.example.com/acme/a.git
          - name: c
          - name: d
            path: repo
            url: https://git.example.com/d.git
          - name: e
            url: /srv/not-a-url
          - name: f
            path: missing-dir
        """,
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(config, {})
    found = "\n".join(errors(raised.value))
    assert f"{config}:4:" in found and "used twice" in found
    assert "carries credentials" in found and "pw@" not in found
    assert "'c' needs exactly one of `url`" in found
    assert "'d' needs exactly one of `url`" in found
    assert "is not a URL git can fetch" in found
    assert "'missing-dir' of repository 'f' is not a directory" in found


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("repositories: [\n", "not valid YAML"),
        ("- a\n", "must be a mapping"),
        ("repositories: []\n", "repositories"),
        ("repositories:\n  - name: x\n    path: repo\n    poll_interval: soon\n", "poll_interval"),
        ("repositories:\n  - name: x\n    path: repo\n    prune: maybe\n", "prune"),
        ("listen: nowhere\nrepositories:\n  - {name: x, path: repo}\n", "listen"),
    ],
)
def test_invalid_files_name_the_place(tmp_path: Path, text: str, wanted: str) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_settings(config, {})
    found = "\n".join(errors(raised.value))
    assert found.startswith(f"{config}:"), found
    assert wanted in found


def test_bad_values_from_the_environment_name_the_variable(tmp_path: Path) -> None:
    config = write(tmp_path, MINIMAL)
    with pytest.raises(UserError, match="RECONCILER_DRIFT_INTERVAL must be a duration"):
        load_settings(config, {"RECONCILER_DRIFT_INTERVAL": "often"})
    with pytest.raises(UserError, match="--listen must be HOST:PORT"):
        load_settings(config, {}, Overrides(listen="8080"))


def test_a_missing_config_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read the daemon config"):
        load_settings(str(tmp_path / "nope.yaml"), {})


def test_event_webhooks_and_event_settings(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        repositories:
          - {name: flows, path: repo}
        events: {retention: 48h, interval: 0.5s}
        event_webhooks:
          - name: files
            secret: {env: FILES_SECRET}
            template: '{"event": "acme.{{ body.kind }}", "resource": {"prefect.resource.id": "x"}}'
        """,
    )
    settings = load_settings(config, {"FILES_SECRET": "s3cr3t"})
    (hook,) = settings.event_webhooks
    assert (hook.name, hook.secret, "acme." in hook.template) == ("files", Secret("s3cr3t"), True)
    assert (settings.event_retention, settings.trigger_interval) == (48 * 3600.0, 0.5)
    assert "s3cr3t" not in repr(settings)


def test_event_webhook_mistakes_are_reported_at_their_lines(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        repositories:
          - {name: flows, path: repo}
        event_webhooks:
          - name: files
            secret: {env: MISSING_SECRET}
            template: '{"event": "{{ body.kind "}'
          - name: files
            secret: {env: MISSING_SECRET}
            template: '{}'
        """,
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(config, {})
    found = errors(raised.value)
    assert any(
        m.startswith(f"{config}:6:") and "the template of event webhook 'files' does not parse" in m
        for m in found
    ), found
    assert any(m.startswith(f"{config}:7:") and "is used twice" in m for m in found), found
    assert any("MISSING_SECRET (the secret of event webhook files) is not set" in m for m in found)
