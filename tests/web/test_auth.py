"""Where the web API's tokens come from, what each grants, and when the API is served at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.errors import UserError
from reconciler.web.auth import Csrf, Role, Tokens
from reconciler.web.daemon_mount import web_for_daemon
from reconciler.web.errors import WebError


def test_tokens_from_the_environment_or_files(tmp_path: Path) -> None:
    admin_file = tmp_path / "admin"
    admin_file.write_text("from-a-file\n")
    tokens = Tokens.from_environ(
        {"RECONCILER_API_READ_TOKEN": "r", "RECONCILER_API_ADMIN_TOKEN_FILE": str(admin_file)}
    )
    assert tokens == Tokens(read="r", admin="from-a-file")
    assert tokens.role_of("from-a-file") is Role.ADMIN and tokens.role_of("r") is Role.READ
    with pytest.raises(WebError, match="not valid"):
        tokens.role_of("from-a-file\n")
    with pytest.raises(WebError, match="needs a token"):
        tokens.role_of(None)


@pytest.mark.parametrize(
    ("environ", "message", "hint"),
    [
        ({"RECONCILER_API_READ_TOKEN_FILE": "/nonexistent/x"}, "cannot read", "readable file"),
        (
            {"RECONCILER_API_ADMIN_TOKEN": "same", "RECONCILER_API_READ_TOKEN": "same"},
            "are the same token",
            "value of its own",
        ),
    ],
)
def test_unusable_tokens_are_refused(environ: dict[str, str], message: str, hint: str) -> None:
    with pytest.raises(UserError) as refused:
        Tokens.from_environ(environ)
    assert message in refused.value.message and hint in (refused.value.hint or "")
    assert "s3cr3t" not in refused.value.message + (refused.value.hint or ""), "no token shown"


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UserError, match="is empty"):
        Tokens.from_environ({"RECONCILER_API_ADMIN_TOKEN_FILE": str(empty)})


def test_without_tokens_reads_are_open_on_loopback_only() -> None:
    open_reads = Tokens()
    assert open_reads.role_of(None) is Role.ANONYMOUS
    open_reads.check_exposure("127.0.0.1")
    open_reads.check_exposure("::1")
    with pytest.raises(UserError, match=r"refusing to listen on 0\.0\.0\.0"):
        open_reads.check_exposure("0.0.0.0")
    Tokens(read="r").check_exposure("0.0.0.0")


def test_a_daemon_beyond_loopback_without_tokens_serves_no_web_api() -> None:
    assert web_for_daemon(None, "0.0.0.0", {}) is None
    assert web_for_daemon(None, "127.0.0.1", {}) is not None
    assert web_for_daemon(None, "0.0.0.0", {"RECONCILER_API_READ_TOKEN": "r"}) is not None


def test_csrf_tokens_are_bound_to_their_nonce() -> None:
    csrf = Csrf()
    nonce = Csrf.new_nonce()
    csrf.check(nonce, csrf.token_for(nonce))
    for nonce_given, token in (
        (nonce, None),
        (None, csrf.token_for(nonce)),
        (Csrf.new_nonce(), csrf.token_for(nonce)),
        (nonce, Csrf().token_for(nonce)),
    ):
        with pytest.raises(WebError, match="CSRF"):
            csrf.check(nonce_given, token)
