"""Webhook authentication and the retry schedule, in isolation."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from reconciler.daemon.status import MAX_RETRY_SECONDS, retry_delay
from reconciler.daemon.webhooks import authenticate, github_signature

SECRET = "hook-secret"
BODY = b'{"ref": "refs/heads/main"}'


def test_a_github_signature_over_the_exact_body_is_accepted() -> None:
    signature = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert github_signature(SECRET, BODY) == signature
    assert authenticate(SECRET, BODY, {"x-hub-signature-256": signature}) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"x-hub-signature-256": github_signature("other-secret", BODY)},
        {"x-hub-signature-256": github_signature(SECRET, BODY + b" ")},
        {"x-hub-signature-256": "sha1=abc"},
        {"x-gitlab-token": "wrong"},
        {},
    ],
)
def test_wrong_or_missing_credentials_are_refused_without_showing_the_secret(
    headers: dict[str, str],
) -> None:
    problem = authenticate(SECRET, BODY, headers)
    assert problem is not None
    assert SECRET not in problem


def test_a_gitlab_token_equal_to_the_secret_is_accepted() -> None:
    assert authenticate(SECRET, BODY, {"x-gitlab-token": SECRET}) is None


def test_retries_start_at_5s_double_and_stop_growing_at_5_minutes() -> None:
    rng = random.Random(7)
    delays = [retry_delay(n, rng) for n in range(1, 10)]
    for failures, delay in enumerate(delays, start=1):
        base = min(5.0 * 2 ** (failures - 1), MAX_RETRY_SECONDS)
        assert base * 0.9 <= delay <= base * 1.1
    assert delays[0] < delays[1] < delays[2] < delays[3]
    assert max(delays) <= MAX_RETRY_SECONDS * 1.1


def test_retry_delays_are_jittered() -> None:
    assert len({round(retry_delay(3), 6) for _ in range(20)}) > 1
