"""Credentials in a repository's URL (issue 13, hole 5): user info and query parameters such
as `access_token` never reach owners, generated clone steps, the store, or error texts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.errors import UserError
from reconciler.core.url_credentials import scrub_urls, strip_credentials
from reconciler.sources.remote import RemoteRepository
from tests.conftest import CliResult, GitRepo, store_dump
from tests.e2e.helpers import project

pytestmark = pytest.mark.e2e

SECRETS = ("s3cr3t-pass", "AT-0001", "PT-0002", "K-0003", "GT-0004", "PW-0005", "SE-0006")
ORIGIN = (
    "https://alice:s3cr3t-pass@git.example.com/org/flows.git"
    "?access_token=AT-0001&private_token=PT-0002&ref=main&key=K-0003"
    "&gitlab_token=GT-0004&db_password=PW-0005&client_secret=SE-0006"
)
CLEAN = "https://git.example.com/org/flows.git?ref=main"


def test_the_function_strips_user_info_and_every_credential_parameter() -> None:
    assert strip_credentials(ORIGIN) == CLEAN
    assert strip_credentials("https://h/x?ref=main&b=2") == "https://h/x?ref=main&b=2"
    assert strip_credentials("ssh://git@[::1]:2222/x?token=t") == "ssh://[::1]:2222/x"
    assert strip_credentials("/srv/git/flows?token=t") == "/srv/git/flows?token=t"  # a path
    said = scrub_urls(f"fatal: unable to access '{ORIGIN}/': Could not resolve host")
    assert said == f"fatal: unable to access '{CLEAN}': Could not resolve host"


def test_origin_credentials_reach_neither_the_store_nor_the_output(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(project())
    repo.git("remote", "add", "origin", ORIGIN)
    outputs = [
        run_cli("--store", store_url, "--dry-run", "-o", "json", str(repo.path)),
        run_cli("--store", store_url, str(repo.path)),
        run_cli("deployment", "ls", "-o", "json", "--store", store_url),
        run_cli("deployment", "inspect", "ingest/nightly", "--store", store_url),
        run_cli("history", "--store", store_url),
    ]
    for result in outputs:
        assert not any(secret in result.output for secret in SECRETS), result.output
    assert outputs[1].code == 0, outputs[1].output
    stored = json.dumps(store_dump(store_url), default=str)
    assert not any(secret in stored for secret in SECRETS)
    assert "git.example.com/org/flows" in stored  # the owner and the clone step, cleaned
    shown = json.loads(outputs[3].stdout)
    assert CLEAN.removesuffix("?ref=main") in json.dumps(shown)


def test_a_fetch_error_names_the_url_without_its_credentials(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/org/flows.git?access_token=AT-0001&ref=main"
    remote = RemoteRepository(url, "main", tmp_path / "cache", None)
    with pytest.raises(UserError) as raised:
        remote.fetch()
    message = str(raised.value)
    assert "AT-0001" not in message and "127.0.0.1:9/org/flows" in message, message
